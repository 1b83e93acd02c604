"""Paper, Figure 1 (right): accuracy lost against the onset of a fixed-length deficit window.

    python analysis/sliding_window.py results/blur_grid [-o figures]
"""

import sys

from _figure import run

from cpsweep.errors import CpsweepError
from cpsweep.results.reduce import sensitivity
from cpsweep.results.figures import sensitivity_curve_figure


def build(results, args):
    sens = sensitivity(results.trials, results.epochs)
    if sens.empty:
        raise CpsweepError("no finished window with a finished baseline yet")
    return sensitivity_curve_figure(sens)


if __name__ == "__main__":
    sys.exit(run("sliding_window", __doc__, build))
