"""The training loop: schedules, determinism, exact resume, the deficit window, BN refresh, divergence."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
import torch

import rounding
from tiny_specs import UNIT, tiny_sweep
from trial_runs import comparable, image_data

from cpsweep.config.spec import ScheduleSpec
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.config.timeline import lr_at, trial_lr
from cpsweep.engine.trial_state import load_state_file, save_state_file
from cpsweep.engine.trial import train_trial
from cpsweep.errors import CpsweepError, SpecError, TrialDiverged
from cpsweep.storage.records import trained


def trial(onset=1, length=2, seed=0, **changes):
    return parse_sweep(tiny_sweep(UNIT, **changes)).make_trial(onset, length, seed)


@pytest.mark.parametrize("name, epoch, expected", [
    ("exponential", 10, 0.05 * 0.97 ** 10), ("constant", 10, 0.05), ("step", 65, 0.05 * 0.97 ** 2),
    ("cosine", 25, 0.05 * 0.5 * (1 + math.cos(math.pi * 25 / 100))), ("cosine", 100, 0.0),
])
def test_schedules_closed_form(name, epoch, expected):
    s = ScheduleSpec(name=name, gamma=0.97, step_size=30)
    assert lr_at(s, 0.05, epoch, 100) == pytest.approx(expected, abs=1e-15)


def test_schedule_restart_after_deficit():
    s = ScheduleSpec(name="exponential", gamma=0.9, restart_after_deficit=True)
    assert [lr_at(s, 1.0, e, 10, restart_at=3) for e in (0, 2, 3, 5)] == pytest.approx([1, 0.81, 1, 0.81])
    t = trial(onset=1, length=2, schedule={"restart_after_deficit": True})
    records = trained(list(train_trial(t, "cpu")))
    assert [r.lr for r in records] == pytest.approx([0.05, 0.05 * 0.97, 0.05 * 0.97 ** 2, 0.05])
    plain = trial(length=0, schedule={"restart_after_deficit": True})
    assert [lr for lr in (trial_lr(plain, e) for e in range(4))] == pytest.approx([0.05 * 0.97 ** e for e in range(4)])
    # the window's own baseline restarts where the window ends, so the two see the same rate every epoch
    assert t.baseline_id == "baseline-r3-s0" and t.baseline().restart_at == 3
    assert [trial_lr(t.baseline(), e) for e in range(4)] == [r.lr for r in records]


def test_two_runs_are_identical_and_seeds_differ():
    a = comparable(train_trial(trial(), "cpu"))
    b = comparable(train_trial(trial(), "cpu"))
    c = comparable(train_trial(trial(seed=1), "cpu"))
    assert a == b
    assert [r.test_acc for r in a] != [r.test_acc for r in c] or [r.train_loss for r in a] != [r.train_loss for r in c]


def test_resumed_trial_reproduces_the_uninterrupted_one(tmp_path):
    t = trial(onset=1, length=2)
    full = comparable(train_trial(t, "cpu"))
    run = train_trial(t, "cpu")
    first = [next(run), next(run), next(run)]  # initialisation, epochs 0 and 1
    save_state_file(run.state_dict(), tmp_path / "ckpt.pt")
    del run
    rest = list(train_trial(t, "cpu", resume=str(tmp_path / "ckpt.pt")))
    assert [r.epoch for r in first] == [-1, 0, 1] and [r.epoch for r in rest] == [2, 3]
    assert comparable(first + rest) == full


def test_resume_with_augmentation_and_noise_deficit(tmp_path):
    t = trial(onset=1, length=2, model={"name": "all_cnn_c", "width": 0.05}, deficit={"name": "noise"},
              data={"name": "cifar10", "augment": True})
    data = image_data()
    full = comparable(train_trial(t, "cpu", data=data))
    run = train_trial(t, "cpu", data=data)
    first = [next(run), next(run)]
    state = state_file_roundtrip(run.state_dict(), tmp_path)
    rest = list(train_trial(t, "cpu", resume=state, data=data))
    assert comparable(first + rest) == full


def state_file_roundtrip(state, tmp_path):
    save_state_file(state, tmp_path / "c.pt")
    return load_state_file(tmp_path / "c.pt")


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    run = train_trial(trial(onset=1), "cpu")
    next(run), next(run)
    state = run.state_dict()
    for other in (trial(onset=2), trial(optim={"lr": 0.04, "batch_size": 64})):
        with pytest.raises(CpsweepError, match="checkpoint belongs to another trial"):
            train_trial(other, "cpu", resume=state)
    with pytest.raises(CpsweepError, match="checkpoint belongs to another trial"):
        train_trial(trial(onset=1), "cpu", resume={**state, "trial": {"sweep": "unit"}})
    # where the data files live and how often checkpoints are taken are not part of a trial's identity
    moved = dataclasses.replace(trial(onset=1), checkpoint_every=5,
                                data=dataclasses.replace(trial(onset=1).data, data_dir=str(tmp_path)))
    assert train_trial(moved, "cpu", resume=state, data=run.data).epoch == 1


def test_state_files_load_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_state_file(path)


def test_deficit_changes_nothing_outside_its_window():
    window = trained(comparable(train_trial(trial(onset=2, length=1), "cpu")))
    base = trained(comparable(train_trial(trial(length=0), "cpu")))
    assert [r.deficit_active for r in window] == [False, False, True, False]
    strip = lambda r: dataclasses.replace(r, trial_id="")  # noqa: E731
    assert [strip(r) for r in window[:2]] == [strip(r) for r in base[:2]]
    assert window[2].train_loss != base[2].train_loss


def test_records_carry_fisher_every_k_epochs_and_the_last():
    records = list(train_trial(trial(fisher={"every": 3, "probe_per_class": 3}), "cpu"))
    measured = [r.epoch for r in records if not math.isnan(r.fisher_trace)]
    assert measured == [-1, 2, 3]  # at initialisation, every 3 epochs, and at the last
    assert records[0].lr == 0 and math.isnan(records[0].train_loss) and not records[0].deficit_active
    records = trained(records)
    r = records[2]
    assert r.fisher_trace > 0 and sum(r.fisher_layers.values()) == pytest.approx(r.fisher_trace, rel=1e-9)
    assert records[0].fisher_layers == {}
    assert all(0 <= x.test_acc <= 1 and 0 <= x.train_acc <= 1 for x in records)


def test_without_the_fisher_no_probe_is_drawn():
    """fisher.every 0 measures nothing, so a subset too small for the probe (30 per class by default:
    here 10 per class) still trains, with no Fisher record; with the Fisher on it is refused."""
    small = {"name": "mnist1d", "subset": 100}
    records = list(train_trial(trial(fisher={"every": 0}, data=small, optim={"lr": 0.05, "batch_size": 50}), "cpu"))
    assert [r.epoch for r in records] == [0, 1, 2, 3] and all(math.isnan(r.fisher_trace) for r in records)
    with pytest.raises(CpsweepError, match=r"probe: 30 examples per class are needed .*; lower fisher.probe_per_class"):
        train_trial(trial(fisher={"every": 1}, data=small), "cpu")


def test_bn_refresh_estimates_statistics_on_clean_training_data():
    t = trial(model={"name": "mlp", "hidden": [16]}, bn_refresh=-1, optim={"batch_size": 32}, length=0,
              data={"name": "cifar10", "augment": False})
    data = image_data(n=96, augment=False)
    run = train_trial(t, "cpu", data=data)
    next(run), next(run)  # initialisation, epoch 0
    linear, bn = run.model[1], run.model[2]
    with torch.no_grad():
        h = linear(data.x_train.flatten(1))
    # batches of 32 from 96 examples: the cumulative average of batch means is the overall mean
    assert torch.allclose(bn.running_mean, h.mean(0), atol=1e-5)
    batches = [h[idx] for idx in run.batches(0, "bn")]  # the refresh's own order, from (seed, epoch)
    assert torch.allclose(bn.running_var, torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0), atol=1e-5)
    assert bn.momentum == 0.1  # restored after the refresh


def test_non_finite_loss_raises_trial_diverged():
    t = trial(model={"name": "mlp", "hidden": [8]}, data={"name": "cifar10", "augment": False})
    with pytest.raises(TrialDiverged) as info:
        list(train_trial(t, "cpu", data=image_data(nan=True)))
    assert info.value.epoch == 0 and "non-finite" not in str(info.value) and "epoch 0" in str(info.value)


def image_trial(**engine):
    return trial(onset=1, length=2, model={"name": "all_cnn_c", "width": 0.05}, data={"name": "cifar10"},
                 **({"engine": engine} if engine else {}))


@pytest.mark.slow
def test_channels_last_gives_the_same_trial_within_rounding():
    """NHWC kernels round differently: equal within tolerances derived from the trial's sensitivity to
    rounding (tests/rounding.py), so on any CPU."""
    data = image_data()
    nhwc = train_trial(image_trial(channels_last=True), "cpu", data=data)
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    rounding.assert_same_within_rounding(lambda: train_trial(image_trial(), "cpu", data=data),
                                         lambda: train_trial(image_trial(channels_last=True), "cpu", data=data))


@pytest.mark.slow
def test_bf16_autocast_stays_close_to_fp32():
    """bf16 keeps 8 bits of mantissa: its records differ from fp32's, within what per-layer errors of the
    size bf16 makes on one step (measured) do to this trial."""
    data = image_data()
    run = train_trial(image_trial(precision="bf16"), "cpu", data=data)
    assert run.amp_dtype == torch.bfloat16
    bf16 = list(run)
    fp32 = list(train_trial(image_trial(), "cpu", data=data))
    assert [r.train_loss for r in bf16] != [r.train_loss for r in fp32]  # it did run in bf16
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # autocast casts per operation
    rounding.assert_same_within_rounding(lambda: train_trial(image_trial(), "cpu", data=data),
                                         lambda: train_trial(image_trial(precision="bf16"), "cpu", data=data))


def test_engine_settings_are_checked():
    with pytest.raises(SpecError, match="engine.precision"):
        image_trial(precision="fp16")
    with pytest.raises(SpecError, match="engine"):
        trial(engine={"channel_last": True})


@pytest.mark.slow
def test_compiled_model_gives_the_same_trial_within_rounding():
    data = image_data(n=128)  # whole batches of 64: compile drops a partial last batch (test_host_device.py)
    rounding.assert_same_within_rounding(lambda: train_trial(image_trial(), "cpu", data=data),
                                         lambda: train_trial(image_trial(compile=True), "cpu", data=data))


@pytest.mark.cuda
@pytest.mark.parametrize("engine", [{}, {"channels_last": True, "precision": "bf16"}])
def test_cuda_trial_matches_cpu(engine):
    """The same trial on the GPU (uint8 data on the device, batched augmentation) as on the CPU, within
    float tolerance (bf16 within a few per cent)."""
    data = image_data()
    cpu = list(train_trial(image_trial(), "cpu", data=data))
    gpu_data = dataclasses.replace(data, x_train=data.x_train.cuda(), y_train=data.y_train.cuda(),
                                   x_test=data.x_test.cuda(), y_test=data.y_test.cuda())
    gpu = list(train_trial(image_trial(**engine), "cuda", data=gpu_data))
    rel = 0.05 if engine else 1e-3
    assert [r.epoch for r in gpu] == [r.epoch for r in cpu]
    for a, b in zip(cpu, gpu):  # epoch -1 has no training loss (NaN on both devices): NaN equals NaN here
        assert b.train_loss == pytest.approx(a.train_loss, rel=rel, nan_ok=True)
        assert b.test_loss == pytest.approx(a.test_loss, rel=rel, nan_ok=True)


@pytest.mark.parametrize("schedule", [{"name": "exponential"}, {"name": "exponential", "restart_after_deficit": True}])
def test_one_long_baseline_gives_every_length_matched_baseline(schedule):
    """Brute force: baselines trained separately to each window's length give the same records, and so
    the same sensitivities, as the sweep's one long baseline read after that many epochs."""
    import pandas as pd

    from cpsweep.storage.records import trial_row
    from cpsweep.results.reduce import seed_sensitivity

    spec = tiny_sweep(UNIT, epochs=None, common_end=None, clean_after=2, schedule=schedule,
                      fisher={"every": 2, "probe_per_class": 2}, grid={"onset": [0, 2], "length": [1, 3]})
    sweep = parse_sweep(spec)
    trials = sweep.trials()
    windows = [t for t in trials if not t.is_baseline]
    assert {t.epochs for t in windows} == {3, 5, 7}  # onset + length + 2
    ran = {t.trial_id: list(train_trial(t, "cpu")) for t in trials}
    epochs = pd.DataFrame([r.to_row() for recs in ran.values() for r in recs])
    table = pd.DataFrame([trial_row(t, ran[t.trial_id], "ok") for t in trials])
    got = seed_sensitivity(table, epochs).set_index("onset length".split()).sens
    for w in windows:
        alone = dataclasses.replace(w.baseline(), epochs=w.epochs)  # trained to exactly the window's length
        records = list(train_trial(alone, "cpu"))
        long = ran[w.baseline_id]
        # every epoch the same, but for the Fisher that a trial also measures at its own last epoch
        no_fisher = {"fisher_trace": 0.0, "fisher_layers": {}, "layer_params": {}, "layer_kinds": {}}
        assert (comparable(dataclasses.replace(r, **no_fisher) for r in trained(records))
                == comparable(dataclasses.replace(r, **no_fisher) for r in trained(long)[:w.epochs]))
        expected = 100 * (trial_row(alone, records)["final_test_acc"] - table.set_index("trial_id")
                          .final_test_acc[w.trial_id])
        assert got[(w.onset, w.length)] == expected  # bit for bit: the same epochs, the same median
    bases = [t for t in trials if t.is_baseline]
    if schedule.get("restart_after_deficit"):  # one baseline per window end, restarted there
        assert sorted(t.trial_id for t in bases) == ["baseline-r1-s0", "baseline-r3-s0", "baseline-r5-s0",
                                                     "baseline-s0"]
    else:
        assert [(t.trial_id, t.epochs) for t in bases] == [("baseline-s0", 7)]


