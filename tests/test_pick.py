"""`cpsweep trial`'s choice of one trial of a sweep (`config/pick.py`): every window trial of a grid with
other axes is reachable, and is exactly the sweep's own; an axis left out takes its first value; a wrong
pick is one line naming --axis."""

from __future__ import annotations

import itertools
import os

import pytest
import yaml

from cpsweep.config.pick import other_axes, pick_trial
from cpsweep.config.sweep_file import load_sweep, parse_sweep
from cpsweep.errors import SpecError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MANY_AXES = {
    "name": "axes", "seed": 3, "replicates": 2, "clean_after": 2,
    "data": {"name": "mnist1d"}, "model": {"name": "cnn1d"}, "deficit": {"name": "blur", "factor": 4},
    "grid": {"onset": [0, 2], "length": [1, 2],
             "deficit": [{"name": "blur", "factor": 2}, "vflip"],
             "model": ["cnn1d", {"name": "mlp", "hidden": [8, 8]}],
             "optim.lr": [0.1, 0.01],
             "schedule": ["exponential", "restart"]},
}


def as_typed(value) -> str:
    """A grid value as a user types it after --axis: a component by its name, a list in YAML."""
    if isinstance(value, dict):
        return value["name"]
    return yaml.safe_dump(list(value), default_flow_style=True).strip() if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("sweep", [parse_sweep(MANY_AXES), load_sweep(os.path.join(ROOT, "sweeps", "quickstart.yaml")),
                                   load_sweep(os.path.join(ROOT, "examples", "own_experiment", "sweep.yaml"))],
                         ids=["many-axes", "quickstart", "own-experiment"])
def test_every_window_trial_of_the_sweep_is_picked_exactly(sweep):
    """Brute force: every combination of the other axes' values, typed as a user would, with every window
    and seed, gives a trial of `sweep.trials()` equal to it, and together they are all its window trials."""
    windows = {t.trial_id: t for t in sweep.trials() if not t.is_baseline}
    axes = other_axes(sweep)
    picked = {}
    for combo in itertools.product(*(sweep.grid[a] for a in axes)):
        picks = [f"{a}={as_typed(v)}" for a, v in zip(axes, combo)]
        for onset, length, seed in itertools.product(sweep.grid["onset"], sweep.grid["length"], sweep.seeds):
            trial, values, defaulted = pick_trial(sweep, onset, length, seed, picks)
            assert trial == windows[trial.trial_id] and defaulted == [] and list(values.values()) == list(combo)
            picked[trial.trial_id] = trial
    assert picked.keys() == windows.keys()


def test_an_axis_left_out_takes_its_first_value_and_is_said():
    sweep = parse_sweep(MANY_AXES)
    trial, values, defaulted = pick_trial(sweep, 0, 1, 3, ["schedule=restart"])
    assert defaulted == ["deficit", "model", "optim.lr"]
    assert values == {"deficit": {"name": "blur", "factor": 2}, "model": "cnn1d", "optim.lr": 0.1,
                      "schedule": "restart"}
    assert trial.deficit.options["factor"] == 2  # the grid's blur, not the file's factor-4 one
    assert trial.schedule.restart_after_deficit and trial.optim.lr == 0.1
    assert pick_trial(sweep, 0, 1, 3, ["model=mlp"])[0].model.options["hidden"] == (8, 8)


def test_a_pick_is_read_as_the_grid_reads_its_values():
    """`--axis optim.lr=1e-1` (text to YAML 1.1) is the 0.1 of `grid.optim.lr`, written either way in the file."""
    for lrs in ([0.1, 0.2], ["1e-1", "2e-1"]):
        sweep = parse_sweep({**MANY_AXES, "grid": {**MANY_AXES["grid"], "optim.lr": lrs}})
        for text in ("1e-1", "0.1", "1.0e-1"):
            trial, values, _ = pick_trial(sweep, 0, 1, 3, [f"optim.lr={text}"])
            assert values["optim.lr"] == lrs[0] and trial.optim.lr == 0.1  # (the grid's value, as written)
            assert f"-lr{lrs[0]}-" in trial.trial_id and trial in sweep.trials()


@pytest.mark.parametrize("picks, message", [
    (["schedule"], '--axis: "schedule" is not AXIS=VALUE; write e.g. --axis schedule=restart'),
    (["lr=0.1"], '--axis: "lr" is not a grid axis of this sweep besides onset, length and seed; its others: '
                 "deficit, model, optim.lr, schedule"),
    (["onset=2"], '--axis: "onset" is not a grid axis'),
    (["optim.lr=0.5"], "--axis optim.lr: '0.5' is not one of grid.optim.lr's values: 0.1, 0.01"),
    (["deficit=noise"], "--axis deficit: 'noise' is not one of grid.deficit's values: blur, vflip"),
    (["schedule=restart", "schedule=exponential"], "--axis schedule: given twice; give it once"),
])
def test_a_wrong_pick_names_the_axis_and_its_values(picks, message):
    with pytest.raises(SpecError) as info:
        pick_trial(parse_sweep(MANY_AXES), 0, 1, 3, picks)
    assert str(info.value).startswith(message), str(info.value)
