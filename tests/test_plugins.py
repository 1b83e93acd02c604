"""Plug-ins: a user's own model and deficit named by reference, validated on the driver, identified by
their source, deterministic, and their failures in workers reported once (docs/plugins.md)."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest
import torch

from tiny_specs import TINY, tiny_sweep, write_spec

from cpsweep.cli import main
from cpsweep.config.sharing import prefix_keys
from cpsweep.config.views import hashed_settings
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.engine.trial import train_trial
from cpsweep.errors import SpecError, StorageError
from cpsweep.sweep.trainable import transient

MODELS = '''
from torch import nn

CONST = 3


class Tiny(nn.Module):
    def __init__(self, in_shape, num_classes, width: int = 4, depth: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_shape[0], width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean(-1))


def Needs(in_shape, num_classes, size):
    return Tiny(in_shape, num_classes, size)


def no_args():
    return None


def NotModule(in_shape, num_classes):
    return {"weights": 1}


def WrongLogits(in_shape, num_classes):
    return Tiny(in_shape, 3)


class Dropping(Tiny):
    """Draws from torch's global generator in training (dropout), as many users' models do."""

    def forward(self, x):
        return self.head(nn.functional.dropout(self.conv(x).relu(), 0.5, self.training).mean(-1))
'''
DEFICITS = '''
import torch


def mask(x, y, ctx, fraction: float = 0.5):
    keep = torch.rand(x.shape, generator=ctx.generator, device=ctx.generator.device) >= fraction
    shift = ctx.fixed("shift", lambda g: torch.randn(1, generator=g))
    return x * keep.to(x.dtype) + shift, y


def bad_shape(x, y, ctx):
    return x[:, :, :5], y


def explodes(x, y, ctx):
    raise ValueError("sensor unplugged")


def float_labels(x, y, ctx):
    return x, y.float()


def far_labels(x, y, ctx):
    return x, y + 100


def ignore_first(x, y, ctx):
    y = y.clone()
    y[0] = -100  # cross-entropy's ignore_index: a label the loss skips
    return x, y
'''

# modules that are found but fail to import: a syntax error, an error raised as they run, a missing dependency
BROKEN = {"tp_syntax": "def Tiny(:\n", "tp_raises": "raise RuntimeError('no sensor attached')\n",
          "tp_needs_dep": "import tp_nosuch_dependency\n"}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """tp_models.py and tp_deficits.py in a fresh folder that is the current one (as for a user)."""
    (tmp_path / "tp_models.py").write_text(MODELS)
    (tmp_path / "tp_deficits.py").write_text(DEFICITS)
    for name, code in BROKEN.items():
        (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("tp_models", "tp_deficits", *BROKEN):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def plugin_sweep(**changes):
    return tiny_sweep(TINY, model={"name": "tp_models:Tiny", "width": 6},
                      deficit={"name": "tp_deficits:mask", "fraction": 0.25}, **changes)


def test_a_sweep_names_its_own_model_and_deficit_by_reference(plugins):
    sweep = parse_sweep(plugin_sweep())
    trials = {t.trial_id: t for t in sweep.trials()}
    assert set(trials) == {"baseline-s0", "mask-o0-l2-s0", "mask-o3-l2-s0"}  # the attribute names the trials
    t = trials["mask-o0-l2-s0"]
    assert t.model.options == {"width": 6, "depth": 1} and t.deficit.options == {"fraction": 0.25}
    assert t.model.plugin.startswith("tp_models:Tiny@src-") and t.deficit.plugin.startswith("tp_deficits:mask@src-")
    assert t.plugins == f"model={t.model.plugin};deficit={t.deficit.plugin}"
    assert trials["baseline-s0"].plugins == f"model={t.model.plugin}"  # a baseline runs no deficit
    assert "plugin" not in hashed_settings(t)["model"]  # the code's identity is not a fixed setting
    records = list(train_trial(t, "cpu"))
    assert [r.deficit_active for r in records[1:]] == [True, True, False, False, False, False]


def test_editing_a_plugin_changes_exactly_the_trials_that_run_it(plugins):
    before = {t.trial_id: t for t in parse_sweep(plugin_sweep()).trials()}
    (plugins / "tp_deficits.py").write_text(DEFICITS + "\n# tuned\n")
    after = {t.trial_id: t for t in parse_sweep(plugin_sweep()).trials()}
    assert parse_sweep(plugin_sweep()).hash() == parse_sweep(plugin_sweep()).hash()
    base, late = "baseline-s0", "mask-o3-l2-s0"
    assert prefix_keys(after[base]) == prefix_keys(before[base])
    assert prefix_keys(after[late])[:4] == prefix_keys(before[late])[:4]  # epochs 0-2 run no deficit
    assert prefix_keys(after[late])[4] != prefix_keys(before[late])[4]
    (plugins / "tp_models.py").write_text(MODELS + "\n# wider\n")
    edited = {t.trial_id: t for t in parse_sweep(plugin_sweep()).trials()}
    assert prefix_keys(edited[base])[0] != prefix_keys(after[base])[0]


def test_a_plugin_deficit_resumes_bit_for_bit(plugins):
    """Its randomness comes from the (seed, epoch) generator and the trial's fixed one: a trial resumed
    from its epoch-2 checkpoint (in a new run object) reproduces the uninterrupted one."""
    t = parse_sweep(plugin_sweep()).make_trial(1, 3, 0)
    whole = list(train_trial(t, "cpu"))
    first = train_trial(t, "cpu")
    head = [next(first) for _ in range(3)]  # epochs -1, 0, 1
    rest = list(train_trial(t, "cpu", resume=first.state_dict()))
    assert [r.epoch for r in head + rest] == [r.epoch for r in whole] == list(range(-1, t.epochs))
    for a, b in zip(whole[1:], head[1:] + rest):
        assert (a.epoch, a.train_loss, a.test_acc, a.fisher_trace) == \
            (b.epoch, b.train_loss, b.test_acc, b.fisher_trace)


def test_an_installed_package_registers_names_by_entry_point(plugins):
    dist = plugins / "site" / "tp_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tp-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cpsweep.models]\ntiny = tp_models:Tiny\n")
    sys.path.insert(0, str(plugins / "site"))
    t = parse_sweep(tiny_sweep(TINY, model={"name": "tiny", "width": 5})).trials()[0]
    assert t.model.name == "tiny" and t.model.options["width"] == 5
    assert t.model.plugin.startswith("tp_models:Tiny@src-")


def test_an_entry_point_with_a_built_in_name_is_refused_not_shadowed(plugins):
    dist = plugins / "site" / "tp_clash-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tp-clash\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cpsweep.deficits]\nblur = tp_deficits:mask\n")
    sys.path.insert(0, str(plugins / "site"))  # (the fixture restores sys.path)
    with pytest.raises(SpecError, match=r'deficit.name: "blur" is a built-in deficit, and an installed package '
                                        r'registers "blur" too \(tp_deficits:mask, entry-point group '
                                        r"cpsweep.deficits\), so which one runs is ambiguous; rename"):
        parse_sweep(tiny_sweep(TINY, deficit="blur")).trials()
    sys.path.remove(str(plugins / "site"))
    assert parse_sweep(tiny_sweep(TINY, deficit="blur")).trials()  # (read again once the path changes)


def test_a_data_set_option_may_not_take_a_data_section_key(plugins):
    from cpsweep.config.spec import DataSpec, DATA_KEYS

    assert set(DATA_KEYS) == {f.name for f in dataclasses.fields(DataSpec)} - {"options", "plugin"}
    for key in ("subset", "augment"):  # (a loader given `subset` got only its default: cpsweep's own took it)
        (plugins / "tp_subset.py").write_text(f"def load(data_dir, {key}=None):\n    raise AssertionError\n")
        sys.modules.pop("tp_subset", None)
        with pytest.raises(SpecError, match=f'"tp_subset:load" has an option named "{key}", a reserved key of the '
                                            f"data section; rename it"):
            parse_sweep(tiny_sweep(TINY, data={"name": "tp_subset:load"}))


def test_a_deficit_may_mark_labels_for_the_loss_to_ignore(plugins):
    from cpsweep.engine.dry_run import check_plugins

    t = parse_sweep(tiny_sweep(TINY, model={"name": "tp_models:Tiny", "width": 6},
                               deficit="tp_deficits:ignore_first")).make_trial(0, 2, 0)
    assert check_plugins([t]) == 2  # (the model and the deficit)
    records = list(train_trial(t, "cpu"))
    assert all(r.train_loss == r.train_loss for r in records[1:])  # finite: the ignored labels cost nothing


BAD = [
    ({"model": "tp_nothere:Tiny"}, 'model.name: cannot import "tp_nothere" (ModuleNotFoundError: No module named '
                                   "'tp_nothere'); run cpsweep from the folder that holds tp_nothere(.py)"),
    ({"model": "tp_syntax:Tiny"}, 'model.name: cannot import "tp_syntax" (SyntaxError: invalid syntax (tp_syntax.py, '
                                  "line 1)); fix the error in its code (python -c 'import tp_syntax' shows where)"),
    ({"model": "tp_raises:Tiny"}, 'cannot import "tp_raises" (RuntimeError: no sensor attached); fix the error in '
                                  "its code"),
    ({"model": "tp_needs_dep:Tiny"}, "(ModuleNotFoundError: No module named 'tp_nosuch_dependency'); install "
                                     '"tp_nosuch_dependency" where cpsweep runs, or remove that import from '
                                     '"tp_needs_dep"'),
    ({"model": "tp_models:Tny"}, 'model.name: module "tp_models" has no "Tny" (did you mean "Tiny"?)'),
    ({"model": "tp_models:CONST"}, 'model.name: "tp_models:CONST" is a int, not a function or class'),
    ({"model": {"name": "tp_models:Tiny", "widht": 3}}, 'model.widht: unknown key "widht" (did you mean "width"?)'),
    ({"model": {"name": "tp_models:Tiny", "width": "x"}}, "model.width: expected an integer, got 'x'"),
    ({"model": "tp_models:Needs"}, "model.size: required by tp_models:Needs"),
    ({"model": "tp_models:no_args"}, '"tp_models:no_args" takes (), but a model is called as (in_shape, num_classes'),
    ({"model": "vgg"}, 'unknown model "vgg"'),
    ({"model": "tp_models:NotModule"}, "tp_models:NotModule returned a dict, not a torch.nn.Module"),
    ({"model": "tp_models:WrongLogits"}, "tp_models:WrongLogits returned shape (2, 3) for a batch of 2 inputs"),
    ({"deficit": "tp_deficits:bad_shape"}, "tp_deficits:bad_shape returned shapes [(2, 1, 5), (2,)]"),
    # labels that the loss would refuse only inside a trial's first deficit epoch
    ({"deficit": "tp_deficits:float_labels"}, "deficit.name: tp_deficits:float_labels returned (x, y) of dtypes "
                                              "torch.float32, torch.float32; a deficit returns them with its inputs' "
                                              "dtypes torch.float32, torch.int64 (labels stay class indices)"),
    ({"deficit": "tp_deficits:far_labels"}, "deficit.name: tp_deficits:far_labels returned labels from 100 to 101; "
                                            "labels are class indices 0 to 9"),
    ({"deficit": "tp_deficits:explodes"}, "deficit.name: tp_deficits:explodes failed on a dry run with a batch of 2 "
                                          "inputs of shape (1, 40) (mnist1d): ValueError: sensor unplugged"),
    # a plug-in a grid axis names: its failure names that entry
    ({"deficit": None,
      "grid": {"onset": [0, 3], "length": [2], "deficit": ["tp_deficits:mask", "tp_deficits:explodes"]}},
     "grid.deficit[1].name: tp_deficits:explodes failed on a dry run"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m[:40] for _, m in BAD])
def test_each_bad_reference_or_option_is_one_line_exit_2_nothing_written(plugins, capsys, change, message):
    spec = write_spec(plugins, **{**dict(model={"name": "tp_models:Tiny"}, deficit="tp_deficits:mask"), **change})
    commands = [["validate", spec], ["launch", spec, "--storage", str(plugins / "results")]]
    if "grid" not in change:  # (a trial runs the fixed settings: no grid axis value)
        commands.append(["trial", spec, "--onset", "0", "--length", "2", "--out", str(plugins / "results" / "one")])
    for command in commands:
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cpsweep: error: {spec}: ") and message in err, err  # the file, then the field
        assert len(err.strip().splitlines()) == 1, err
    assert not (plugins / "results").exists()


def test_errors_of_the_machine_are_retried_and_the_others_not():
    assert transient(OSError("disk")) and transient(MemoryError()) and transient(StorageError("s3 down"))
    assert transient(torch.OutOfMemoryError("cuda"))
    from ray.exceptions import RayActorError

    assert transient(RayActorError())
    assert not transient(ValueError("plug-in")) and not transient(SpecError("model.name", "bad"))
    assert not transient(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.slow
def test_a_plugin_failing_in_a_worker_fails_its_trial_once(plugins):
    """A deficit that raises from its second epoch on: its trial fails once (no retries: the marker file
    has one line), with its own message and id in one line, the traceback in the trial's log file; the
    other trials finish."""
    (plugins / "tp_flaky.py").write_text(textwrap.dedent(f'''
        def late(x, y, ctx):
            if ctx.epoch >= 1:
                with open({str(plugins / "calls.txt")!r}, "a") as f:
                    f.write("call\\n")
                raise ValueError(f"sensor unplugged in epoch {{ctx.epoch}}")
            return x, y
        '''))
    spec = write_spec(plugins, model={"name": "tp_models:Tiny"}, deficit="tp_flaky:late",
                      grid={"onset": [0, 3], "length": [2]})
    import subprocess

    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(plugins / "results")],
                         capture_output=True, text=True, cwd=plugins, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    failed = [line for line in res.stdout.splitlines() if " failed " in f" {line} " and "late-o0-l2-s0" in line]
    assert len(failed) == 1 and "ValueError: sensor unplugged in epoch 1 (not retried" in failed[0], res.stdout
    assert (plugins / "calls.txt").read_text().count("call") == 2  # once per failing trial: o0 and o3
    log = plugins / "results" / "tiny" / "logs" / "late-o0-l2-s0.txt"
    assert "Traceback" in log.read_text() and "sensor unplugged" in log.read_text()
    assert "1 ok" in res.stdout.splitlines()[-1]  # the baseline


METRICS = '''
import torch


@torch.no_grad()
def loop_accuracy(model, data, ctx, limit: int = 1000):
    """Test accuracy by a plain loop over single examples: an independent reference for the engine's."""
    right = 0
    for i in range(min(limit, len(data.y_test))):
        right += int(model(data.inputs(data.x_test[i:i + 1])).argmax(1).item() == int(data.y_test[i]))
    return right / min(limit, len(data.y_test))