def test_train_loss_and_accuracy_are_means_over_the_examples_trained():
    """65 examples in batches of 64: the last one is dropped (BatchNorm cannot train on one), and the
    epoch's loss and accuracy are over the 64 trained, as a brute-force pass over the same batches gives
    (a learning rate of 1e-30: the weights do not move)."""
    import torch.nn.functional as F

    from cpsweep.engine.data import Dataset
    from cpsweep.engine.trial import TrialRun

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(65, 1, 40, generator=g), torch.arange(65) % 10
    data = Dataset("synthetic", x, y, x[:30].clone(), y[:30].clone(), 10, False)
    t = trial(0, 0, epochs=1, optim={"lr": 1e-30, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 64},
              fisher={"every": 0}, grid={"onset": [0], "length": [0]})
    run = TrialRun(t, "cpu", data=data)
    run.model.train()
    losses, hits, n = 0.0, 0, 0
    with torch.no_grad():
        for xb, yb in run.train_batches(0, False):
            logits = run.model(xb)
            losses += float(F.cross_entropy(logits, yb, reduction="sum"))
            hits, n = hits + int((logits.argmax(1) == yb).sum()), n + len(yb)
    assert n == 64
    loss, acc = TrialRun(t, "cpu", data=data).train_epoch(0, False)
    assert loss == pytest.approx(losses / n, rel=1e-6) and acc == hits / n
