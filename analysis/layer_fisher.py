"""Paper, Figure 5: each layer's share of the Fisher trace per epoch, for one trial.

    python analysis/layer_fisher.py results/fisher_study [--trial blur-o0-l40-s0] [--per-parameter] [-o figures]
"""

import sys

from _figure import run

from cpsweep.errors import CpsweepError
from cpsweep.results.reduce import chosen_trials, layer_shares, sensitivity
from cpsweep.results.figures import layer_figure


def build(results, args):
    sens = sensitivity(results.trials, results.epochs)
    worst = sens.loc[sens.sensitivity.idxmax()] if sens.sensitivity.notna().any() else None
    trial = args.trial or (chosen_trials(results.trials, sens)[worst.tags]["worst"] if worst is not None else None)
    shares = layer_shares(results.fisher_layers, trial, args.per_parameter) if trial else None
    if shares is None or shares.empty:
        raise CpsweepError(f"no per-layer Fisher traces for trial {trial}")
    return layer_figure(shares, f"Per-layer Fisher: {trial}")


def add_args(p):
    p.add_argument("--trial", default=None,
                   help="trial id (default: the lowest seed's trial of the most damaging window)")
    p.add_argument("--per-parameter", action="store_true", help="divide each layer's trace by its parameters")


if __name__ == "__main__":
    sys.exit(run("layer_fisher", __doc__, build, add_args))
