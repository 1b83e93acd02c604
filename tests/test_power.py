"""`cpsweep seeds` (results/power.py): the power of the verdict rules against closed forms and against the
verdict functions on simulated seeds, the fewest seeds, the pilot's pooled spread counted by hand, and the
command on a results folder."""

from __future__ import annotations

import html
import math
import os

import numpy as np
import pandas as pd
import pytest
from results_fixture import make_results, write_tables
from scipy import stats as sps

from cpsweep.cli import main
from cpsweep.results import power as pw
from cpsweep.results import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("n", [3, 5, 12])
@pytest.mark.parametrize("effect,sd,comparisons", [(0.3, 0.7, 1), (1.0, 0.7, 1), (1.0, 0.4, 6), (0.0, 1.0, 1)])
def test_without_a_margin_the_effect_power_is_the_noncentral_t(n, effect, sd, comparisons):
    """With margin 0 nothing counts as negligible: "reproduced" is the one-sided t-test at 2.5 % / K, whose
    power is 1 - F_nct(t_crit; n - 1, effect sqrt(n) / sd)."""
    t_crit = sps.t.ppf(1 - 0.025 / comparisons, n - 1)
    expected = 1 - sps.nct.cdf(t_crit, n - 1, effect * math.sqrt(n) / sd)
    assert pw.power("effect", effect, sd, n, margin=0.0, comparisons=comparisons) == pytest.approx(expected, abs=1e-8)


def _rule_by_hand(values: np.ndarray, claim: str, margin: float, comparisons: int = 1) -> np.ndarray:
    """The verdict rules of stats.py written out on many simulated designs at once (rows: designs)."""
    n = values.shape[1]
    mean, se = values.mean(1), values.std(1, ddof=1) / math.sqrt(n)
    h95 = sps.t.ppf(1 - 0.025 / comparisons, n - 1) * se
    h90 = sps.t.ppf(1 - 0.05 / (comparisons if claim == "no effect" else 1), n - 1) * se  # ("not negligible": 5 %)
    negligible = (mean - h90 > -margin) & (mean + h90 < margin)
    return (mean - h95 > 0) & ~negligible if claim == "effect" else negligible


@pytest.mark.parametrize("claim,effect,sd,n,comparisons", [
    ("effect", 1.0, 0.7, 5, 1), ("effect", 0.6, 0.5, 6, 1), ("effect", 0.55, 0.2, 4, 3),  # near the margin
    ("no effect", 0.0, 0.3, 5, 1), ("no effect", 0.2, 0.4, 8, 1), ("no effect", -0.1, 0.3, 10, 4)])
def test_the_power_is_the_share_of_simulated_designs_graded_reproduced(claim, effect, sd, n, comparisons):
    """200,000 simulated designs graded by the rule written out here, and 2,000 by stats.py's own verdict
    functions (at K = 1), each within 4.5 standard errors of the computed power."""
    rng = np.random.default_rng(7)
    p = pw.power(claim, effect, sd, n, comparisons=comparisons)
    draws = rng.normal(effect, sd, (200_000, n))
    share = _rule_by_hand(draws, claim, stats.MARGIN, comparisons).mean()
    assert abs(share - p) < 4.5 * math.sqrt(p * (1 - p) / len(draws)) + 1e-9
    if comparisons == 1:
        verdict = stats.effect_verdict if claim == "effect" else stats.no_effect_verdict
        graded = np.mean([verdict(x)[0] == "reproduced" for x in draws[:2000]])
        assert abs(graded - p) < 4.5 * math.sqrt(p * (1 - p) / 2000)


@pytest.mark.parametrize("claim,effect,sd,n,k", [("effect", 0.5, 0.25, 7, 8), ("effect", 0.5, 0.175, 4, 2),
                                                ("effect", 1.0, 0.8, 6, 3), ("no effect", 0.1, 0.3, 8, 4)])
def test_a_design_sized_with_k_comparisons_is_reproduced_by_the_family_grading(claim, effect, sd, n, k):
    """`--comparisons K` is at least as strict as the grading it sizes: every simulated instance its rule
    grades "reproduced" is graded so by stats.family_verdicts over K instances (of which some may fail), and
    the power is the share of instances the rule passes (a "not negligible" test corrected over K, as
    before, over-stated it: 0.806 against 0.777 at the first case)."""
    rng = np.random.default_rng(11)
    draws = rng.normal(effect, sd, (600, k, n))
    rule = _rule_by_hand(draws.reshape(-1, n), claim, stats.MARGIN, k).reshape(600, k)
    for family, passed in zip(draws, rule):
        graded = [v == "reproduced" for v, _ in stats.family_verdicts(list(family), claim)]
        assert all(g for g, p in zip(graded, passed) if p)
    p = pw.power(claim, effect, sd, n, comparisons=k)
    big = _rule_by_hand(rng.normal(effect, sd, (200_000, n)), claim, stats.MARGIN, k).mean()
    assert abs(big - p) < 4.5 * math.sqrt(p * (1 - p) / 200_000)


