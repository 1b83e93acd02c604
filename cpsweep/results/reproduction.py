"""docs/reproduction.md and the README's quickstart numbers, generated from the committed results
(docs/reproduction/data/<sweep>/): every number and every verdict sentence in them comes from the data
through the checks (`claims.py`), so the documents cannot claim more than the verdict table.

    render_reproduction(root)     the whole of docs/reproduction.md (markdown)
    render_quickstart(results)    the README's "What the quickstart shows" table and sentences

`analysis/reproduction_doc.py` writes both; tests/test_reproduction_doc.py fails when the committed files
differ from what this module produces from the committed data.
"""

from __future__ import annotations

import math
from typing import Callable

import pandas as pd

from . import stats
from .checks import by_schedule, contrast, early_minus_late_lengths, paper_schedule, schedule_name, window
from .claims import CHECKS, run_checks
from ..storage.records import FINAL_EPOCHS
from .reduce import critical_period, fisher_peak, seed_sensitivity, sensitivity
from ..storage.store import Store, join_uri
from ..storage.folder import Results, load_results

SWEEPS = ["blur_grid", "blur_removal", "vflip", "label_permutation", "label_shuffle", "noise", "fisher_study",
          "mlp_depth", "resnet18", "adam", "robust_kernel", "robust_width", "robust_bias", "blur_boundary",
          "weight_decay"]
DATA = "docs/reproduction/data"


def loader(root: str, prefix: str = "mini_") -> Callable[[str], Results | None]:
    """get(name) -> the results of `<root>/<prefix><name>` (None where absent), each read once."""
    cache: dict[str, Results | None] = {}

    def get(name: str) -> Results | None:
        if name not in cache:
            uri = join_uri(root, prefix + name)
            cache[name] = load_results(uri) if Store(uri).exists("trials.parquet") else None
        return cache[name]
    return get


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _design_row(name: str, r: Results) -> str:
    raw = r.spec.get("spec") or {}
    grid = raw.get("grid") or {}
    onsets = grid.get("onset")
    if isinstance(onsets, dict):
        onsets = f"{onsets['from']}-{onsets['to']} every {onsets['step']}"
    seeds = sorted(int(s) for s in r.trials.seed.unique())
    ok = r.trials[r.trials.status == "ok"]
    trained = int((ok.epochs - ok.shared_epochs.fillna(0)).sum()) if "shared_epochs" in ok else int(ok.epochs.sum())
    recovery = (f"{raw['clean_after']} clean epochs after every window" if raw.get("clean_after") is not None
                else f"common end at epoch {raw.get('epochs')}")
    axes = ", ".join(f"{k}: {v}" for k, v in grid.items() if k not in ("onset", "length")) or "-"
    search = "adaptive search" if raw.get("search") else "grid"
    return (f"| {name} | {len(seeds)} ({seeds[0]}-{seeds[-1]}) | {onsets} ({search}) | {grid.get('length')} | {axes} | "
            f"{recovery} | {len(ok)} of {len(r.trials)} | {trained:,} |")


def _estimate(values: pd.Series) -> str:
    est = stats.interval(values)
    return f"{est.mean:.2f} [{est.low:.2f}, {est.high:.2f}]" if est.n > 1 else "-"


def schedule_table(r: Results, deficit: str = "blur") -> list[str]:
    """Loss per schedule, length and onset (mean [95 % CI] over seeds), early minus late and its verdict."""
    ss = seed_sensitivity(r.trials, r.epochs)
    ss = ss[ss.deficit == deficit]
    onsets = sorted(ss.onset.unique())
    lines = ["| schedule | length | " + " | ".join(f"onset {o}" for o in onsets) + " | early - late | verdict |",
             "|---" * (len(onsets) + 4) + "|"]
    for label, part in by_schedule(ss).items():
        graded_ = early_minus_late_lengths(part)  # (Holm over the lengths, as the claim's check)
        for length in sorted(part.length.unique()):
            cells = [_estimate(window(part, o, length)) for o in onsets]
            verdict, _ = graded_[length]
            diff, _, _ = contrast(part, length)
            lines.append(f"| {schedule_name(label)} | {length} | " + " | ".join(cells)
                         + f" | {_estimate(diff)} | {verdict} |")
    return lines


