"""Windows on a training setting (engine/windows.py): each built-in, held over every epoch, trains exactly
the trial whose spec has that setting throughout (bit for bit); held over a window, it changes that
setting in the window's epochs only; a user's window may change the loss; label noise is checked
against a brute-force count; packs refuse such windows."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from tiny_data import tiny_cifar_sums, write_cifar10
from tiny_specs import UNIT, tiny_sweep

from cpsweep.config.sharing import check_packable, prefix_keys
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.engine.data import load_dataset
from cpsweep.engine.deficits import make_deficit
from cpsweep.engine.trial import train_trial
from cpsweep.errors import SpecError

BASE = dict(epochs=4, schedule={"name": "constant"}, optim={"lr": 0.05, "batch_size": 64, "weight_decay": 0.01})


def trial(onset: int, length: int, deficit, **changes):
    return parse_sweep(tiny_sweep(UNIT, **{**BASE, "deficit": deficit, **changes})).make_trial(onset, length, 0)


def same(a, b) -> bool:
    return all((x.epoch, x.train_loss, x.test_acc, x.fisher_trace) == (y.epoch, y.train_loss, y.test_acc, y.fisher_trace)
               for x, y in zip(a[1:], b[1:])) and len(a) == len(b)


@pytest.mark.parametrize("deficit,equivalent", [
    ({"name": "weight_decay", "scale": 0.0}, {"optim": {**BASE["optim"], "weight_decay": 0.0}}),
    ({"name": "weight_decay", "scale": 0.5}, {"optim": {**BASE["optim"], "weight_decay": 0.005}}),
    ({"name": "lr_scale", "scale": 0.1}, {"optim": {**BASE["optim"], "lr": 0.05 * 0.1}}),
    # (the BN refresh before testing keeps the spec's batch size: off here, so that only training compares)
    ({"name": "batch_size", "size": 32}, {"optim": {**BASE["optim"], "batch_size": 32}, "bn_refresh": 0}),
])
def test_a_window_over_every_epoch_is_the_setting_itself(deficit, equivalent):
    whole = trial(0, 4, deficit, **{k: v for k, v in equivalent.items() if k == "bn_refresh"})
    reference = trial(0, 0, "blur", **equivalent)  # the baseline of a spec with that setting throughout
    assert same(list(train_trial(whole, "cpu")), list(train_trial(reference, "cpu")))


def test_a_window_changes_its_epochs_only():
    t = trial(1, 2, {"name": "weight_decay", "scale": 0.0})
    run = train_trial(t, "cpu")
    seen = []
    for record in run:
        if record.epoch >= 0:
            seen.append(run.optimizer.param_groups[0]["weight_decay"])
    assert seen == [0.01, 0.0, 0.0, 0.01]
    lr = trial(1, 2, {"name": "lr_scale", "scale": 0.5})
    assert [r.lr for r in list(train_trial(lr, "cpu"))[1:]] == [0.05, 0.025, 0.025, 0.05]
    base = trial(0, 0, "blur")
    assert prefix_keys(t)[:2] == prefix_keys(base)[:2] and prefix_keys(t)[2] != prefix_keys(base)[2]


def test_no_augment_over_every_epoch_is_training_without_augmentation(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    for name, value in tiny_cifar_sums(tmp_path).items():
        from torchvision.datasets import CIFAR10

        monkeypatch.setattr(CIFAR10, name, value)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.augment
    spec = dict(data={"name": "cifar10"}, model={"name": "all_cnn_c", "width": 0.05}, epochs=2,
                grid={"onset": [0], "length": [2]})
    whole = trial(0, 2, "no_augment", **spec)
    plain = trial(0, 0, "blur", **spec)
    assert same(list(train_trial(whole, "cpu", data=data)),
                list(train_trial(plain, "cpu", data=dataclasses.replace(data, augment=False))))
    with pytest.raises(SpecError, match="deficit.name: a no_augment window turns augmentation off, which is off"):
        trial(0, 2, "no_augment")  # MNIST-1D has no augmentation


def test_label_noise_relabels_a_fixed_fraction():
    n, classes = 1000, 10
    y_train = torch.arange(n) % classes
    d = make_deficit("label_noise", {"fraction": 0.3}, y_train=y_train, num_classes=classes, seed=4)
    idx = torch.arange(n)
    _, a = d(torch.zeros(n, 1, 4), y_train, idx, torch.Generator().manual_seed(1), 0)
    _, b = d(torch.zeros(n, 1, 4), y_train, idx, torch.Generator().manual_seed(2), 5)
    assert torch.equal(a, b)  # fixed for the trial, whatever the epoch's generator
    changed = int((a != y_train).sum())
    # brute force: 300 examples drawn, each keeps its label with probability 1/10: 270 expected, sd ~5.2
    assert 270 - 4 * 5.2 < changed <= 300
    assert int(a.max()) < classes and int(a.min()) >= 0


def users_module(tmp_path, monkeypatch, name: str, code: str) -> None:
    """A user's module `name` in the current folder, imported afresh (sys.path and sys.modules restored)."""
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_users_window_may_change_the_loss(tmp_path, monkeypatch):
    users_module(tmp_path, monkeypatch, "tp_windows",
                 "import torch.nn.functional as F\n"
                 "from cpsweep.engine.windows import training_window\n\n"
                 "@training_window\n"
                 "def smooth(settings, amount: float = 0.1):\n"
                 "    settings.loss = lambda logits, y: F.cross_entropy(logits, y, label_smoothing=amount)\n\n"
                 "@training_window\n"
                 "def returns(settings):\n"
                 "    return 3\n\n"
                 "@training_window\n"
                 "def per_example(settings):\n"
                 "    settings.loss = lambda logits, y: F.cross_entropy(logits, y, reduction='none')\n\n"
                 "@training_window\n"
                 "def half_batch(settings):\n"
                 "    settings.batch_size /= 2\n\n"
                 "@training_window\n"
                 "def numpy_batch(settings):\n"
                 "    import numpy\n"
                 "    settings.batch_size = numpy.int64(32)\n")
    t = trial(1, 2, {"name": "tp_windows:smooth", "amount": 0.2})
    assert t.trial_id == "smooth-o1-l2-s0" and t.deficit.plugin.startswith("tp_windows:smooth@src-")
    smooth, base = list(train_trial(t, "cpu")), list(train_trial(trial(0, 0, "blur"), "cpu"))
    assert smooth[1].train_loss == base[1].train_loss and smooth[2].train_loss != base[2].train_loss
    with pytest.raises(SpecError, match="returned a int; a training window changes the settings"):
        list(train_trial(trial(0, 1, "tp_windows:returns"), "cpu"))
    # the dry run of validate, launch and `cpsweep trial` calls it as a trial does (once it was called as an
    # input deficit, fn(x, y, ctx), and refused every training window)
    from cpsweep.engine.dry_run import check_plugins

    assert check_plugins([t]) == 1
    with pytest.raises(SpecError, match="returned a int; a training window changes the settings"):
        check_plugins([trial(0, 1, "tp_windows:returns")])
    with pytest.raises(SpecError, match=r"per_example set a loss that returned shape \(2,\); a loss returns one "
                                        r"scalar tensor"):
        check_plugins([trial(0, 1, "tp_windows:per_example")])
    with pytest.raises(SpecError, match=r"tp_windows:half_batch set settings.batch_size to 32.0; it must be a whole "
                                        r"number >= 1"):  # (before: a TypeError inside the trial)
        check_plugins([trial(0, 1, "tp_windows:half_batch")])
    assert check_plugins([trial(0, 1, "tp_windows:numpy_batch")]) == 1  # numpy's integers are whole numbers


