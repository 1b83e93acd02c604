"""Sweep specs: loading, every user mistake's message, grid expansion, trial identity."""

from __future__ import annotations

import copy
import glob
import os
import subprocess
import sys

import pytest
import yaml

from cpsweep.errors import SpecError
from cpsweep.config.spec import TrialSpec
from cpsweep.config.sweep_file import load_sweep, parse_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = {
    "name": "t", "seed": 0, "replicates": 2, "epochs": 20, "common_end": True,  # windows end at 5 and 15
    "data": {"name": "mnist1d"}, "model": {"name": "cnn1d"},
    "optim": {"name": "sgd", "lr": 0.05}, "deficit": {"name": "blur", "factor": 4},
    "grid": {"onset": [0, 10], "length": [5]},
}


def spec(**changes):
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(leaf)
        else:
            node[leaf] = value
    return raw


DELETE = object()


def error_of(raw) -> str:
    with pytest.raises(SpecError) as info:
        parse_sweep(raw)
    return str(info.value)


@pytest.mark.parametrize("changes, expected", [
    ({"replicate": 2}, 'replicate: unknown key "replicate" (did you mean "replicates"?)'),
    ({"optim__momentun": 0.9}, 'optim.momentun: unknown key "momentun" (did you mean "momentum"?)'),
    ({"model__chanels": 64}, 'model.chanels: unknown key "chanels" (did you mean "channels"?)'),
    ({"grid__onsets": [0]}, 'grid.onsets: unknown key "onsets" (did you mean "onset"?)'),
    ({"optim__lr": "fast"}, "optim.lr: expected a number, got 'fast'"),
    ({"optim__batch_size": 12.5}, "optim.batch_size: expected an integer, got 12.5"),
    ({"schedule__restart_after_deficit": "yes"}, "schedule.restart_after_deficit: expected true/false, got 'yes'"),
    ({"epochs": -5}, "epochs: expected a whole number of epochs >= 1, got -5"),
    ({"epochs": 2.5}, "epochs: expected a whole number of epochs >= 1, got 2.5"),
    ({"epochs": 0}, "epochs: expected a whole number of epochs >= 1, got 0"),
    ({"epochs": 10 ** 12}, "epochs: at most 10,000 epochs (one trial's training), got 1,000,000,000,000"),
    ({"epochs": DELETE, "common_end": DELETE, "clean_after": 10 ** 12}, "clean_after: at most 10,000 epochs"),
    ({"grid__length": [10 ** 11]}, "grid.length[0]: at most 10,000 epochs"),
    ({"grid__onset": {"from": 0, "to": 10 ** 13, "step": 1}}, "grid.onset.to: at most 10,000 epochs"),
    ({"epochs": DELETE, "common_end": DELETE, "clean_after": 10, "grid__onset": [9990]},
     "grid.onset/length: window [9990, 9995) makes a trial of 10,005 epochs (clean_after included), more than 10,000"),
    ({"grid__length": {"from": 2, "to": 4, "step": 0}}, "grid.length.step: required: a whole number of epochs >= 1, "
                                                        "got 0; e.g. length: {from: 0, to: 100, step: 5}"),
    ({"grid__onset": [0, -1]}, "grid.onset[1]: expected a whole number of epochs >= 0, got -1"),
    ({"grid__length": [1.5]}, "grid.length[0]: expected a whole number of epochs >= 0, got 1.5"),
    ({"grid__onset": [0, 16]}, "grid.onset/length: window [16, 21) ends after the last epoch (20 epochs); "
                               "shorten the window, lower the onset or raise epochs"),
    ({"model__name": "vgg"}, 'model.name: unknown model "vgg"; valid models: all_cnn_c, resnet18, mlp, cnn1d'),
    ({"model": "resnet"}, 'model.name: unknown model "resnet" (did you mean "resnet18"?)'),
    ({"data__name": "cifar100"}, 'data.name: unknown data set "cifar100" (did you mean "cifar10"?); '
                                 "valid data sets: cifar10, mnist, mnist1d"),
    ({"deficit__name": "blurr"}, 'deficit.name: unknown deficit "blurr" (did you mean "blur"?); valid deficits: '
                                 "none, blur, vflip, label_permutation, label_shuffle, noise"),
    ({"grid": {}}, "grid: required: at least grid.onset and grid.length"),
    ({"grid__onset": []}, "grid.onset: must be a non-empty list of values"),
    ({"grid__length": DELETE}, "grid.length: required: a list of epochs"),
    ({"optim__name": "rmsprop"}, "optim.name: \"rmsprop\" is not valid; choose one of 'sgd' | 'adam'"),
    ({"optim__lr": 0}, "optim.lr: must be > 0"),
    ({"model__name": "all_cnn_c"}, 'model.name: model "all_cnn_c" needs image inputs but data set "mnist1d" '
                                   "has signals"),
    ({"clean_after": 10}, "epochs: give exactly one of epochs (a fixed total) or clean_after"),
    ({"common_end": "yes"}, "common_end: expected true/false, got 'yes'"),
    ({"common_end": 1}, "common_end: expected true/false, got 1"),
    ({"name": "a b"}, "name: 'a b' cannot name a results folder: use letters, digits, - _ ."),
    ({"name": "../x"}, "name: '../x' cannot name a results folder"),
    ({"name": DELETE}, "name: required: a name for the sweep"),
    ({"seed": -1}, "seed: expected a seed >= 0, got -1"),
    ({"seed": 2 ** 64}, "seed: a seed must be at most 2**63 - 1 (they are stored as 64-bit integers)"),
    ({"seed": 2 ** 63 - 2, "replicates": 3}, "replicates: seeds 9223372036854775806 .. 9223372036854775808 pass"),
    ({"grid__seed": [1, 2 ** 63]}, "grid.seed[1]: a seed must be at most 2**63 - 1"),
    ({"grid__schedule": ["exponential", "restrt"]}, 'grid.schedule[1]: "restrt" is not a schedule (did you mean '
                                                    '"restart"?); choose one of exponential, constant, step, cosine, '
                                                    "restart"),
    ({"grid__deficit": ["blur", "vflp"]}, 'grid.deficit[1].name: unknown deficit "vflp" (did you mean "vflip"?)'),
    ({"deficit": {"name": "vflip", "factor": 4}}, 'deficit.factor: unknown key "factor"; it takes no options here'),
    ({"replicates": 60_000}, "grid: 120,000 window trials: more than one sweep holds (at most 100,000)"),
    ({"replicates": 3, "grid__seed": [7]}, "replicates: grid.seed lists the seeds itself, so replicates would be "
                                           "ignored; drop replicates, or drop grid.seed"),
    ({"seed": 5, "replicates": DELETE, "grid__seed": [7]}, "seed: grid.seed lists the seeds itself, so seed would be "
                                                            "ignored"),
    ({"resources__gpu": 1.5}, "resources.gpu: must be 0, a fraction below 1 (trials sharing a GPU) or a whole "
                              "number, got 1.5"),
    ({"resources__cpu": -1}, "resources.cpu: must be > 0 (CPUs per trial), got -1"),
    ({"deficit__factor": 1}, "deficit.factor: must be >= 2"),
    ({"grid__deficit": ["blur", {"name": "blur", "factor": 2}]}, 'grid.deficit: "blur" appears twice'),
    ({"grid__model": [{"name": "mlp", "hidden": [8]}, "mlp"]}, 'grid.model: "mlp" appears twice'),
    # a grid value's mistake names where the grid sets it
    ({"grid__optim.lr": [0.1, "x"]}, "grid.optim.lr: expected a number, got 'x'"),
    ({"grid__model.chanels": [16, 32]}, 'grid.model.chanels: unknown key "chanels" (did you mean "channels"?)'),
    ({"grid__deficit": [{"name": "blur", "factr": 4}, "vflip"]}, 'grid.deficit[0].factr: unknown key "factr"'),
    ({"grid__deficit": ["vflip", {"name": "blur", "factor": 1}]}, "grid.deficit[1].factor: must be >= 2"),
    ({"grid__model": ["cnn1d", {"name": "mlp", "hiden": [8]}]}, 'grid.model[1].hiden: unknown key "hiden"'),
    # a setting without its section, and an axis that is none
    ({"grid__lr": [0.1, 0.01]}, 'grid.lr: unknown key "lr" (did you mean "optim.lr"?); a grid axis that varies a '
                                "setting names its section: grid: {optim.lr: [...]}"),
    ({"grid__gamma": [0.9]}, 'grid.gamma: unknown key "gamma" (did you mean "schedule.gamma"?)'),
    ({"grid__factor": [2, 4]}, 'grid.factor: unknown key "factor"; valid keys here: onset, length, seed, deficit, '
                               "model, schedule, or a dotted axis that varies one setting of a section"),
    # a section without its name: a misspelt "name" is said as such
    ({"model": {"nmae": "cnn1d"}}, 'model.nmae: unknown key "nmae" (did you mean "name"?); "name" names the model'),
    ({"deficit": {"factor": 4}}, 'deficit.name: required: the deficit (a built-in name or "package.module:function")'),
    ({"metrics": [{"name": "nosuch"}]}, 'metrics[0].name: unknown metric "nosuch"; cpsweep has no built-in metrics, or '
                                        "your own as"),
    ({"schedule": 5, "grid__schedule": ["exponential", "restart"]}, "schedule: expected a mapping of settings, got 5"),
    ({"optim__lr": float("inf")}, "optim.lr: expected a finite number, got inf"),     # (it passed "> 0")
    ({"resources": {"cpu": float("inf")}}, "resources.cpu: expected a finite number, got inf"),
    ({"optim": {"name": "adam", "lr": 1e-3, "beta1": 1.5}}, "optim.beta1: must be in [0, 1)"),
    ({"model__channels": 0}, "model.channels: must be >= 1"),                         # (trials failed at launch)
    ({"model": {"name": "mlp", "hidden": [8, 0]}}, "model.hidden: every width must be >= 1"),
    ({"model": {"name": "resnet18", "width": 0}, "data__name": "cifar10"}, "model.width: must be >= 1"),
    ({"search": {"threshold": -5}}, "search.threshold: must be >= 0"),
    ({"grid__onset": [0, 0, 10]}, "grid.onset[1]: 0 is listed twice; give each value once"),  # (was one trial)
    ({"name": "n" * 101}, "name: is 101 characters long, at most 100"),
    ({"description": ["a"]}, "description: expected text, got ['a']"),
    ({"tracking": {"mlflow": {"tracking_uri": 5}}}, "tracking.mlflow.tracking_uri: expected text, got 5"),
    ({"replicates": DELETE, "grid__seed": [1, 1]}, "grid.seed[1]: 1 is listed twice"),
    ({"grid__optim.lr": [0.1, 0.1]}, "grid.optim.lr[1]: 0.1 is listed twice; give each value once"),
    ({"grid__optim.lr": ["1e-2", 0.01]}, "grid.optim.lr[1]: 0.01 is listed twice (1e-2 and 0.01 are the same "
                                         "value); give each value once"),  # (YAML 1.1 reads 1e-2 as text)
])
def test_every_mistake_names_the_field_and_the_fix(changes, expected):
    assert expected in error_of(spec(**changes))


