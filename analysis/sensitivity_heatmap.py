"""Sensitivity over onset x length (the grid behind the paper's sliding-window figures), one deficit.

    python analysis/sensitivity_heatmap.py results/blur_grid [--deficit blur] [-o figures]
"""

import sys

from _figure import run

from cpsweep.errors import CpsweepError
from cpsweep.results.reduce import sensitivity
from cpsweep.results.figures import heatmap_figure


def build(results, args):
    trials = results.trials
    windows = trials[trials.deficit == args.deficit] if args.deficit else trials[trials.deficit != "none"]
    if windows.empty:
        raise CpsweepError(f"no windows of deficit {args.deficit or '(any)'} in these results")
    return heatmap_figure(sensitivity(trials, results.epochs), trials, windows.deficit.iloc[0])  # a row per tags


if __name__ == "__main__":
    sys.exit(run("sensitivity_heatmap", __doc__, build,
                 lambda p: p.add_argument("--deficit", default=None, help="deficit to draw (default: the first)")))