def _periods(r: Results) -> list[str]:
    """The corrected critical period of each schedule and length, and the windows still recovering."""
    cp = critical_period(sensitivity(r.trials, r.epochs))
    out = []
    for c in cp.itertuples(index=False):
        shown = ", ".join(map(str, c.onsets)) or "none"
        rec = f"; still recovering when read: onsets {c.recovering}" if c.recovering else ""
        out.append(f"- {c.tags or 'the sweep'}, length {c.length}: onsets shown to cost accuracy ({c.correction} over "
                   f"{c.tested}): {shown}{rec}")
    return out


def render_reproduction(root: str = DATA) -> str:
    get = loader(root)
    table = run_checks(get)
    found = [(name, get(name)) for name in SWEEPS]
    found = [(name, r) for name, r in found if r is not None]
    counts = table.verdict.value_counts()
    lines = [
        "<!-- Generated by analysis/reproduction_doc.py from docs/reproduction/data: edit the generator "
        "(cpsweep/results/reproduction.py), not this file. -->",
        "# Reproducing the paper",
        "",
        "Achille, Rovere & Soatto, *Critical Learning Periods in Deep Networks* (ICLR 2019). `sweeps/` holds one "
        "sweep per experiment at the paper's settings; `sweeps/mini/` holds a laptop-scale twin of each on "
        "MNIST-1D. This page is generated from the twins' committed results by "
        "`python analysis/reproduction_doc.py` (a test fails when it differs from what the data give): every "
        "number and verdict below is computed, none is typed.",
        "",
        "```bash",
        "cpsweep launch sweeps/mini/*.yaml --storage results      # all twins, one Ray session",
        "python analysis/reproduce.py results --mini               # claim, test, measured, verdict",
        "python analysis/reproduction_doc.py --data results        # this page, from your own run",
        "```",
        "",
        "## The rules",
        "",
        "- Sensitivity = the seed's baseline final test accuracy minus the window trial's, in points; \"final\" "
        f"is the median of the last {FINAL_EPOCHS} epochs. **Equal recovery**: every window [onset, onset + length) "
        "is followed by the same clean epochs (`clean_after`), and its baseline (same seed, same learning rate at "
        "every epoch) is read after as many epochs.",
        f"- **Still recovering**: each window and baseline is also read {FINAL_EPOCHS} epochs earlier; a window "
        f"whose loss shrank by more than {stats.MARGIN:g} pts over its last {FINAL_EPOCHS} epochs shows nothing "
        "lasting: its verdict is \"not shown: still recovering after N clean epochs\" (except a loss already shown "
        "negligible, which shrinking cannot make lasting). A loss that grew by as much, or a baseline that gained "
        "as much, is not settled for any verdict: \"not shown\". A window whose two reads cannot both be made says "
        f"\"recovery not checked\". A window followed by fewer than {FINAL_EPOCHS} clean epochs is read during its "
        "deficit: \"not shown\" too.",
        "- **The learning-rate controls**: every claim about onset is graded under the paper's exponential "
        "schedule (the verdict) and, side by side, under the rate restarted at the window's end against a baseline "
        "restarted at the same epoch (`restart`) and, where the sweep has it, a constant rate (`constant`): there "
        "the onset no longer sets the rate the network recovers at. Where the effect vanishes under a control, "
        "the plain-words column says so.",
        f"- **An effect** is shown when the {stats.LEVEL:.0%} t-interval of the per-seed values lies above zero "
        f"and the effect is not shown negligible. **No effect** is shown by an equivalence test: two one-sided "
        f"t-tests at {stats.ALPHA_TOST:.0%} against +-{stats.MARGIN:g} pts (the 90 % interval inside the "
        "margin). One rule for both: an effect shown smaller than the margin counts as none; a no-effect claim is "
        "\"not reproduced\" only when the 95 % interval lies wholly beyond the margin, and \"not shown\" when it "
        "excludes zero but overlaps the margin.",
        "- **Claims made of several instances** (every window, every window length, the three parts of the "
        "Fisher's rise and fall) hold only when every instance does; they are shown not to hold when one "
        "instance is, and that instance's test must then survive Holm's correction over the instances tested "
        "(each test at its own level), else it is \"not shown\". A claim that does not hold in every instance "
        "can hold only in part (\"partly\": some instances shown to hold, the others not shown), so unless every "
        "instance is shown to hold, each one shown to hold must also survive Holm's correction; a claim with no "
        "effect at all then reads \"partly\" at most as often as one test at its level would.",
        f"- **Many onsets**: the onsets shown to cost accuracy (the critical period, and the adaptive search's "
        f"\"in\") come from one-sided t-tests with the false discovery rate controlled by {stats.CORRECTION}'s "
        f"procedure over the onsets of each window length at {stats.ALPHA_ONE_SIDED:.1%}: at most that share of "
        f"the onsets shown are false on average, and where no onset has an effect the chance of showing any "
        f"stays below {stats.ALPHA_ONE_SIDED:.1%} however many onsets are tried. The confidence set of the most "
        f"damaging onset uses Holm's procedure (every exclusion at once); over k window lengths, a length's "
        f"verdict that the rule above corrects stands only where its set made at alpha / k (Bonferroni) gives "
        f"it too. The boundary's check classes each of k lengths at every level divided by k, and counts a "
        f"later onset as shown out only at {stats.ALPHA_TOST:.0%} / m, as one of the m sampled after the last "
        f"one shown in.",
        f"- Everything is paired by seed, a seed counted twice is refused, and fewer than {stats.MIN_SEEDS} paired "
        "seeds decide nothing. Seeds, onsets, lengths and schedules are fixed in each file before its results "
        "exist; spec.yaml records the seeds planned at each launch, and a verdict on seeds added after results "
        "were seen says so.",
        "- Verdicts: reproduced; partly (some instances shown, the others undecided); contradictory (some shown "
        "to hold, others shown not to); not reproduced; not shown (the data cannot decide, with the reason); "
        "measured (a control, no claim); not run (a sweep is missing).",
        "",
        "## The designs",
        "",
        "| sweep | seeds | onsets | lengths | other axes | recovery | trials ok | epochs trained |",
        "|---|---|---|---|---|---|---|---|",
        *[_design_row(name, r) for name, r in found],
        "",
        "## Verdicts",
        "",
        ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
        "",
        "| # | claim (source) | verdict (paper's schedule) | under the controls | in plain words |",
        "|---|---|---|---|---|",
    ]
    for i, row in enumerate(table.itertuples(), 1):
        lines.append(f"| {i} | {_cell(row.claim)} ({_cell(row.source)}) | **{row.verdict}** | "
                     f"{_cell(row.controls) or '-'} | {_cell(row.plain) or '-'} |")
    blur = get("blur_grid")
    if blur is not None:
        lines += ["", "## Blur windows under each schedule (mini_blur_grid)", "",
                  "Points of final accuracy lost against the length-matched baseline, mean [95 % CI] over seeds; "
                  "early - late paired by seed.", "", *schedule_table(blur), "", *_periods(blur)]
    lines += ["", *_seeds_section(found)]
    lines += ["", "## Every check", ""]
    for i, row in enumerate(table.itertuples(), 1):
        lines += [f"### {i}. {row.claim}", "", f"- source: {row.source}", f"- test: {row.test}",
                  f"- verdict: **{row.verdict}**" + (f"; under the controls: {row.controls}" if row.controls else ""),
                  "- measured:"]
        lines += [f"  - {part.strip()}" for part in (row.measured or "-").split(" | ")]
        lines.append("")
    lines += ["## Paper scale", "",
              "The paper-scale sweeps in `sweeps/` have not been run: they need a GPU cluster "
              "(`benchmarks/plan_costs.py` gives their cost). `python analysis/reproduce.py <root>` checks them "
              "the same way once run.", ""]
    return "\n".join(lines)