def wordy(model, data, ctx):
    return "good"
'''


def test_a_users_metric_is_measured_at_the_fisher_epochs_into_its_own_column(plugins, tmp_path):
    (plugins / "tp_metrics.py").write_text(METRICS)
    sys.modules.pop("tp_metrics", None)
    raw = plugin_sweep(metrics=["tp_metrics:loop_accuracy"], fisher={"every": 2, "probe_per_class": 2})
    t = parse_sweep(raw).make_trial(0, 2, 0)
    assert t.plugins.endswith(f";metric={t.metrics[0].plugin}") and t.metrics[0].label == "loop_accuracy"
    records = list(train_trial(t, "cpu"))
    measured = {r.epoch: r.metrics["metric.loop_accuracy"] for r in records}
    assert [e for e, v in measured.items() if v == v] == [-1, 1, 3, 5]  # at init, every 2 epochs, the last
    for r in records:  # the engine's batched test accuracy, recomputed one example at a time
        if r.epoch in (-1, 1, 3, 5):
            assert r.metrics["metric.loop_accuracy"] == pytest.approx(r.test_acc, abs=1e-12)
    from cpsweep.storage.store import Store

    store = Store(str(tmp_path / "res"))
    store.write_trial(t, records, "ok")
    epochs = store.read_table("epochs.parquet")
    assert "metric.loop_accuracy" in epochs and epochs["metric.loop_accuracy"].notna().sum() == 4
    bad = parse_sweep(plugin_sweep(metrics=["tp_metrics:wordy"])).make_trial(0, 2, 0)
    with pytest.raises(SpecError, match="metrics: wordy returned a str; a metric returns one number"):
        list(train_trial(bad, "cpu"))
    with pytest.raises(SpecError, match='metrics: two metrics named "loop_accuracy"'):
        parse_sweep(plugin_sweep(metrics=["tp_metrics:loop_accuracy", {"name": "tp_metrics:loop_accuracy"}]))
    with pytest.raises(SpecError, match="metrics: are measured at the Fisher epochs, and fisher.every is 0"):
        parse_sweep(plugin_sweep(metrics=["tp_metrics:loop_accuracy"], fisher={"every": 0}))


def test_a_metric_can_measure_the_sensitivity():
    """seed_sensitivity(measure=...) reads the metric over the same last epochs, from the epochs the metric
    was measured at: here by hand, baseline minus window, x100."""
    import pandas as pd

    from cpsweep.results.reduce import seed_sensitivity

    trials = pd.DataFrame([
        {"trial_id": "baseline-s0", "baseline_id": "baseline-s0", "status": "ok", "deficit": "none", "tags": "",
         "onset": 0, "length": 0, "seed": 0, "epochs": 30, "final_test_acc": 0.9},
        {"trial_id": "blur-o0-l10-s0", "baseline_id": "baseline-s0", "status": "ok", "deficit": "blur", "tags": "",
         "onset": 0, "length": 10, "seed": 0, "epochs": 20, "final_test_acc": 0.8}])
    rows = []
    for tid, n, values in (("baseline-s0", 30, {4: 0.5, 9: 0.6, 14: 0.7, 19: 0.8, 24: 0.9, 29: 0.95}),
                           ("blur-o0-l10-s0", 20, {4: 0.2, 9: 0.3, 14: 0.4, 19: 0.6})):
        for e in range(n):
            rows.append({"trial_id": tid, "epoch": e, "test_acc": 0.5, "metric.m": values.get(e, float("nan"))})
    ss = seed_sensitivity(trials, pd.DataFrame(rows), measure="metric.m")
    # window: median of its values in epochs [10, 20) = (0.4 + 0.6) / 2; baseline over the same epochs: 0.75
    assert ss.sens.iloc[0] == pytest.approx(100 * (0.75 - 0.5))
    assert seed_sensitivity(trials, pd.DataFrame(rows)).sens.iloc[0] == pytest.approx(100 * (0.5 - 0.8))


def test_cpsweeps_own_builders_are_never_imported_again(monkeypatch):
    """Only a plug-in's modules are dropped when its source changes: cpsweep's own (whose files may change
    under a running sweep, in a worker that imports them from a checkout) stay as they were imported."""
    from cpsweep.config import plugins
    from cpsweep.config.registry import entry

    calls = iter(range(1000))
    monkeypatch.setattr(plugins, "source_identity", lambda module: f"src-{next(calls)}")
    spec_module = sys.modules["cpsweep.config.spec"]
    for _ in range(3):
        entry("model", "cnn1d").load()
        entry("deficit", "blur").load()
    assert sys.modules["cpsweep.config.spec"] is spec_module


DATA = '''
import torch