def test_error_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec(replicate=2)))
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    assert str(info.value).startswith(f"{path}: replicate: unknown key")
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_sweep(path)


def test_all_mistakes_of_a_file_are_reported_together(tmp_path):
    raw = spec(replicate=2, optim__momentun=0.9, optim__lr="fast", model__chanels=64, grid__onsets=[0],
               resources__gpu=1.5)
    with pytest.raises(SpecError) as info:
        parse_sweep(raw, "s.yaml")
    fields = [p.field for p in info.value.problems]
    assert fields == ["replicate", "optim.momentun", "optim.lr", "model.chanels", "grid.onsets", "resources.gpu"]
    text = str(info.value)
    assert text.startswith("s.yaml: 6 problems; fix them and run again:\n")
    assert '  optim.momentun: unknown key "momentun" (did you mean "momentum"?)' in text
    assert "  optim.lr: expected a number, got 'fast'" in text
    assert info.value.field == "replicate"  # the first one, for callers that read one field
    # more than a handful: the first ones listed, the rest counted
    many = spec(**{f"optim__x{i}": 1 for i in range(12)})
    with pytest.raises(SpecError) as info:
        parse_sweep(many)
    assert len(info.value.problems) == 12 and str(info.value).endswith("  ... and 4 more")
    # a window that does not fit is checked once the parts it depends on are valid
    assert len(error_of(spec(grid__onset=[0, 16])).splitlines()) == 1


