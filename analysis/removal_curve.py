"""Paper, Figure 1 (left): final test accuracy against the epoch the blur deficit is removed.

    python analysis/removal_curve.py results/blur_removal [-o figures]
"""

import sys

from _figure import run

from cpsweep.errors import CpsweepError
from cpsweep.results.reduce import removal_curve
from cpsweep.results.figures import removal_figure


def build(results, args):
    curve = removal_curve(results.trials, results.epochs)
    if curve.removal.nunique() < 2:
        raise CpsweepError("no windows that start at epoch 0 with their baseline: run a removal sweep "
                           "(deficit from epoch 0 to k)")
    return removal_figure(curve)


if __name__ == "__main__":
    sys.exit(run("removal_curve", __doc__, build))