def blobs(data_dir, n: int = 300, length: int = 16, classes: int = 3):
    """Gaussian blobs as 1-D signals: class k has mean k along every position."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = y[:, None, None].float() + torch.randn(n, 1, length, generator=g)
    return x[: n * 4 // 5], y[: n * 4 // 5], x[n * 4 // 5:], y[n * 4 // 5:]


def pixels(data_dir):
    x = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    return x, torch.zeros(10, dtype=torch.long), x, torch.zeros(10, dtype=torch.long)


def pair(data_dir):
    return torch.zeros(4, 1, 8), torch.zeros(4, dtype=torch.long)


def offline(data_dir, url: str = "http://example.org"):
    raise ConnectionError(f"cannot reach {url}")
'''


def test_a_users_data_set_by_reference(plugins, capsys):
    (plugins / "tp_data.py").write_text(DATA)
    sys.modules.pop("tp_data", None)
    raw = tiny_sweep(TINY, data={"name": "tp_data:blobs", "length": 20, "subset": 200},
                     model={"name": "cnn1d", "channels": 4, "depth": 2})
    t = parse_sweep(raw).make_trial(0, 2, 0)
    assert t.data.options == {"n": 300, "length": 20, "classes": 3} and t.data.subset == 200
    assert t.plugins.startswith("data=tp_data:blobs@src-")
    assert "plugin" not in hashed_settings(t)["data"] and hashed_settings(t)["data"]["options"]["length"] == 20
    from cpsweep.config.spec import TrialSpec

    assert TrialSpec.from_dict(t.to_dict()) == t
    records = list(train_trial(t, "cpu"))
    assert records[-1].test_acc > 0.5  # three well-separated blobs
    for data, message in ((dict(name="tp_data:pixels"), "data set tp_data:pixels returned torch.uint8 inputs"),
                          (dict(name="tp_data:offline"), "data set tp_data:offline failed to load from data_dir"),
                          (dict(name="tp_data:pair"), "data.name: data set tp_data:pair returned 2 values; a data set "
                                                      "returns 4: (x_train, y_train, x_test, y_test)"),
                          (dict(name="tp_data:blobs", lenght=3), 'data.lenght: unknown key "lenght"'),
                          (dict(name="tp_data:blobs", augment=True), "augmentation (random crop and flip) is only")):
        spec = write_spec(plugins, data=data, model={"name": "cnn1d", "channels": 4, "depth": 2})
        assert main(["launch", spec, "--storage", str(plugins / "results")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (plugins / "results").exists()


def test_a_plugin_model_with_dropout_is_a_pure_function_of_its_seed_and_resumes_bit_for_bit(plugins):
    """torch's global generator, which dropout draws from, is seeded from (seed, epoch) around each epoch's
    training and BN refresh: two runs agree, a resumed run equals the uninterrupted one, and the global
    state outside the trial is left as it was."""
    raw = {**plugin_sweep(), "model": {"name": "tp_models:Dropping", "width": 6}}
    t = parse_sweep(raw).make_trial(1, 3, 0)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    whole = list(train_trial(t, "cpu"))
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)  # another global state: the trial does not depend on it
    again = list(train_trial(t, "cpu"))
    first = train_trial(t, "cpu")
    head = [next(first) for _ in range(3)]  # epochs -1, 0, 1
    rest = list(train_trial(t, "cpu", resume=first.state_dict()))
    assert [r.epoch for r in head + rest] == [r.epoch for r in whole] == list(range(-1, t.epochs))
    for a, b, c in zip(whole[1:], again[1:], head[1:] + rest):  # (epoch -1 trains nothing: its loss is NaN)
        assert (a.epoch, a.train_loss, a.test_acc, a.fisher_trace) == (b.epoch, b.train_loss, b.test_acc,
                                                                       b.fisher_trace) == \
            (c.epoch, c.train_loss, c.test_acc, c.fisher_trace)