@pytest.mark.parametrize("text, expected", [
    ("name: t\ngrid:\n  onset: [0\n  length: [1]\n", ("(file): not valid YAML: line 4, column 9: expected ',' or ']', "
                                                   "but got ':' (while parsing a flow sequence at line 3, column 10)")),
    ("name: t\n  epochs: 3\n", "(file): not valid YAML: line 2, column 9: mapping values are not allowed here"),
    ("- name: t\n", "(top level): a sweep file must be a mapping of settings (name:, grid:, ...), got a YAML list"),
    ("just words", "(top level): a sweep file must be a mapping of settings (name:, grid:, ...), got a YAML str"),
    ("", "(top level): a sweep file must be a mapping of settings (name:, grid:, ...), got an empty file"),
    ("name: t\nseed: 0\nseed: 1\n", '(file): not valid YAML: line 3, column 1: "seed" is given twice (also on line '
                                    "2); keep one"),
    ("name: t\ngrid:\n  onset: [0]\n  onset: [1]\n", '(file): not valid YAML: line 4, column 3: "onset" is given '
                                                     "twice (also on line 3)"),
    ("name: t\ngrid: {onset: [0], onset: [1]}\n", '(file): not valid YAML: line 2, column 20: "onset" is given twice '
                                                 "(also on line 2)"),
])
def test_a_file_that_is_not_a_yaml_mapping(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)


