"""Reducers against values worked out by hand."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from results_fixture import falling, make_faceted_results, make_results, peaked

from cpsweep.results.reduce import (chosen_trials, critical_period, group_curves, heatmap_grid, layer_shares,
                                    removal_curve, sample_windows, sensitivity, shown_trials)


def row(tid, deficit, onset, length, seed, acc, status="ok"):
    return {"trial_id": tid, "baseline_id": f"baseline-s{seed}", "status": status, "deficit": deficit,
            "onset": onset, "length": length, "seed": seed, "epochs": 60, "tags": "", "final_test_acc": acc}


TRIALS = pd.DataFrame([
    row("baseline-s0", "none", 0, 0, 0, 0.90), row("baseline-s1", "none", 0, 0, 1, 0.92),
    row("blur-o0-l10-s0", "blur", 0, 10, 0, 0.80), row("blur-o0-l10-s1", "blur", 0, 10, 1, 0.86),
    row("blur-o20-l10-s0", "blur", 20, 10, 0, 0.89),
    row("blur-o20-l10-s1", "blur", 20, 10, 1, 0.10, status="failed"),
    row("blur-o40-l10-s0", "blur", 40, 10, 0, float("nan"), status="pending"),
])


def test_sensitivity_averages_seeds_against_each_seeds_baseline():
    s = sensitivity(TRIALS).set_index("onset")
    assert s.loc[0, "sensitivity"] == pytest.approx(8.0)  # seed 0 lost 10 pts, seed 1 lost 6
    assert s.loc[0, "sem"] == pytest.approx(np.std([10.0, 6.0], ddof=1) / math.sqrt(2))
    assert s.loc[0, "n_seeds"] == 2 and s.loc[0, "baseline_acc"] == pytest.approx(91.0)
    # its 95 % t-interval: 8 +- t(0.975, 1 dof) * se = 8 +- 12.706 * 2 (a printed t table)
    assert (s.loc[0, "low"], s.loc[0, "high"]) == pytest.approx((8 - 12.706 * 2, 8 + 12.706 * 2), abs=1e-2)
    assert s.loc[20, "sensitivity"] == pytest.approx(1.0) and s.loc[20, "n_seeds"] == 1  # failed seed left out
    assert math.isnan(s.loc[20, "sem"]) and math.isnan(s.loc[20, "low"]) and 40 not in s.index


def test_missing_cells_stay_missing_in_the_grid():
    grid = heatmap_grid(sensitivity(TRIALS), TRIALS, "blur", "")
    assert list(grid.columns) == [0, 20, 40] and list(grid.index) == [10]
    assert grid.loc[10, 0] == pytest.approx(8.0) and math.isnan(grid.loc[10, 40])


def test_window_without_its_baseline_is_left_out():
    s = sensitivity(TRIALS[TRIALS.trial_id != "baseline-s1"]).set_index("onset")
    assert s.loc[0, "n_seeds"] == 1 and s.loc[0, "sensitivity"] == pytest.approx(10.0)


T975_2 = 4.302653  # t_{0.975, 2}, from a printed table


def sens_table(means, sems, n=3):
    means, sems = np.asarray(means, float), np.asarray(sems, float)
    return pd.DataFrame({"deficit": "blur", "tags": "", "length": 10, "onset": [10 * i for i in range(len(means))],
                         "sensitivity": means, "sem": sems, "low": means - T975_2 * sems,
                         "high": means + T975_2 * sems, "n_seeds": n})


def test_critical_period_is_the_onsets_shown_after_the_correction_for_many_onsets():
    # one-sided t with 2 dof: t = 13.3, 7.0, 4.8, 1.3, 0.7, 0.5 -> p = 0.0028, 0.0099, 0.0204, 0.16, ...
    sens = sens_table([4.0, 3.5, 1.2, 0.4, 0.2, 0.1], [0.3, 0.5, 0.25, 0.3, 0.3, 0.2])
    assert (sens.low > 0).tolist() == [True, True, True, False, False, False]  # uncorrected: onsets 0, 10, 20
    cp = critical_period(sens).iloc[0]
    # Benjamini-Hochberg over 6 onsets at 2.5 %: 0.0028 <= 1 * 0.025 / 6 = 0.0042; 0.0099 > 2 * 0.025 / 6 = 0.0083,
    # 0.0204 > 3 * 0.025 / 6 = 0.0125, and so on: the first alone
    assert cp.onsets == [0] and (cp.first_onset, cp.last_onset, cp.peak_onset, cp.peak) == (0, 0, 0, 4.0)
    assert (cp.tested, cp.correction, cp.min_seeds) == (6, "Benjamini-Hochberg", 3)
    assert cp.peak_low == pytest.approx(4.0 - T975_2 * 0.3)
    assert critical_period(sens.iloc[:2]).iloc[0].onsets == [0, 10]  # 0.0099 <= 2 * 0.025 / 2 with two onsets
    single = critical_period(sens.iloc[2:3]).iloc[0]  # one onset: exactly "its 95 % interval lies above 0"
    assert single.onsets == [20]
    # a minimal loss of interest: (4 - 2) / 0.3 = 6.7 -> p = 0.011 <= 0.025 / 2; (3.5 - 2) / 0.5 = 3 -> 0.048 > 0.025
    assert critical_period(sens.iloc[:2], threshold=2.0).iloc[0].onsets == [0]
    flat = sens.assign(sensitivity=0.3)
    cp = critical_period(flat).iloc[0]
    assert math.isnan(cp.first_onset) and math.isnan(cp.last_onset) and cp.peak == 0.3 and cp.onsets == []
    one_seed = sens.assign(sem=np.nan, low=np.nan, high=np.nan, n_seeds=1)
    assert critical_period(one_seed).iloc[0].onsets == []  # nothing is shown from one seed


@pytest.mark.parametrize("seeds", [3, 5])
def test_false_detections_on_null_data_stay_below_the_stated_rate(seeds):
    """21 onsets, no true effect anywhere: the share of grids with at least one onset wrongly "in the critical
    period" stays at most 2.5 % (+3 simulation standard errors), where onset-by-onset intervals give ~41 %.
    (With no effect anywhere every detection is false, so the false discovery rate is this chance.)"""
    rng = np.random.default_rng(11)
    runs, onsets = 800, 21
    false = naive = 0
    for _ in range(runs):
        x = rng.normal(0.0, 0.6, size=(onsets, seeds))
        sens = sens_table(x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(seeds), seeds)
        sens["low"] = x.mean(axis=1) - {3: T975_2, 5: 2.776445}[seeds] * sens["sem"]
        false += bool(critical_period(sens).iloc[0].onsets)
        naive += bool((sens.low > 0).any())
    bound = 0.025 + 3 * math.sqrt(0.025 * 0.975 / runs)
    assert false / runs <= bound
    assert naive / runs > 0.3  # what the correction removes: 1 - 0.975**21 = 41 %


def test_removal_curve_uses_windows_from_epoch_zero():
    t = pd.DataFrame([row("baseline-s0", "none", 0, 0, 0, 0.90), row("blur-o0-l10-s0", "blur", 0, 10, 0, 0.85),
                      row("blur-o0-l20-s0", "blur", 0, 20, 0, 0.80), row("blur-o5-l10-s0", "blur", 5, 10, 0, 0.10)])
    curve = removal_curve(t)
    assert curve.removal.tolist() == [0, 10, 20]
    assert curve.acc.tolist() == pytest.approx([90.0, 85.0, 80.0])


def test_group_curves_average_seeds_and_skip_unmeasured_epochs():
    res = make_results(onsets=(0,), seeds=(0, 1), epochs=30)
    curves = group_curves(res.epochs, res.trials, "fisher_trace")
    base = curves[curves.deficit == "none"]
    assert base.epoch.tolist() == list(range(1, 30, 2))  # NaN epochs dropped
    assert base["mean"].iloc[0] == pytest.approx(100 * np.exp(-1 / 5) + 10)
    assert (base.n_seeds == 2).all() and (base["sem"] == 0).all()
    acc = group_curves(res.epochs, res.trials, "test_acc")
    assert acc[acc.deficit == "none"]["mean"].iloc[-1] == pytest.approx(100 * (0.95 - 0.3 * np.exp(-29)))


def test_layer_shares_columns_sum_to_one_and_per_parameter_option():
    res = make_results(onsets=(0,), seeds=(0,))
    shares = layer_shares(res.fisher_layers, "blur-o0-l10-s0")
    assert list(shares.index) == ["0", "1", "2"]
    assert np.allclose(shares.sum(axis=0), 1.0)
    assert shares[1].tolist() == pytest.approx([0.1, 0.3, 0.6]) and shares[11].tolist() == pytest.approx([0.2, 0.5, 0.3])
    per = layer_shares(res.fisher_layers, "blur-o0-l10-s0", per_parameter=True)
    raw = np.array([0.2 / 100, 0.5 / 200, 0.3 / 300])
    assert per[11].tolist() == pytest.approx((raw / raw.sum()).tolist())


def test_chosen_trials():
    res = make_results(onsets=(0, 10, 20))
    pick = chosen_trials(res.trials, sensitivity(res.trials))
    assert pick == {"": {"baseline": "baseline-s0", "worst": "blur-o0-l10-s0", "best": "blur-o20-l10-s0"}}


def test_chosen_trials_per_facet_of_a_three_axis_sweep():
    """Each facet (a value of the extra axes) shows its own most and least damaging windows and the worst
    window's own baseline (with restarted baselines: the one of its onset), checked against a brute force
    over the damage functions."""
    onsets, seeds = (0, 10, 20, 30, 40), (1, 2)
    facets = {"schedule=exponential,width=8": falling, "schedule=exponential,width=16": peaked,
              "schedule=restart,width=8": lambda o, n, s: 1 + o / 10 + s}
    res = make_faceted_results(facets, onsets=onsets, seeds=seeds, restart="restart")
    picks = chosen_trials(res.trials, sensitivity(res.trials))
    assert list(picks) == sorted(facets)
    for n, (tags, damage) in enumerate(facets.items()):
        mean = {o: np.mean([damage(o, 10, s) for s in seeds]) for o in onsets}
        worst, best = max(mean, key=mean.get), min(mean, key=mean.get)
        base = f"baseline-s1-f{n}" + (f"-r{worst}" if "restart" in tags else "")
        assert picks[tags] == {"baseline": base, "worst": f"blur-o{worst}-l10-s1-f{n}",
                               "best": f"blur-o{best}-l10-s1-f{n}"}, tags
    assert set(shown_trials(picks)) == {t for p in picks.values() for t in p.values()}


def windows_table(deficits, lengths, onsets, sensitivity):
    """One row per window, `sensitivity(deficit, length, onset)` its mean loss, rows shuffled."""
    rows = [{"deficit": d, "tags": "", "onset": o, "length": n, "sensitivity": sensitivity(d, n, o)}
            for d in deficits for n in lengths for o in onsets]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def brute_sample(sens: pd.DataFrame, k: int) -> list[tuple]:
    """The slow obvious choice: sort the windows by hand, take the ones at j / (k - 3) of the way along
    (floored) and the first largest and smallest sensitivity."""
    keys = sorted((r.deficit, r.tags, r.length, r.onset, r.sensitivity) for r in sens.itertuples())
    if len(keys) <= k:
        return [key[:4] for key in keys]
    chosen = set()
    for j in range(k - 2):
        chosen.add(math.floor(Fraction(j * (len(keys) - 1), max(k - 3, 1))))
    known = [i for i in range(len(keys)) if not math.isnan(keys[i][4])]
    if known:
        top = max(keys[i][4] for i in known)
        bottom = min(keys[i][4] for i in known)
        chosen.add(next(i for i in known if keys[i][4] == top))
        chosen.add(next(i for i in known if keys[i][4] == bottom))
    return [keys[i][:4] for i in sorted(chosen)]


def picked(sens: pd.DataFrame, k: int) -> list[tuple]:
    return [(r.deficit, r.tags, r.length, r.onset) for r in sample_windows(sens, k).itertuples()]


def test_sample_windows_takes_the_extremes_and_spreads_the_rest():
    # 2 lengths x 10 onsets, worst at (10, 3), best at (5, 8): ordered by length then onset, k = 6 takes
    # positions 0, 6, 12, 19 (j * 19 / 3 floored) and the two extremes
    extremes = {(10, 3): 6.0, (5, 8): -2.0}
    sens = windows_table(["blur"], [5, 10], range(10), lambda d, n, o: extremes.get((n, o), 1.0))
    assert picked(sens, 6) == [("blur", "", 5, 0), ("blur", "", 5, 6), ("blur", "", 5, 8), ("blur", "", 10, 2),
                               ("blur", "", 10, 3), ("blur", "", 10, 9)]
    assert picked(sens, 6) == brute_sample(sens, 6)
    assert len(picked(sens, 20)) == 20 and picked(sens, 25) == brute_sample(sens, 25)  # all: they fit


@pytest.mark.parametrize("k", [3, 4, 12, 13])
@pytest.mark.parametrize("grid", [(["blur"], [5, 10, 15, 20, 25], range(200)), (["blur", "noise"], [7], range(9)),
                                  (["blur"], [10, 20], range(0, 60, 10))])
def test_sample_windows_against_brute_force(grid, k):
    rng = np.random.default_rng(len(grid[2]) + k)
    values = {}
    sens = windows_table(*grid, lambda d, n, o: values.setdefault((d, n, o), float(rng.integers(0, 5))))  # ties
    sens.loc[sens.index[::7], "sensitivity"] = np.nan  # windows without a baseline yet: never an extreme
    got = picked(sens, k)
    assert got == brute_sample(sens, k) and len(got) <= k
    if len(sens) <= k:  # every window when they fit
        assert len(got) == len(sens)
    else:  # the two extremes (of the windows with a value) always among them
        known = sens.dropna(subset=["sensitivity"])
        keys = {(r.deficit, r.tags, r.length, r.onset) for r in known.itertuples()}
        top, bottom = known.sensitivity.max(), known.sensitivity.min()
        assert any(k_ in keys and known.set_index(["deficit", "tags", "length", "onset"]).sensitivity[k_] == top
                   for k_ in got)
        assert any(k_ in keys and known.set_index(["deficit", "tags", "length", "onset"]).sensitivity[k_] == bottom
                   for k_ in got)


def long_baseline(epochs=40):
    """baseline-s0 trained `epochs` epochs, its test accuracy at epoch e being e / 100."""
    final = float(np.median([e / 100 for e in range(epochs - 10, epochs)]))
    trials = pd.DataFrame([{**row("baseline-s0", "none", 0, 0, 0, final), "epochs": epochs}])
    curve = pd.DataFrame({"trial_id": "baseline-s0", "epoch": range(-1, epochs), "test_acc": [0.1] + [
        e / 100 for e in range(epochs)]})  # epoch -1: the record at initialisation, never part of "final"
    return trials, curve


def test_sensitivity_reads_the_long_baseline_after_the_windows_epochs():
    base, curve = long_baseline(40)
    wins = pd.DataFrame([{**row("blur-o0-l10-s0", "blur", 0, 10, 0, 0.10), "epochs": 20},
                         {**row("blur-o10-l20-s0", "blur", 10, 20, 0, 0.30), "epochs": 40}])
    s = sensitivity(pd.concat([base, wins]), curve).set_index("length")
    # 20 epochs: median of epochs 10..19 = 0.145; 40 epochs: median of 30..39 = 0.345 (its own final)
    assert s.loc[10, "baseline_acc"] == pytest.approx(14.5) and s.loc[10, "sensitivity"] == pytest.approx(4.5)
    assert s.loc[20, "sensitivity"] == pytest.approx(4.5) and s.matched.all()
    with pytest.raises(ValueError, match="pass the epochs table"):
        sensitivity(pd.concat([base, wins]))
    # results from before length-matched baselines: the baseline trained less, flagged, compared as it is
    old = pd.concat([base.assign(epochs=20, final_test_acc=0.145), wins])
    s = sensitivity(old, curve).set_index("length")
    assert s.loc[10, "matched"] and not s.loc[20, "matched"] and s.loc[20, "sensitivity"] == pytest.approx(-15.5)


def test_removal_curve_reads_the_baseline_after_its_own_length():
    base, curve = long_baseline(40)
    wins = pd.DataFrame([{**row("blur-o0-l10-s0", "blur", 0, 10, 0, 0.10), "epochs": 30},    # clean_after: 20
                         {**row("blur-o0-l20-s0", "blur", 0, 20, 0, 0.05), "epochs": 40}])
    curve_ = removal_curve(pd.concat([base, wins]), curve)
    assert curve_.acc.tolist() == pytest.approx([14.5, 10.0, 5.0])  # k = 0: 20 epochs, median of 10..19
    fixed = wins.assign(epochs=40)                                    # epochs: 40 for every window
    assert removal_curve(pd.concat([base, fixed]), curve).acc.iloc[0] == pytest.approx(34.5)


def test_recovery_columns_against_a_loop():
    """gain / base_gain: the median test accuracy of the last 10 epochs minus the 10 before, for the window at its
    own end and for its baseline read at the same epoch, recomputed here with a plain loop."""
    rng = np.random.default_rng(2)
    base_curve = 0.9 + 0.001 * np.arange(60) + rng.normal(0, 0.003, 60)
    win_curve = 0.8 + 0.004 * np.arange(40) + rng.normal(0, 0.003, 40)
    trials = pd.DataFrame([{**row("baseline-s0", "none", 0, 0, 0, float(np.median(base_curve[50:]))), "epochs": 60},
                           {**row("blur-o5-l10-s0", "blur", 5, 10, 0, float(np.median(win_curve[30:]))),
                            "epochs": 40}])
    epochs = pd.DataFrame({"trial_id": ["baseline-s0"] * 60 + ["blur-o5-l10-s0"] * 40,
                           "epoch": list(range(60)) + list(range(40)),
                           "test_acc": np.concatenate([base_curve, win_curve])})
    s = sensitivity(trials, epochs).iloc[0]

    def gain(curve, end):
        last = sorted(curve[end - 10:end])
        prev = sorted(curve[end - 20:end - 10])
        return 100 * ((last[4] + last[5]) / 2 - (prev[4] + prev[5]) / 2)

    assert s.clean == 25
    assert s.base_gain == pytest.approx(gain(base_curve, 40))          # the baseline read at the window's end
    assert s.recovery == pytest.approx(gain(win_curve, 40) - gain(base_curve, 40))
    assert s.recovery > 0.5  # this window is still recovering: its loss shrank by more than the margin
    assert critical_period(s.to_frame().T.astype({"sem": float, "n_seeds": int})).recovering.iloc[0] == [5]
    assert math.isnan(sensitivity(trials.assign(epochs=[60, 60])).recovery.iloc[0])  # no curves: no check


def test_tags_read_back_as_the_typed_values_of_the_trials_axes():
    """trials.parquet's `tags` text is read back (records.tag_values) into exactly the values of the trial
    spec's axes, tuples with commas inside included; schedule_of and variant_of read them, not a pattern."""
    from tiny_specs import tiny_sweep

    from cpsweep.config.sweep_file import parse_sweep
    from cpsweep.results.reduce import schedule_of, variant_of
    from cpsweep.storage.records import tag_items, tag_values, tags_text

    raw = tiny_sweep(model={"name": "mlp", "hidden": [16]},
                     grid={"onset": [0], "length": [2], "schedule": ["exponential", "restart"],
                           "model.hidden": [[16], [16, 8, 4]], "model.bn": [True, False]})
    trials = parse_sweep(raw).trials()
    assert {t.tags for t in trials} and all(t.tags for t in trials)
    for t in trials:
        text = tags_text(t)
        assert tag_values(text) == {k: v for k, v in t.tags}
        assert schedule_of(text) == dict(t.tags)["schedule"]
        assert tag_values(variant_of(text)) == {k: v for k, v in t.tags if k != "schedule"}
    assert tag_items("model.hidden=(16, 8, 4),schedule=restart") == [("model.hidden", "(16, 8, 4)"),
                                                                      ("schedule", "restart")]
    assert tag_values("") == {} and schedule_of("") == "" and variant_of("schedule=restart") == ""