def render_quickstart(r: Results) -> str:
    """The README's quickstart result: early and late window per schedule with the verdicts of the two
    claims it tests (`claims.check_early_vs_late`, `check_late_windows` on this sweep), and the Fisher
    trace's course."""
    from .claims import check_early_vs_late, check_late_windows

    ss = seed_sensitivity(r.trials, r.epochs)
    onsets = sorted(ss.onset.unique())
    lines = ["| schedule | " + " | ".join(f"onset {o}: points lost" for o in onsets)
             + " | early minus late | verdict |", "|---" * (len(onsets) + 3) + "|"]
    for label, part in by_schedule(ss).items():
        length = int(part.length.max())
        verdict, _ = early_minus_late_lengths(part)[length]  # (corrected over the lengths, as the check)
        diff, _, _ = contrast(part, length)
        lines.append(f"| {schedule_name(label)} | " + " | ".join(_estimate(window(part, o, length)) for o in onsets)
                     + f" | {_estimate(diff)} | {verdict} |")
    get = lambda name: r if name == "blur_grid" else None  # noqa: E731  (the checks read a sweep by name)
    base = r.trials[(r.trials.deficit == "none") & (r.trials.status == "ok") & (r.trials.onset == 0)]
    base = base[base.tags.isin(paper_schedule(base).tags)]
    said = [f"Points of final accuracy lost against the length-matched baseline, mean [95 % t-interval] over "
            f"{ss.seed.nunique()} seeds, paired by seed; baselines under the paper's schedule "
            f"{100 * base.final_test_acc.min():.1f}-{100 * base.final_test_acc.max():.1f} %."]
    for claim, check in (("an early window costs more than a late one", check_early_vs_late),
                         ("a late window does no lasting harm (within +-0.5 pts)", check_late_windows)):
        c = check(get)
        said.append(f"\"{claim[0].upper() + claim[1:]}\": {c.plain[0].lower() + c.plain[1:]}")
    said.append(_design_power(ss))
    p = fisher_peak(r.epochs, base).dropna(subset=["init", "peak", "final"])
    if len(p):
        peaks = sorted(set(p.peak_epoch))
        said.append(f"Those baselines' Fisher trace goes from {p.init.min():.0f}-{p.init.max():.0f} at initialisation "
                    f"to a peak of {p.peak.min():.0f}-{p.peak.max():.0f} at epoch{'s' * (len(peaks) > 1)} "
                    f"{', '.join(map(str, peaks))}, then falls to {p.final.min():.0f}-{p.final.max():.0f} at the end.")
    return "\n".join(lines) + "\n\n" + " ".join(said) + "\n"