def test_too_few_seeds_decide_nothing_and_no_spread_decides_by_the_effect_alone():
    assert pw.power("effect", 5.0, 0.1, stats.MIN_SEEDS - 1) == 0.0
    assert pw.power("effect", 0.6, 0.0, 3) == 1.0 and pw.power("effect", 0.4, 0.0, 3) == 0.0  # within the margin
    assert pw.power("no effect", 0.4, 0.0, 3) == 1.0 and pw.power("no effect", 0.6, 0.0, 3) == 0.0
    with pytest.raises(ValueError):
        pw.power("no harm", 0.0, 1.0, 5)


@pytest.mark.parametrize("claim,effect,sd", [("effect", 1.0, 0.8), ("effect", 0.5, 0.36), ("no effect", 0.0, 0.5),
                                             ("no effect", 0.25, 0.36)])
def test_seeds_needed_is_the_fewest_that_reach_the_power(claim, effect, sd):
    n = pw.seeds_needed(claim, effect, sd, 0.8)
    powers = {k: pw.power(claim, effect, sd, k) for k in range(stats.MIN_SEEDS, n + 1)}
    assert powers[n] >= 0.8 and all(v < 0.8 for k, v in powers.items() if k < n)
    assert pw.seeds_needed(claim, effect, sd, 0.8, comparisons=5) >= n  # a corrected claim needs more


def test_no_design_shows_an_effect_that_is_not_there():
    """At a true effect of zero, "an effect" is graded reproduced at most 2.5 % of the time, whatever the seeds."""
    assert pw.seeds_needed("effect", 0.0, 1.0, 0.8) is None
    assert pw.power("effect", 0.0, 1.0, pw.MOST_SEEDS) <= 0.025 + 1e-9


def test_the_upper_bound_of_the_sd_is_the_chi_square_bound_and_covers_it():
    assert pw.upper_sd(0.5, 16) == pytest.approx(0.5 * math.sqrt(16 / sps.chi2.ppf(0.2, 16)), rel=1e-10)
    rng = np.random.default_rng(3)
    draws = rng.normal(0, 2.0, (100_000, 5))
    bounds = pw.upper_sd(1.0, 4) * draws.std(1, ddof=1)  # (the bound scales with the estimate)
    assert abs(np.mean(bounds >= 2.0) - 0.8) < 4.5 * math.sqrt(0.16 / len(draws))
    assert math.isnan(pw.upper_sd(0.5, 0))


def noisy(onset: int, length: int, seed: int) -> float:
    """A damage falling with onset, plus a fixed irregular amount per (window, seed)."""
    return 3 - onset / 10 + ((seed * 7919 + onset * 31 + length * 7) % 11 - 5) / 10


def _sens(res) -> pd.DataFrame:
    from cpsweep.results.reduce import seed_sensitivity

    return seed_sensitivity(res.trials, res.epochs)


def test_the_pilot_spread_is_pooled_over_windows_and_over_early_minus_late_contrasts():
    res = make_results(onsets=(0, 10, 20), lengths=(5, 10), seeds=(0, 1, 2, 3), damage=noisy)
    spread = pw.pilot_spread(_sens(res))
    squares = df = 0.0
    for onset in (0, 10, 20):
        for length in (5, 10):
            values = [noisy(onset, length, s) for s in range(4)]
            squares += sum((v - sum(values) / 4) ** 2 for v in values)
            df += 3
    assert spread["window"][:2] == (pytest.approx(math.sqrt(squares / df)), 18) and spread["window"][2] == 6
    squares = 0.0
    for length in (5, 10):
        diffs = [noisy(0, length, s) - noisy(20, length, s) for s in range(4)]
        squares += sum((d - sum(diffs) / 4) ** 2 for d in diffs)
    assert spread["contrast"] == (pytest.approx(math.sqrt(squares / 6)), 6, 2)


