"""Paper, Figure 4: the trace of the Fisher Information against epoch, baseline and deficit windows.

    python analysis/fisher_trace.py results/fisher_study [--linear] [-o figures]
"""

import sys

from _figure import run

from cpsweep.errors import CpsweepError
from cpsweep.results.reduce import group_curves
from cpsweep.results.figures import curves_figure


def build(results, args):
    curves = group_curves(results.epochs, results.trials, "fisher_trace")
    if curves.empty:
        raise CpsweepError("no Fisher traces in these results (fisher.every: 0?)")
    return curves_figure(curves, "Fisher trace", "tr F", log=not args.linear)


if __name__ == "__main__":
    sys.exit(run("fisher_trace", __doc__, build,
                 lambda p: p.add_argument("--linear", action="store_true", help="linear y axis (default: log)")))
