"""Run the paper's reproduction checks on a results root and print claim, source, test, measured, verdict.

    python analysis/reproduce.py results --mini            # the laptop-scale twins (sweeps/mini/)
    python analysis/reproduce.py s3://bucket/cpsweep       # the paper-scale sweeps (sweeps/)
    python analysis/reproduce.py results --mini --markdown table.md --figures figures/

Each check reads the sweeps it needs from ROOT/<name> (ROOT/mini_<name> with --mini); a missing sweep
makes its checks "not run". The rules behind the verdicts are in cpsweep/results/checks.py. With --figures,
each sweep found also gets its report (report.html) and the figures of analysis/ for it.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling figure scripts

from _figure import write_figure  # noqa: E402

from cpsweep.errors import CpsweepError  # noqa: E402
from cpsweep.results.claims import run_checks  # noqa: E402
from cpsweep.results.reproduction import SWEEPS, loader  # noqa: E402  (sweeps/<name>.yaml; mini_<name>)
from cpsweep.results.stats import CORRECTION, LEVEL, MARGIN, MIN_SEEDS  # noqa: E402
from cpsweep.storage.store import join_uri  # noqa: E402

# Which figure scripts draw which sweep (module names in analysis/).
FIGURES = {"blur_grid": ["sensitivity_heatmap", "sliding_window"], "blur_removal": ["removal_curve"],
           "vflip": ["removal_curve"], "noise": ["removal_curve"], "label_permutation": ["removal_curve"],
           "label_shuffle": ["removal_curve"], "fisher_study": ["fisher_trace", "layer_fisher"],
           "mlp_depth": ["sliding_window"], "adam": ["sliding_window"], "resnet18": ["sliding_window"]}


def print_table(table, width: int = 100) -> None:
    for i, row in enumerate(table.itertuples(), 1):
        print(f"{i:2d}. {row.claim}\n    verdict:  {row.verdict.upper()}")
        lines = [("controls", row.controls), ("in words", row.plain)]
        for label, text in (("source", row.source), ("test", row.test), ("measured", row.measured or "-"),
                            *[(label, text) for label, text in lines if text]):
            lines = textwrap.wrap(text, width - 14) or ["-"]
            print(f"    {label + ':':9} " + "\n              ".join(lines))
    counts = table.verdict.value_counts()
    print("\n" + ", ".join(f"{n} {v}" for v, n in counts.items()))


def markdown(table) -> str:
    lines = ["| claim (source) | test | measured (mean [95 % CI] over seeds, n) | verdict (paper's schedule) | "
             "under the controls |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        cells = [f"{row.claim} ({row.source})", row.test, row.measured or "-", f"**{row.verdict}**",
                 row.controls or "-"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_figures(get, root: str, prefix: str, out_dir: str) -> list[str]:
    import importlib

    from cpsweep.results.report import write_report

    written = []
    for name in SWEEPS:
        if get(name) is None:
            continue
        folder = os.path.join(out_dir, prefix + name)
        os.makedirs(folder, exist_ok=True)
        written.append(write_report(join_uri(root, prefix + name), os.path.join(folder, "report.html")))
        for script in FIGURES.get(name, []):
            module = importlib.import_module(script)
            fig = module.build(get(name), argparse.Namespace(trial=None, per_parameter=False, deficit=None, linear=False))
            written += write_figure(fig, os.path.join(folder, script))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.splitlines()[0])
    p.add_argument("root", help="the results root the sweeps were launched with (--storage), e.g. results")
    p.add_argument("--mini", action="store_true", help="check the laptop-scale twins (mini_<name>)")
    p.add_argument("--markdown", default=None, help="also write the table as Markdown to this file")
    p.add_argument("--csv", default=None, help="also write the table as CSV to this file")
    p.add_argument("--figures", default=None, help="write each sweep's report and figures under this folder")
    args = p.parse_args(argv)
    prefix = "mini_" if args.mini else ""
    get = loader(args.root, prefix)
    try:
        table = run_checks(get)
        if not any(get(name) is not None for name in SWEEPS):
            raise CpsweepError(f"no {'mini_' if args.mini else ''}<experiment> results under {args.root} (e.g. "
                               f"{join_uri(args.root, prefix + 'blur_grid')}); pass the --storage root the sweeps "
                               f"were launched with{'' if args.mini else ', and --mini for the laptop-scale twins'}")
        figures = write_figures(get, args.root, prefix, args.figures) if args.figures else []
    except CpsweepError as e:
        print(f"reproduce: error: {e}", file=sys.stderr)
        return 2
    print(f"Reproduction checks on {args.root} ({'laptop-scale twins' if args.mini else 'paper scale'}): paired "
          f"by seed, {LEVEL:.0%} t-intervals, 'no effect' = equivalence within +-{MARGIN:g} pts, {CORRECTION} over "
          f"many onsets, at least {MIN_SEEDS} seeds for any verdict; onset claims graded under the paper's "
          f"schedule, the learning-rate controls beside it.\n")
    print_table(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(table))
    if args.csv:
        table.to_csv(args.csv, index=False)
    for path in figures:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