def test_seeds_command_prints_the_spread_and_the_seeds_per_claim(tmp_path, capsys):
    res = make_results(onsets=(0, 20), lengths=(10,), seeds=(0, 1, 2), damage=noisy)
    write_tables(str(tmp_path / "pilot"), res)
    spread = pw.pilot_spread(_sens(res))
    assert main(["seeds", str(tmp_path / "pilot"), "--effect", "1", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    sd, df, _ = spread["window"]
    assert out[0].startswith(f"{tmp_path / 'pilot'}: seed-to-seed SD of a window's cost {sd:.2f} pts (2 windows, "
                             f"{df} df; 80 % upper bound {pw.upper_sd(sd, df):.2f}); of early minus late ")
    rows = pw.table(spread, [1.0, 2.0])
    assert len(out) == 3 + len(rows) + 1 and len(rows) == 6
    for line, r in zip(out[3:], rows.itertuples()):
        assert line.split()[-2:] == [pw.format_seeds(r.seeds), pw.format_seeds(r.seeds_upper)]
        assert line.strip().startswith(r.claim)


@pytest.mark.parametrize("args,message", [
    (["--sd", "0.5", "--power", "1.5"], "--power: must be a chance between 0 and 1, e.g. 0.8, got 1.5"),
    (["--sd", "-1"], "--sd: must be points > 0, e.g. 0.5, got -1.0"),
    (["--sd", "1", "--effect", "1", "0"], "--effect: must be points > 0, e.g. 1 2, got [1.0, 0.0]"),
    ([], "seeds: give a pilot's results folder (e.g. results/quickstart) or --sd POINTS, one of them"),
    (["PILOT"], "has no window with two finished seeds"),
])
def test_seeds_command_errors_are_one_line(args, message, tmp_path, capsys):
    write_tables(str(tmp_path / "one"), make_results(seeds=(0,)))
    args = [str(tmp_path / "one") if a == "PILOT" else a for a in args]
    assert main(["seeds", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("cpsweep: error: ") and message in err[0]


def test_seeds_on_an_unfinished_pilot_says_to_finish_it(tmp_path, capsys):
    res = make_results(seeds=(0, 1))
    windows = (res.trials.seed == 1) & (res.trials.deficit != "none")
    res.trials.loc[windows, "status"] = "running"  # (a launch killed before seed 1's windows ended)
    write_tables(str(tmp_path / "cut"), res)
    assert main(["seeds", str(tmp_path / "cut")]) == 2
    err = capsys.readouterr().err
    assert f"has no window with two finished seeds yet ({(~windows).sum()} of {len(windows)} trials finished): " \
           "finish the sweep (launch it again), or give --sd POINTS" in err


def test_the_block_in_the_science_doc_is_what_the_command_prints(capsys):
    """docs/science.md shows `cpsweep seeds` on the committed quickstart run; it must not drift."""
    with open(os.path.join(ROOT, "docs", "science.md")) as f:
        doc = f.read()
    block = doc.split("$ cpsweep seeds docs/reproduction/data/quickstart\n", 1)[1].split("```", 1)[0]
    assert main(["seeds", os.path.join(ROOT, "docs", "reproduction", "data", "quickstart")]) == 0
    assert capsys.readouterr().out.replace(ROOT + os.sep, "") == block


def test_the_report_sizes_the_next_sweep_from_its_spread_and_says_what_it_is_not_for():
    from cpsweep.results.report import render

    res = make_results(onsets=(0, 20), lengths=(10,), seeds=(0, 1, 2), damage=noisy)
    page = render(res)
    text = "Sizing the next sweep of this model and data (cpsweep seeds)"
    assert text in page and "not for reading this one: a claim this sweep left undecided stays undecided" in page
    section = page.split(text, 1)[1].split("</table>", 1)[0]
    rows = pw.table(pw.pilot_spread(_sens(res)), [0.5, 1.0, 2.0])
    cells = [c.split("</td>")[0] for c in section.split("<td>")[1:]]
    assert cells == [html.escape(x) for r in rows.itertuples() for x in (
        r.claim, f"{r.effect:g}", pw.format_seeds(r.seeds), pw.format_seeds(r.seeds_upper))]
    assert text not in render(make_results(seeds=(0,)))  # one seed: no spread, no section


def test_seeds_beyond_the_search_are_said_and_the_upper_column_stays():
    out = pw.lines({"window": (5.0, 8, 3), "contrast": (5.0, 4, 2)}, "pilot", [0.5])
    assert out[2].endswith("at the upper bound")
    assert all(line.split(" pts ")[1].split() == [">", "200", ">", "200"] for line in out[3:-1])
    assert not pw.lines({"window": (5.0, 0, 0), "contrast": (5.0, 0, 0)}, "--sd 5", [0.5])[2].endswith("bound")


def test_the_science_doc_quotes_the_range_of_seeds_the_generated_table_gives():
    with open(os.path.join(ROOT, "docs", "reproduction.md")) as f:
        table = f.read().split("## How many seeds", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| mini_")]
    harmless = [int(r[6].split()[0]) for r in rows]  # the "no lasting harm" column, at the measured SD
    with open(os.path.join(ROOT, "docs", "science.md")) as f:
        science = " ".join(f.read().split())
    assert f"+-0.5 points needs {min(harmless)} to {max(harmless)} seeds" in science
    quickstart = pw.folder_spread(os.path.join(ROOT, "docs", "reproduction", "data", "quickstart"))["window"][0]
    shown = round(quickstart, 2)  # (the call as the page writes it, with the SD the command prints)
    said = f'power("no effect", 0, {shown:.2f}, 5)` is {pw.power("no effect", 0.0, shown, 5):.2f}'
    assert said in science