def _seeds_section(found: list[tuple[str, Results]]) -> list[str]:
    """How many seeds each twin's design would need (`power.py`, `cpsweep seeds` on its committed run): for
    an early window costing 1 point more than a late one, and for "no lasting harm" with no effect at all."""
    from .power import format_seeds, pilot_spread, seeds_at

    def cell(claim: str, effect: float, sd: float, df: int) -> str:
        if math.isnan(sd):
            return "-"
        seeds, upper = seeds_at(claim, effect, sd, df)
        return f"{format_seeds(seeds)} ({format_seeds(upper)})"

    rows = []
    for name, r in found:
        spread = pilot_spread(seed_sensitivity(r.trials, r.epochs))
        (w, w_df, _), (c, c_df, _) = spread["window"], spread["contrast"]
        said = lambda sd, df: "-" if math.isnan(sd) else f"{sd:.2f} ({df})"  # noqa: E731
        rows.append(f"| mini_{name} | {r.trials.seed.nunique()} | {said(w, w_df)} | {said(c, c_df)} | "
                    f"{cell('effect', 1.0, c, c_df)} | {cell('no effect', 0.0, w, w_df)} |")
    return ["## How many seeds", "",
            "The seeds each twin's design would need for an 80 % chance of \"reproduced\" under the rules above "
            "(`cpsweep seeds` on its committed run; docs/science.md): with the seed-to-seed SD it measured, pooled "
            "over its windows (or its early-minus-late contrasts), and, in brackets, with that SD's 80 % upper "
            "bound. For sizing a design before it runs, not for reading these verdicts.", "",
            "| sweep | seeds run | SD of a window's cost, pts (df) | SD of early minus late, pts (df) | "
            "early costs 1 pt more than late | no lasting harm, true effect 0 |", "|---|---|---|---|---|---|", *rows]


def _design_power(ss: pd.DataFrame) -> str:
    """How often this design (its seeds, this run's spread of early minus late) grades the early-vs-late claim
    "holds" under one schedule, at true effects fixed in advance (not the one measured): why another run
    can say otherwise."""
    from .power import pilot_spread, power

    sd, _, _ = pilot_spread(ss)["contrast"]
    n = ss.seed.nunique()
    p1, p2 = (power("effect", effect, sd, n) for effect in (1.0, 0.5))
    return (f"With {n} seeds and this run's spread of early minus late (SD {sd:.2f} pts per seed, pooled over the "
            f"schedules), the first claim holds under one schedule {100 * p1:.0f} % of the time if an early window "
            f"truly costs 1 point more, and {100 * p2:.0f} % if 0.5 points more: another run can leave it "
            f"undecided (`cpsweep seeds`, docs/science.md).")


def quickstart_data(root: str = DATA) -> Results | None:
    return loader(root, prefix="")("quickstart")


README_BEGIN, README_END = "<!-- quickstart results: begin -->", "<!-- quickstart results: end -->"


def splice(text: str, block: str) -> str:
    """`text` (the README) with the part between its quickstart markers replaced by `block`."""
    start, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    return text[:start] + "\n" + block + text[end:]


__all__ = ["CHECKS", "render_reproduction", "render_quickstart", "quickstart_data", "splice"]