def test_a_file_that_is_not_utf8_text(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: t\n\xff\xfe\x00binary")
    with pytest.raises(SpecError, match=r"bad.yaml: \(file\): not UTF-8 text \(byte 8: b'\\xff'\)"):
        load_sweep(path)


def test_grid_expands_with_one_baseline_per_seed():
    sweep = parse_sweep(spec(**{"grid__length": [0, 5]}))
    ids = [t.trial_id for t in sweep.trials()]
    assert ids == ["baseline-s0", "baseline-s1", "blur-o0-l5-s0", "blur-o0-l5-s1", "blur-o10-l5-s0",
                   "blur-o10-l5-s1"]
    base = sweep.trials()[0]
    assert base.is_baseline and base.deficit.name == "none" and base.onset == 0 and base.length == 0
    assert not any(base.deficit_active(e) for e in range(20))
    t = sweep.trials()[4]
    assert [e for e in range(20) if t.deficit_active(e)] == [10, 11, 12, 13, 14]
    assert all(t.epochs == 20 for t in sweep.trials())


def test_clean_after_sets_each_trials_length():
    raw = spec(epochs=DELETE, common_end=DELETE, clean_after=7)
    trials = {t.trial_id: t for t in parse_sweep(raw).trials()}
    assert trials["blur-o10-l5-s1"].epochs == 10 + 5 + 7
    # one baseline per seed, as long as its longest window (the shorter baselines are its first epochs)
    assert trials["baseline-s0"].epochs == max(t.epochs for t in trials.values()) == 22


UNEQUAL = ("epochs: windows end at epochs {} and {}, so with a common end they get {} and {} clean epochs: give "
           "clean_after: K (the same K clean epochs after every window), or set common_end: true to accept unequal "
           "recovery")


@pytest.mark.parametrize("changes, ends", [
    ({}, (5, 15, 15, 5)),                                                          # onsets 0 and 10, length 5
    ({"epochs": 120, "grid": {"onset": [0, 60], "length": [40]}}, (40, 100, 80, 20)),
    ({"grid": {"onset": [0], "length": [5, 10]}}, (5, 10, 15, 10)),                # lengths differ, onset does not
    ({"grid": {"onset": [0, 5], "length": [5], "deficit": ["blur", "vflip"]}}, (5, 10, 15, 10)),
    ({"grid": {"onset": {"from": 0, "to": 10, "step": 5}, "length": [5]},          # an adaptive sweep's lattice
      "search": {"coarse": [0, 10]}}, (5, 15, 15, 5)),
])
def test_a_common_end_with_unequal_recovery_must_be_asked_for(changes, ends):
    """`epochs: E` stops every trial at E, so windows ending at different epochs recover for different
    numbers of clean epochs: refused, naming `epochs` and both fixes, unless `common_end: true`."""
    with pytest.raises(SpecError) as info:
        parse_sweep(spec(common_end=DELETE, **changes), "s.yaml")
    assert info.value.field == "epochs" and len(info.value.problems) == 1
    assert str(info.value) == "s.yaml: " + UNEQUAL.format(*ends)
    sweep = parse_sweep(spec(common_end=True, **changes))
    assert sweep.common_end is True and {t.epochs for t in sweep.trials()} == {spec(**changes)["epochs"]}


def test_onset_and_length_take_a_range():
    sweep = parse_sweep(spec(grid={"onset": {"from": 0, "to": 10, "step": 10}, "length": {"from": 2, "to": 6,
                                                                                          "step": 2}}))
    assert sorted({(t.onset, t.length) for t in sweep.trials() if not t.is_baseline}) == [
        (o, n) for o in (0, 10) for n in (2, 4, 6)]


def test_windows_that_end_together_need_no_common_end():
    for grid in ({"onset": [5], "length": [10]}, {"onset": [5], "length": [10], "deficit": ["blur", "vflip"]},
                 {"onset": [5], "length": [10], "schedule": ["exponential", "restart"]}):
        sweep = parse_sweep(spec(common_end=DELETE, grid=grid))
        assert sweep.common_end is False and {t.window_end for t in sweep.trials() if not t.is_baseline} == {15}
    # a window that ends after the last epoch is refused as such, not as unequal recovery
    assert "window [16, 21) ends after the last epoch" in error_of(spec(common_end=DELETE, grid__onset=[0, 16]))


@pytest.mark.parametrize("value", [True, False])
def test_common_end_means_nothing_with_clean_after(value):
    raw = spec(epochs=DELETE, clean_after=7, common_end=value)
    assert error_of(raw) == ("common_end: means nothing with clean_after (every window already gets clean_after "
                             "clean epochs); remove it, or give epochs: E instead of clean_after to stop every trial "
                             "at epoch E")


def test_a_key_set_to_null_is_not_given_in_the_epoch_rule(tmp_path):
    """`clean_after: null` beside `epochs` was refused as both given: an override can now switch a file from
    one rule to the other (`clean_after=null epochs=...`, and back with `epochs=null common_end=null`), and the
    trials are those of a file that gives the one rule."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec(epochs=DELETE, common_end=DELETE, clean_after=7)))
    switched = load_sweep(str(path), ["clean_after=null", "epochs=20", "common_end=true"])
    assert (switched.epochs, switched.clean_after, switched.common_end) == (20, None, True)
    assert switched.trials() == parse_sweep(spec()).trials()  # BASE: epochs: 20, common_end: true
    path.write_text(yaml.safe_dump(spec(clean_after=None)))  # (in the file itself too)
    assert load_sweep(str(path)).trials() == parse_sweep(spec()).trials()
    back = load_sweep(str(path), ["epochs=null", "common_end=null", "clean_after=7"])
    assert (back.epochs, back.clean_after, back.common_end) == (None, 7, False)
    assert back.trials() == parse_sweep(spec(epochs=DELETE, common_end=DELETE, clean_after=7)).trials()
    neither = ("epochs: give exactly one of epochs (a fixed total) or clean_after (clean epochs after each window)")
    assert error_of(spec(epochs=None)) == neither
    assert error_of(spec(epochs=None, clean_after=None, common_end=None)) == neither
    assert error_of(spec(epochs=DELETE, clean_after=7, common_end=True)).startswith("common_end: means nothing")


def test_common_end_keeps_the_sweep_hash():
    """`common_end` accepts a design; it changes no trial, so results folders keep their hashes."""
    same_end = {"grid": {"onset": [5], "length": [10]}}
    plain = parse_sweep(spec(common_end=DELETE, **same_end))
    for value in (True, False):
        other = parse_sweep(spec(common_end=value, **same_end))
        assert other.hash() == plain.hash() and other.fixed_settings() == plain.fixed_settings()
        assert other.trials() == plain.trials()
    assert "common_end" not in plain.fixed_settings()
    # (the smoke variants, which now set common_end, keep the hashes pinned before it existed: test_golden.py)


def test_smoke_variant_asks_for_its_common_end():
    from cpsweep.config.variants import smoke_sweep

    sweep = load_sweep(os.path.join(ROOT, "sweeps", "quickstart.yaml"))  # clean_after: 30
    smoke = smoke_sweep(sweep)
    assert smoke.common_end is True and smoke.epochs == 3 and smoke.clean_after is None
    assert {t.window_end for t in smoke.trials() if not t.is_baseline} == {1, 2}
    assert smoke_sweep(smoke).common_end is True  # the smoke variant of an epochs: sweep, too


def test_schedule_axis_names_presets_and_refuses_duplicates():
    raw = spec(**{"grid__schedule": ["exponential", "restart", {"name": "step", "step_size": 5}, "constant"]})
    trials = {t.trial_id: t for t in parse_sweep(raw).trials()}
    r = trials["blur-o10-l5-schedulerestart-s0"]
    assert r.schedule.name == "exponential" and r.schedule.restart_after_deficit
    assert r.tags == (("schedule", "restart"),)
    assert r.baseline_id == "baseline-r15-schedulerestart-s0" and r.baseline_id in trials
    assert trials["blur-o0-l5-schedulestep-s1"].schedule.step_size == 5
    assert not trials["blur-o0-l5-scheduleconstant-s0"].schedule.restart_after_deficit
    with pytest.raises(SpecError, match=r"grid.schedule.*\"exponential\" appears twice.*schedule.gamma"):
        parse_sweep(spec(**{"grid__schedule": ["exponential", {"name": "exponential", "gamma": 0.9}]}))
    # a mapping without a name takes the file's schedule's name, so it collides with that name
    with pytest.raises(SpecError, match=r"grid.schedule.*\"step\" appears twice"):
        parse_sweep(spec(schedule={"name": "step"}, **{"grid__schedule": ["step", {"gamma": 0.9}]}))
    with pytest.raises(SpecError, match=r"grid.schedule\[0\]"):
        parse_sweep(spec(**{"grid__schedule": [3]}))


def test_cosine_needs_a_fixed_total_for_length_matched_baselines():
    with pytest.raises(SpecError, match="schedule.name.*cosine.*epochs: \\(a fixed total\\)"):
        parse_sweep(spec(epochs=DELETE, common_end=DELETE, clean_after=7, schedule={"name": "cosine"}))
    assert parse_sweep(spec(schedule={"name": "cosine"})).trials()  # epochs: 20 for every trial


def test_extra_axes_and_overrides():
    raw = spec(**{"replicates": DELETE, "grid__seed": [3], "grid__deficit": ["blur", "vflip"],
                  "grid__optim.lr": [0.1, 0.01]})
    trials = parse_sweep(raw).trials()
    ids = {t.trial_id: t for t in trials}
    assert set(ids) == {f"{p}-lr{lr}-s3" for lr in (0.1, 0.01)
                        for p in ("baseline", "blur-o0-l5", "blur-o10-l5", "vflip-o0-l5", "vflip-o10-l5")}
    assert ids["vflip-o10-l5-lr0.01-s3"].optim.lr == 0.01
    assert ids["vflip-o10-l5-lr0.01-s3"].deficit.name == "vflip"


def test_an_override_sets_a_dotted_grid_axis():
    from cpsweep.config.yaml_text import apply_overrides

    raw = apply_overrides(spec(), ["grid.optim.lr=[0.1, 0.01]", "grid.deficit.factor=[2]", "optim.lr=0.2"])
    assert raw["grid"]["optim.lr"] == [0.1, 0.01] and raw["grid"]["deficit.factor"] == [2]  # not grid: {optim: ..}
    assert {t.optim.lr for t in parse_sweep(raw).trials()} == {0.1, 0.01}


def test_an_override_that_replaces_what_an_earlier_one_set_is_refused():
    from cpsweep.config.yaml_text import apply_overrides

    with pytest.raises(SpecError, match="deficit: replaces the whole of deficit, dropping deficit.factor given "
                                        "before it on the command line; give deficit=... first"):
        apply_overrides(spec(), ["deficit.factor=3", "deficit=vflip"])
    assert apply_overrides(spec(), ["deficit=blur", "deficit.factor=3"])["deficit"] == {"name": "blur", "factor": 3}


def test_baseline_is_shared_across_deficit_options():
    trials = parse_sweep(spec(**{"grid__deficit.factor": [2, 4]})).trials()
    assert sorted(t.trial_id for t in trials if t.is_baseline) == ["baseline-s0", "baseline-s1"]
    assert {t.deficit.options["factor"] for t in trials if not t.is_baseline} == {2, 4}


def test_model_axis():
    trials = parse_sweep(spec(**{"grid__model": [{"name": "mlp", "hidden": [32]}, "cnn1d"]})).trials()
    mlp = [t for t in trials if t.model.name == "mlp"]
    assert mlp[0].model.options["hidden"] == (32,) and "-modelmlp" in mlp[0].trial_id
    assert len(trials) == 2 * 2 * 3


def test_a_dotted_axis_sets_its_option_in_a_component_axis_whatever_the_grid_order():
    # the option's axis written before the section's (a whole model or deficit replaced the option before)
    grid = {"onset": [0], "length": [5], "model.channels": [4, 32], "model": ["cnn1d"],
            "deficit.factor": [2, 8], "deficit": [{"name": "blur", "factor": 4}]}
    trials = parse_sweep(spec(grid=grid)).trials()
    for t in trials:
        tags = dict(t.tags)
        assert t.model.options["channels"] == tags["model.channels"], t.trial_id
        assert t.is_baseline or t.deficit.options["factor"] == tags["deficit.factor"], t.trial_id
    assert {t.deficit.options.get("factor") for t in trials} == {None, 2, 8}
    assert len({t.trial_id for t in trials}) == len(trials) == 2 * (2 + 2 * 2)


def test_a_dotted_axis_over_component_entries_that_lack_its_option_is_refused():
    grid = {"onset": [0], "length": [5], "deficit": ["blur", "vflip"], "deficit.factor": [2, 4]}
    with pytest.raises(SpecError, match=r'grid.deficit.factor: grid.deficit\[1\] \(vflip\): unknown key "factor"; '
                                        r"it takes no options here; give factor inside the grid.deficit entries"):
        parse_sweep(spec(grid=grid)).trials()
    # an entry that takes the option, given a value out of its range: the value named, no such advice
    bad = {"onset": [0], "length": [5], "model": ["cnn1d"], "model.channels": [4, -2]}
    with pytest.raises(SpecError, match=r"grid.model.channels: -2 with grid.model\[0\] \(cnn1d\): must be") as e:
        parse_sweep(spec(grid=bad)).trials()
    assert "instead of as an axis" not in str(e.value)


def test_two_deficits_of_one_name_on_an_axis_are_told_apart_from_one_listed_twice(tmp_path, monkeypatch):
    (tmp_path / "tp_dup.py").write_text("def vflip(x, y, ctx):\n    return x, y\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    grid = {"onset": [0], "length": [5], "deficit": ["vflip", "tp_dup:vflip"]}
    with pytest.raises(SpecError, match='grid.deficit: tp_dup:vflip and vflip are both named "vflip" in trial ids, '
                                        "which name a deficit by its function's name; rename one"):
        parse_sweep(spec(grid=grid))
    with pytest.raises(SpecError, match='grid.deficit: "vflip" appears twice; vary its options with a dotted axis'):
        parse_sweep(spec(grid={**grid, "deficit": ["vflip", {"name": "vflip"}]}))


def test_an_option_override_for_a_section_only_the_grid_has_says_where_it_goes():
    from cpsweep.config.yaml_text import apply_overrides

    raw = spec(deficit=DELETE, grid__deficit=["blur", "vflip"])
    with pytest.raises(SpecError, match=r"deficit.factor: the file has no deficit section: its deficits are the "
                                        r"entries of grid.deficit; set factor in those entries, or vary it as an "
                                        r"axis: grid.deficit.factor=\[...\]"):
        apply_overrides(raw, ["deficit.factor=2"])


def test_every_grid_values_mistake_is_said_at_once_each_once():
    raw = spec(optim={"name": "sgd", "lr": 0.05, "weight_decay": 0.0},
               grid={"onset": [0, 10], "length": [5], "deficit": ["weight_decay", "no_augment"]})
    with pytest.raises(SpecError) as e:
        parse_sweep(raw).trials()
    assert [p.field for p in e.value.problems] == ["grid.deficit[0].name", "grid.deficit[1].name"]  # (not 2 x 2 x 2)
    assert str(e.value).startswith("2 problems; fix them and run again:")


def test_list_valued_axis_gets_readable_ids():
    trials = parse_sweep(spec(model="mlp", **{"grid__model.hidden": [[64], [64, 64, 64]]})).trials()
    ids = {t.trial_id: t for t in trials}
    assert ids["baseline-hidden64x64x64-s0"].model.options["hidden"] == (64, 64, 64)
    assert ids["baseline-hidden64-s1"].model.options["hidden"] == (64,)
    assert len(trials) == 2 * 2 * 3


def test_trial_dict_roundtrip_and_hash():
    sweep = parse_sweep(spec(**{"grid__optim.lr": [0.1]}))
    for t in sweep.trials():
        assert TrialSpec.from_dict(t.to_dict()) == t
    assert parse_sweep(spec()).hash() == parse_sweep(spec()).hash()
    assert parse_sweep(spec(optim__lr=0.1)).hash() != parse_sweep(spec()).hash()
    assert parse_sweep(spec(optim__lr=0.1)).fixed_settings() != parse_sweep(spec()).fixed_settings()
    # extending the grid keeps the fixed settings
    assert parse_sweep(spec(grid__onset=[0, 5, 10])).fixed_settings() == parse_sweep(spec()).fixed_settings()


def test_make_trial_checks_its_window():
    sweep = parse_sweep(spec())
    with pytest.raises(SpecError, match="onset: expected a whole number"):
        sweep.make_trial(-1, 3, 0)
    with pytest.raises(SpecError, match=r"window \[18, 23\) ends after the last epoch"):
        sweep.make_trial(18, 5, 0)
    assert sweep.make_trial(18, 5, 0, epochs=30).epochs == 30


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "sweeps", "**", "*.yaml"), recursive=True)))
def test_every_sweep_file_validates(path):
    sweep = load_sweep(path)
    assert sweep.trials() and sweep.total_epochs() > 0


def test_validate_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "cpsweep.cli", "validate", os.path.join(ROOT, "sweeps", "quickstart.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "40 trials (20 baselines), 2150 training epochs without sharing, 1350 with shared prefixes" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec(replicate=2)))
    out = subprocess.run([sys.executable, "-m", "cpsweep.cli", "validate", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (f'cpsweep: error: {bad}: replicate: unknown key "replicate" (did you mean '
                                  f'"replicates"?); valid keys here: name, description, seed, replicates, epochs, '
                                  f"clean_after, common_end, data, model, optim, schedule, deficit, fisher, engine, "
                                  f"bn_refresh, checkpoint_every, grid, resources, tracking, search, metrics")
    assert "Traceback" not in out.stderr


def test_validate_notes_a_section_that_a_grid_axis_replaces(tmp_path, capsys):
    """A file's deficit (or model) beside grid.deficit (grid.model) runs in no trial of the sweep: validate says
    so, and is quiet when the file has no such pair."""
    from cpsweep.cli import main

    both, alone = tmp_path / "both.yaml", tmp_path / "alone.yaml"
    both.write_text(yaml.safe_dump(spec(deficit={"name": "blur", "factor": 4}, grid__deficit=["vflip", "noise"],
                                        model="mlp", grid__model=["cnn1d"])))
    alone.write_text(yaml.safe_dump(spec(name="alone", deficit={"name": "blur", "factor": 4})))  # (another sweep)
    assert main(["validate", str(both), str(alone)]) == 0
    out = capsys.readouterr().out
    assert out.count("is not used by this sweep") == 2, out
    assert ("note: the file's deficit (blur) is not used by this sweep: grid.deficit replaces it in every trial, "
            "and in `cpsweep trial`'s; list it in grid.deficit to run it, or delete it") in out
    assert ("note: the file's model (mlp) is not used by this sweep: grid.model replaces it in every trial (baselines "
            "included)") in out
    assert "not used" not in out.split(f"{alone}: ok")[1]
    # a dotted axis replaces the file's value of its key (an override's too)
    lr = tmp_path / "lr.yaml"
    lr.write_text(yaml.safe_dump(spec(name="lr", **{"grid__optim.lr": [0.1, 0.01]})))
    assert main(["validate", str(lr), "optim.momentum=0.5"]) == 0
    out = capsys.readouterr().out
    assert ("note: the file's optim.lr (0.05) is not used by this sweep: grid.optim.lr replaces it in every trial it "
            "applies to; list it in grid.optim.lr to run it, or delete it") in out and out.count("not used") == 1


def test_an_option_added_later_keeps_old_hashes_at_its_default():
    """cnn1d's conv `bias` came after results folders existed: omitted or false, the sweep hash is the old
    one; true, it is a new sweep."""
    plain = parse_sweep(spec())
    assert parse_sweep(spec(model={"name": "cnn1d", "bias": False})).hash() == plain.hash()
    biased = parse_sweep(spec(model={"name": "cnn1d", "bias": True}))
    assert biased.hash() != plain.hash() and biased.base.model.options["bias"] is True
    with pytest.raises(SpecError, match="model.bias"):
        parse_sweep(spec(model={"name": "cnn1d", "bias": "maybe"}))


@pytest.mark.parametrize("text,value", [("1e-3", 1e-3), ("5E+4", 5e4), ("-25e-2", -0.25), ("+3e0", 3.0)])
def test_every_float_field_takes_scientific_notation(tmp_path, text, value):
    """PyYAML (YAML 1.1) reads 1e-3 (no dot) as a string: every float field takes it as the number."""
    assert isinstance(yaml.safe_load(f"lr: {text}")["lr"], str)  # the reason
    from cpsweep.config._parse import coerce

    assert coerce(text, float, "optim.lr") == value
    spec = tmp_path / "s.yaml"
    spec.write_text("name: sci\nepochs: 4\noptim: {lr: 1e-3, weight_decay: 5e-4}\nfisher: {method: variational, "
                    "beta: 1e-20}\ngrid: {onset: [0], length: [2]}\n")
    t = load_sweep(str(spec)).trials()[0]
    assert (t.optim.lr, t.optim.weight_decay, t.fisher.beta) == (1e-3, 5e-4, 1e-20)
    with pytest.raises(SpecError, match="optim.lr: expected a number, got 'fast'"):
        coerce("fast", float, "optim.lr")
    with pytest.raises(SpecError, match="data.name"):
        coerce(1e-3, str, "data.name")  # strings stay strings: only float fields convert


def test_a_grid_axis_value_in_scientific_notation_is_its_number(tmp_path):
    """A dotted axis's values are compared as the field's type: `1e-2` (text to YAML 1.1) trains the lr 0.01
    that `0.01` does, and the two in one axis are one value listed twice. Trial ids and tags keep the file's
    own form (`lr1e-2`, `lr0.01`), so results folders already written keep their trials' names (a relaunch
    that writes a value the other way is refused: tests/test_sweep.py)."""
    sci, plain = tmp_path / "sci.yaml", tmp_path / "plain.yaml"
    body = "name: s\nclean_after: 2\nmodel: {name: mlp}\n"
    sci.write_text(body + "grid: {onset: [0], length: [2], optim.lr: [1e-2, 1e0], optim.weight_decay: [0, 5e-4], "
                          "model.hidden: [[1e1, 2e1]]}\n")
    plain.write_text(body + "grid: {onset: [0], length: [2], optim.lr: [0.01, 1.0], optim.weight_decay: [0, 0.0005], "
                            "model.hidden: [[10, 20]]}\n")
    a, b = load_sweep(str(sci)), load_sweep(str(plain))
    assert a.grid["optim.lr"] == ("1e-2", "1e0") and b.grid["optim.lr"] == (0.01, 1.0)  # as written
    assert "blur-o0-l2-lr1e-2-weight_decay5e-4-hidden1e1x2e1-s0" in {t.trial_id for t in a.trials()}
    assert "blur-o0-l2-lr0.01-weight_decay0.0005-hidden10x20-s0" in {t.trial_id for t in b.trials()}
    settings = lambda sweep: sorted((t.optim.lr, t.optim.weight_decay, t.model.options["hidden"])  # noqa: E731
                                    for t in sweep.trials())
    assert settings(a) == settings(b)  # the same numbers trained
    ints = parse_sweep(spec(**{"grid__optim.lr": [1, 0.01], "grid__optim.weight_decay": [0]}))
    assert {t.trial_id for t in ints.trials() if t.is_baseline} == {"baseline-lr1-weight_decay0-s0",
                                                                    "baseline-lr0.01-weight_decay0-s0",
                                                                    "baseline-lr1-weight_decay0-s1",
                                                                    "baseline-lr0.01-weight_decay0-s1"}
    assert error_of(spec(**{"grid__optim.lr": [1, 1.0]})).startswith("grid.optim.lr[1]: 1.0 is listed twice")
    assert error_of(spec(**{"grid__optim.lr": ["1e-2", 0.01]})).startswith(
        "grid.optim.lr[1]: 0.01 is listed twice (1e-2 and 0.01 are the same value)")


def test_a_relaunch_that_writes_a_value_the_other_way_is_refused(tmp_path):
    """Trial ids follow the file's form, so `0.01` where the folder's run wrote `1e-2` would train those
    trials again under other ids and hold each setting twice: refused, naming the axis and the fix."""
    from cpsweep.errors import SpecError
    from cpsweep.storage.store import Store
    from cpsweep.sweep.launch import check_same_fixed_settings, write_spec

    store = Store(str(tmp_path))
    first = parse_sweep(spec(**{"grid__optim.lr": ["1e-2", 0.1]}))
    write_spec(store, first)
    check_same_fixed_settings(store, parse_sweep(spec(**{"grid__optim.lr": ["1e-2", 0.1, 0.2]})))  # extended: ok
    with pytest.raises(SpecError, match=r"grid.optim.lr: 0.01 is written 1e-2 in the results already in .*: "
                                        r"write it 1e-2 again"):
        check_same_fixed_settings(store, parse_sweep(spec(**{"grid__optim.lr": [0.01, 0.1]})))


def test_every_integer_field_takes_a_whole_number_in_scientific_notation(tmp_path):
    """1e3 is text to YAML 1.1 too: an integer field takes it when it is a whole number, exactly (no float
    in between), and refuses a fraction; the trials are those of the plain numbers."""
    from cpsweep.config._parse import coerce

    assert coerce("1e18", int, "seed") == 10 ** 18 and coerce("+1.5E+1", int, "x") == 15
    for text in ("1e-3", "1.5e0", "1e999"):  # a fraction; a number too large to be a typo worth converting
        with pytest.raises(SpecError, match="expected an integer"):
            coerce(text, int, "optim.batch_size")
    sci, plain = tmp_path / "sci.yaml", tmp_path / "plain.yaml"
    sci.write_text("name: s\nseed: 1e2\nreplicates: 2e0\nclean_after: 1e1\noptim: {batch_size: 6.4e1}\n"
                   "grid: {onset: {from: 0, to: 1e1, step: 5e0}, length: [2e0]}\n")
    plain.write_text("name: s\nseed: 100\nreplicates: 2\nclean_after: 10\noptim: {batch_size: 64}\n"
                     "grid: {onset: {from: 0, to: 10, step: 5}, length: [2]}\n")
    assert load_sweep(str(sci)).hash() == load_sweep(str(plain)).hash()
    assert [t.trial_id for t in load_sweep(str(sci)).trials()] == [t.trial_id for t in load_sweep(str(plain)).trials()]
    assert error_of(spec(replicates="1e-1")) == "replicates: expected an integer, got '1e-1'"


def test_every_mistake_of_a_file_at_once_range_checks_included(tmp_path):
    """A range mistake (data.subset: 0) is reported with a type mistake in another section (optim.lr) and
    another range mistake (fisher.every), not only once those are fixed."""
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nepochs: 4\ndata: {subset: 0}\noptim: {lr: fast}\nfisher: {every: -1}\n"
                    "grid: {onset: [0], length: [2]}\n")
    with pytest.raises(SpecError) as err:
        load_sweep(str(spec))
    fields = [p.field for p in err.value.problems]
    assert {"data.subset", "optim.lr", "fisher.every"} <= set(fields), fields
    assert "optim.lr: must be > 0" not in str(err.value)  # a field with a mistake of its own is said once
    # a section with an unknown key still has its other fields' ranges checked, and beside the grid's mistakes
    spec.write_text("name: s\nepochs: 10\noptim: {lr: -1, momentum: 3, batchsize: 10}\n"
                    "schedule: {gama: 0.9, step_size: 0}\ngrid: {onset: [0, 0], length: [2]}\n")
    with pytest.raises(SpecError) as err:
        load_sweep(str(spec))
    assert [p.field for p in err.value.problems] == ["optim.batchsize", "schedule.gama", "optim.lr", "optim.momentum",
                                                     "schedule.step_size", "grid.onset[1]"], str(err.value)


def test_a_tracking_section_that_validates_also_launches(tmp_path):
    """Unknown trackers, bad options and missing packages are found by validation (exit 2, one line each),
    not when the launch starts the trackers."""
    from tiny_specs import tiny_sweep as _tiny

    cases = [({"comet": {"project": "x"}}, 'tracking.comet: unknown key "comet"'),
             ({"mlflow": {"tracking_url": "x"}}, 'tracking.mlflow.tracking_url: unknown key "tracking_url" '
                                                 '(did you mean "tracking_uri"?)'),
             ({"mlflow": "x"}, "tracking.mlflow: expected a mapping of options or nothing")]
    for tracking, message in cases:
        with pytest.raises(SpecError) as err:
            parse_sweep(_tiny(tracking=tracking))
        assert message in str(err.value)
    import importlib.util

    real = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
        with pytest.raises(SpecError, match="tracking.wandb: the wandb package is not installed here"):
            parse_sweep(_tiny(tracking={"wandb": None}))
