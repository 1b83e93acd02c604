"""Adaptive sweeps on a real local Ray: the rounds inside one launch, the round and reason of every trial,
prefix checkpoints shared across rounds, the trials identical to a grid's, a relaunch that replays the
rounds and trains nothing, a killed driver resumed into the same search, and bad `search:` input. One
search, its driver killed and relaunched, serves every end-to-end check.

With two seeds every onset is "unclear" (three paired seeds are needed to decide anything), so the rounds
do not depend on the trained numbers: coarse 0/4/8, then the zone's upper edge bisected (nothing is shown
"in", so only that edge): 6, then 7."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from headless_chromium import CHROMIUM, figures_expected, open_in_chromium
from killed_launch import launch_and_kill, relaunch
from tiny_specs import tiny_sweep
from trial_runs import COMPARE, read, reference_epochs

from cpsweep.config.sharing import sharing_summary
from cpsweep.config.sweep_file import parse_sweep

SEARCH = dict(name="tinysearch", replicates=2, epochs=10, fisher={"every": 0},
              grid={"onset": {"from": 0, "to": 8, "step": 1}, "length": [2]}, search={"coarse": [0, 4, 8]})
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = {0: 0, 4: 0, 8: 0, 6: 1, 7: 2}  # onset -> round it is added in


def spec_file(tmp_path, **changes) -> str:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep(SEARCH, **changes)))
    return str(path)


def grid_of_chosen() -> dict:
    """The same sweep as a plain grid of the onsets the search chooses."""
    return tiny_sweep(SEARCH, search=None, grid={"onset": sorted(ROUNDS), "length": [2]})


def check_search_results(folder) -> None:
    trials, epochs = read(folder)
    assert (trials.status == "ok").all()
    windows = trials[trials.deficit != "none"]
    assert windows.groupby("onset").size().to_dict() == {o: 2 for o in sorted(ROUNDS)}
    assert windows.set_index("trial_id").apply(lambda r: ROUNDS[r.onset] == r["round"], axis=1).all()
    assert (trials[trials.deficit == "none"].reason == "baseline").all()
    assert (windows[windows["round"] == 2].reason == "between 6 (unclear) and 8 (unclear): both unclear: too wide "
                                                     "to tell").all()
    # every window after round 0 branched from its seed's baseline at its onset: the baselines saved
    # prefix checkpoints for rounds that did not exist yet, so the search trained what one launch of the
    # chosen trials would
    assert (windows.shared_epochs == windows.onset).all()
    chosen = parse_sweep(grid_of_chosen()).trials()
    trained = int((trials.epochs - trials.shared_epochs).sum())
    assert trained == sharing_summary(chosen)[1]
    # the same numbers as the chosen trials trained back to back, uninterrupted
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(grid_of_chosen())[COMPARE])
    doc = json.loads((folder / "search.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    assert [sorted(a["onset"] for a in r["added"]) for r in doc["rounds"][1:]] == [[6], [7]]
    assert doc["epochs"]["search"] == trained and doc["trials"] == {"search": 12, "full_grid": 20}
    assert doc["epochs"]["full_grid"] == sharing_summary(parse_sweep(tiny_sweep(SEARCH)).trials())[1]
    (group,) = doc["groups"]
    assert group["boundary"]["status"] == "unclear" and {p["cls"] for p in group["points"]} == {"unclear"}
    assert "every window group's end is settled" in doc["stop"]


pytestmark = pytest.mark.slow


@pytest.mark.serial
def test_adaptive_sweep_end_to_end_through_a_killed_driver(tmp_path):
    """One search, its driver killed in round 1 and relaunched: the relaunch resumes into the same search,
    whose trials, rounds, reasons and numbers are those of an uninterrupted one (`check_search_results`);
    then its report, `cpsweep status`, a relaunch that replays the rounds and trains nothing, and the full
    grid it is compared with (one search serves all: each search costs the suite about a minute)."""
    spec = spec_file(tmp_path)
    storage = tmp_path / "res"
    folder = storage / "tinysearch"
    round1 = [folder / "shards" / f"blur-o6-l2-s{s}" / "trial.parquet" for s in (0, 1)]
    # killed in round 1: round 0 done, round 2 not chosen yet
    cmd = launch_and_kill(spec, storage, lambda: any(p.exists() for p in round1), "round 1", timeout=180)
    assert not (folder / "shards" / "blur-o7-l2-s0" / "trial.parquet").exists()
    # both round-1 trials may have finished before the kill landed: then round 1 is complete and the
    # relaunch resumes at round 2 (a replay decides from the shards alone)
    resumes_at = 2 if all(p.exists() for p in round1) else 1
    out = relaunch(cmd).stdout
    assert f"adaptive: round {resumes_at}," in out, out
    assert "round 2: adds blur l2 onset 7 (between 6 (unclear) and 8 (unclear)" in out, out
    assert "3 round(s), 12 of 20 trials" in out and "12 ok" in out, out
    check_search_results(folder)  # the same trials, rounds, reasons and numbers as without the kill

    page = (folder / "report.html").read_text()
    assert "Adaptive search" in page and "search-rounds" in page
    if CHROMIUM:  # the page, adaptive section included, draws every figure without an error
        expected = figures_expected(page)
        rendered, errors, _, _ = open_in_chromium(folder / "report.html", expected)
        assert errors == [] and rendered == expected

    status = subprocess.run([sys.executable, "-m", "cpsweep.cli", "status", str(folder)], capture_output=True,
                            text=True, timeout=60)
    assert "blur l2: unclear:" in status.stdout and "3 round(s), 12 of 20 trials" in status.stdout

    # a relaunch replays the rounds from the results: nothing to run, the same search.json
    before = (folder / "search.json").read_text()
    again = relaunch(cmd)
    assert "12 trials (adaptive: round 2, of the full grid's 20), 12 already done, 0 to run" in again.stdout
    assert json.loads((folder / "search.json").read_text()) == json.loads(before)

    # --full-grid runs every onset under <name>-grid; analysis/search_vs_grid.py compares the two
    relaunch([*cmd, "--full-grid"])
    res = subprocess.run([sys.executable, os.path.join(ROOT, "analysis", "search_vs_grid.py"), str(folder),
                          str(storage / "tinysearch-grid"), "--json", str(tmp_path / "cmp.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["identical_trials"] == cmp["common_trials"] == 12  # the search's trials are the grid's
    assert cmp["groups"][0]["agree"] and len(cmp["groups"][0]["rows"]) == 9
    assert cmp["epochs_grid"] == sharing_summary(parse_sweep(tiny_sweep(SEARCH)).trials())[1]
    assert cmp["epochs_search"] == sharing_summary(parse_sweep(grid_of_chosen()).trials())[1]


@pytest.mark.parametrize("change,message", [
    ({"search": {"coarse": 4, "margn": 1}}, 'search.margn: unknown key "margn"'),
    ({"search": {"coarse": [0, 9]}}, "search.coarse: onsets [9] are not in grid.onset"),
    ({"search": {"margin": 0}}, "search.margin: must be > 0"),
    ({"grid": {"onset": {"from": 0, "to": 8}, "length": [2]}}, "grid.onset.step: required"),
    ({"search": {"coarse": [0, 4, 8], "max_epochs": 20}}, "search.max_epochs: round 0 alone (onsets [0, 4, 8]) has"),
])
def test_bad_search_input_exits_2_naming_the_field(tmp_path, change, message):
    spec = spec_file(tmp_path, **change)
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert message in res.stderr, res.stderr
    assert not (tmp_path / "r").exists()
