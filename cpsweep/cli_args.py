"""The command line's grammar: each command's arguments and help (the commands themselves are in cli.py).

`launch` and `validate` take `dotted.key=value` overrides anywhere among their options."""

from __future__ import annotations

import argparse
from typing import Sequence

from . import __version__
from .config.sweep_file import TRACKERS


class OneLineParser(argparse.ArgumentParser):
    """argparse's mistakes as one line, like every other error (not the usage text, then the error)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="cpsweep", description="Sweeps of deficit-window trials for critical "
                                                  "learning periods in deep networks.")
    p.add_argument("--version", action="version", version=f"cpsweep {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    la = sub.add_parser("launch", help="run (or finish) a sweep on Ray Tune")
    la.add_argument("spec", nargs="+", help="sweep YAML file(s), several run one after the other; and overrides "
                                            "key=value (YAML values) applied to each, e.g. replicates=5 "
                                            "grid.onset=[0,20,40] optim.lr=0.01")
    la.add_argument("--address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    la.add_argument("--storage", default="results", help="results root: a folder, or s3://bucket/prefix "
                                                         "(default: ./results)")
    la.add_argument("--shared-storage", action="store_true",
                    help="the local --storage path is on a file system every node mounts (NFS); needed to use a "
                         "local path on a cluster of several nodes")
    la.add_argument("--no-share", action="store_true",
                    help="train every trial from scratch instead of branching trials that share their first "
                         "epochs (same results, more epochs; for timing comparisons)")
    la.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    la.add_argument("--smoke", action="store_true", help="shrink every trial (3 epochs, 256 examples) for a "
                                                         "quick end-to-end check; results go to <name>-smoke")
    la.add_argument("--full-grid", action="store_true", help="with a search: section, run every onset of the "
                                                             "range instead of searching; results go to <name>-grid")
    la.add_argument("--tracker", action="append", choices=TRACKERS,
                    help="also log to W&B or MLflow (needs the package); repeatable")
    la.add_argument("--verbose", action="store_true", help="show Ray's own progress tables and worker logs")

    st = sub.add_parser("status", help="summarise a results folder")
    st.add_argument("results", help="a sweep's results folder, e.g. results/quickstart (or s3://...)")

    rp = sub.add_parser("report", help="write a sweep's HTML report")
    rp.add_argument("results", help="a sweep's results folder (or s3://...)")
    rp.add_argument("-o", "--output", default=None, help="where to write (default: <results>/report.html, "
                                                         "or ./compare.html, in the current folder, with --compare)")
    rp.add_argument("--compare", nargs="+", metavar="RESULTS", default=None,
                    help="overlay these sweeps' sensitivity curves and Fisher traces on the first one's")
    rp.add_argument("--threshold", type=float, default=None,
                    help="a window belongs to the critical period when it is shown to cost more than this many "
                         "points (one-sided t-tests, false discovery rate over the onsets at 2.5%%; default 0)")
    rp.add_argument("--per-parameter", action="store_true",
                    help="normalise per-layer Fisher traces by the layer's parameter count")
    rp.add_argument("--measure", default="test_acc", metavar="COLUMN",
                    help="measure the sensitivity by this column of the epochs table instead of test accuracy: "
                         "a metric of the sweep's metrics: section, metric.<name> (docs/plugins.md)")

    se = sub.add_parser("seeds", help="seeds a design needs for each claim, from a pilot sweep's spread")
    se.add_argument("results", nargs="?", default=None,
                    help="a pilot sweep's results folder (its seed-to-seed spread is used), e.g. results/quickstart")
    se.add_argument("--sd", type=float, default=None, help="instead of a pilot: the per-seed SD (points) of what "
                                                           "each claim is graded on")
    se.add_argument("--effect", type=float, nargs="+", default=[0.5, 1.0, 2.0], metavar="PTS",
                    help="true effects (points of final accuracy) to size the effect claims for (default 0.5 1 2)")
    se.add_argument("--power", type=float, default=0.8, help="chance of a 'reproduced' verdict to aim at (0.8)")
    se.add_argument("--comparisons", type=int, default=1, help="divide the level of each claim's test by this many "
                                                               "comparisons, the windows or lengths it is corrected "
                                                               "over (1)")

    v = sub.add_parser("validate", help="check sweep files and print their trial counts")
    v.add_argument("spec", nargs="+", help="sweep YAML files (every one is checked, all mistakes reported), and "
                                           "overrides key=value as for launch")

    t = sub.add_parser("trial", help="run one trial of a sweep locally")
    t.add_argument("spec", help="sweep YAML file (its fixed settings are used)")
    t.add_argument("--onset", type=int, required=True, help="first epoch with the deficit (0-based)")
    t.add_argument("--length", type=int, required=True, help="epochs with the deficit (0: the baseline)")
    t.add_argument("--seed", type=int, default=None, help="trial seed (default: the sweep's first seed)")
    t.add_argument("--epochs", type=int, default=None, help="total epochs (default: from the spec)")
    t.add_argument("--axis", action="append", metavar="AXIS=VALUE",
                   help="the value of another grid axis, e.g. --axis schedule=restart --axis deficit=vflip "
                        "(repeatable; default: each axis's first value)")
    t.add_argument("--out", default=None, help="folder for the Parquet records "
                                               "(default: results/<sweep>/trials/<trial id>)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if the spec "
                                                  "asks for a GPU and one is present, else cpu; a device "
                                                  "that is not here is an error)")

    sc = sub.add_parser("schema", help="print the JSON Schema of sweep files (editors check and complete YAML with it)")
    sc.add_argument("-o", "--output", default=None, help="write it to this file instead (e.g. sweep.schema.json)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; `launch` and `validate` take their key=value overrides before or after the options
    (`launch q.yaml --smoke replicates=3`), as argparse alone would refuse them after an option."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command in ("launch", "validate") and all("=" in x and not x.startswith("-") for x in extra):
            args.spec += extra
        else:
            parser.exit(2, f"cpsweep {args.command}: error: unrecognized arguments: {' '.join(extra)} (see "
                           f"cpsweep {args.command} --help)\n")
    return args