def test_what_a_window_sets_in_the_optimiser_ends_with_it(tmp_path, monkeypatch):
    # a window that turns SGD's momentum off: each step's momentum, seen by the optimiser itself
    users_module(tmp_path, monkeypatch, "tp_momentum",
                 "from cpsweep.engine.windows import training_window\n\n"
                 "@training_window\n"
                 "def momentum_off(settings):\n"
                 "    for group in settings.optimizer.param_groups:\n"
                 "        group['momentum'] = 0.0\n")
    t = trial(1, 2, "tp_momentum:momentum_off", optim={**BASE["optim"], "momentum": 0.9})
    run, seen = train_trial(t, "cpu"), {}
    step = run.optimizer.step

    def recording_step(*a, **k):
        seen.setdefault(run.epoch, set()).add(run.optimizer.param_groups[0]["momentum"])
        return step(*a, **k)

    monkeypatch.setattr(run.optimizer, "step", recording_step)
    records = list(run)
    assert seen == {0: {0.9}, 1: {0.0}, 2: {0.0}, 3: {0.9}}
    # resumed from its checkpoint inside the window (saved with momentum 0): the same epochs
    first = train_trial(t, "cpu")
    for _ in range(3):  # init, epochs 0 and 1
        next(first)
    rest = list(train_trial(t, "cpu", resume=first.state_dict()))
    assert same(records[:1] + records[-2:], records[:1] + rest) and len(rest) == 2


def test_packs_refuse_training_windows():
    with pytest.raises(ValueError, match="changes a training setting during its window"):
        check_packable([trial(0, 0, "blur"), trial(0, 2, "weight_decay")])
