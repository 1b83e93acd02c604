"""The `cpsweep` command line: each command a few lines over library calls (its arguments and help in
cli_args.py; `cpsweep COMMAND --help` and docs/commands.md list every option).

    cpsweep launch SPEC.yaml... [key=value ...]   run (or finish) a sweep on Ray Tune; Parquet + report.html
    cpsweep status RESULTS_DIR                    counts by status, progress, best and worst windows, verdicts
    cpsweep report RESULTS_DIR                    write the HTML report (or overlay several sweeps: --compare)
    cpsweep seeds [RESULTS_DIR]                   the seeds a design needs per claim, from a pilot's spread
    cpsweep validate SPEC.yaml... [key=value ...] check sweep files; print their trials and epochs
    cpsweep trial SPEC.yaml --onset O --length L  run one trial here, one line per epoch
    cpsweep schema                                the JSON Schema of sweep files, for editors

Overrides `dotted.key=value` (the value read as YAML) change every file given to launch or validate, are
validated like the file, and are recorded in the results (spec.yaml): `replicates=5 grid.onset=[0,20,40]
optim.lr=1e-2`. Files given together must name different sweeps (one results folder holds one sweep).
`cpsweep trial` takes none: it runs one trial of the file as written (--axis picks another grid value).

User mistakes (a bad spec, a missing data set, an unwritable folder) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import TYPE_CHECKING, Sequence

from .errors import CpsweepError, SpecError, TrialDiverged
from .cli_args import parse_args
from .storage.records import FINAL_EPOCHS, MIN_SEEDS, STATUSES

if TYPE_CHECKING:
    from .config.sweep_file import SweepSpec


def split_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Sweep files and `dotted.key=value` overrides (an argument with '=' that is not an existing file),
    the overrides applying to every file."""
    overrides = [a for a in args if "=" in a and not os.path.exists(a)]
    files = [a for a in args if a not in overrides]
    if not files:
        raise CpsweepError("no sweep file given, only overrides; e.g. cpsweep launch sweeps/quickstart.yaml "
                           "replicates=5 optim.lr=0.01")
    return files, overrides


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every file given (each one's mistakes all at once, and files that name one sweep), then say what
    each one runs."""
    errors, loaded = [], []
    files, overrides = split_overrides(args.spec)
    for spec in files:
        try:
            loaded.append((spec, load_checked(spec, overrides)))
        except CpsweepError as e:
            errors.append(str(e))
    clashes = name_clashes(loaded, overrides)
    for spec, sweep in loaded:
        if spec not in clashes:
            try:
                validate_one(spec, sweep)
            except CpsweepError as e:
                errors.append(str(e))
    errors += list(dict.fromkeys(clashes.values()))
    if errors:
        raise CpsweepError("\n".join(errors))
    return 0


def load_checked(spec: str, overrides: Sequence[str] = ()) -> SweepSpec:
    """The sweep file `spec` with `overrides`, every trial resolved and its plug-ins checked."""
    from .config.sweep_file import load_sweep
    from .sweep.preflight import check_plugins

    sweep = load_sweep(spec, overrides)
    check_plugins(sweep.trials(), sweep)
    return sweep


def name_clashes(loaded: Sequence[tuple[str, SweepSpec]], overrides: Sequence[str] = ()) -> dict[str, str]:
    """{file: the line refusing it} for the files given whose sweeps have one name (after the overrides): a
    results folder holds one sweep, so a launch would run the first and only then refuse the second."""
    first: dict[str, int] = {}
    out: dict[str, str] = {}
    for i, (spec, sweep) in enumerate(loaded):
        j = first.setdefault(sweep.name, i)
        if j == i:
            continue
        other = loaded[j][0]
        if os.path.realpath(other) == os.path.realpath(spec):
            line = f"{spec}: given twice; give each sweep file once"
        else:
            renamed = any(o.partition("=")[0] == "name" for o in overrides)
            fix = ("name= on the command line names every file's sweep: launch them one at a time, each with its "
                   "own name=..." if renamed else "change the name: of one of them")
            line = f"{other} and {spec} both name sweep {sweep.name!r}, and one results folder holds one sweep; {fix}"
        out.setdefault(other, line)
        out[spec] = line
    return out


def validate_one(spec: str, sweep: SweepSpec) -> None:
    """Print what the checked sweep of file `spec` runs (`load_checked`), and notes on its design."""
    from .config.sharing import sharing_summary
    from .config.spec import component_name

    trials = sweep.trials()
    baselines = sum(t.is_baseline for t in trials)
    alone, shared = sharing_summary(trials)
    saved = f" ({alone - shared} saved, {alone / shared:.2f}x fewer)" if shared < alone else ""
    print(f"{spec}: ok, sweep {sweep.name!r} (hash {sweep.hash()}): {len(trials)} trials "
          f"({baselines} baseline{'s' if baselines != 1 else ''}), {alone} training epochs without sharing, "
          f"{shared} with shared prefixes{saved}")
    short = sorted({(t.onset, t.window_end, t.epochs - t.window_end) for t in trials
                    if not t.is_baseline and t.epochs - t.window_end < FINAL_EPOCHS})
    if short:
        shown = ", ".join(f"[{a}, {b}) ({k} clean)" for a, b, k in short[:3]) + (" ..." if len(short) > 3 else "")
        print(f"  note: {len(short)} window{'s' * (len(short) > 1)} followed by fewer than {FINAL_EPOCHS} clean "
              f"epochs: {shown}; the final accuracy is the median of the last {FINAL_EPOCHS} epochs, so it holds "
              f"deficit epochs and the verdicts on those windows will be \"not shown\" (clean_after: "
              f"{FINAL_EPOCHS} or more avoids it)")
    seeds = len({t.seed for t in trials})
    if seeds < MIN_SEEDS:
        print(f"  note: {seeds} seed{'s' * (seeds != 1)}: fewer than {MIN_SEEDS} paired seeds decide no claim, so "
              f"every verdict will be \"not shown\" (replicates: {MIN_SEEDS} or more; `cpsweep seeds` sizes it from a "
              f"pilot)")
    for section in ("deficit", "model"):  # a grid axis replaces the file's section in every trial of the grid
        if sweep.raw.get(section) is not None and section in sweep.grid:
            print(f"  note: the file's {section} ({component_name(sweep.raw[section])}) is not used by this "
                  f"sweep: grid.{section} replaces it in "
                  f"every trial{' (baselines included)' if section == 'model' else ''}, and in `cpsweep trial`'s; "
                  f"list it in grid.{section} to run it, or delete it")
    for axis in (k for k in sweep.grid if "." in k):  # a dotted axis replaces the file's value of its key
        section, _, leaf = axis.partition(".")
        node = sweep.raw.get(section)
        if isinstance(node, dict) and leaf in node and section not in sweep.grid:  # (else noted above)
            print(f"  note: the file's {axis} ({node[leaf]}) is not used by this sweep: grid.{axis} replaces it in "
                  f"every trial it applies to; list it in grid.{axis} to run it, or delete it")
    if sweep.search is not None:
        from .config.search import coarse_onsets

        coarse = coarse_onsets(sweep.search, sweep.grid["onset"])
        first = sweep.trials(lambda t: t.onset in coarse)
        epochs = sharing_summary(first)[1]
        print(f"  adaptive search: round 0 runs onsets {coarse}: {len(first)} trials, {epochs} epochs "
              f"({epochs / shared:.0%} of the full grid's); later rounds add onsets only where the end can move "
              f"(--full-grid runs them all)")


def cmd_launch(args: argparse.Namespace) -> int:
    from .config.variants import full_grid_sweep

    files, overrides = split_overrides(args.spec)
    errors, loaded = [], []
    for spec in files:  # every file is checked before anything runs
        try:
            loaded.append((spec, load_checked(spec, overrides)))
            if args.full_grid:
                full_grid_sweep(loaded[-1][1])  # (refuses a sweep without a search: section)
        except SpecError as e:
            errors.append(str(e))
    errors += list(dict.fromkeys(name_clashes(loaded, overrides).values()))
    sweeps = [sweep for _, sweep in loaded]
    if errors:
        raise CpsweepError("\n".join(errors))
    from .sweep.launch import TERMINATED, launch  # (torch, Ray, pandas: a file's mistake is said before they load)

    failed = 0
    TERMINATED.clear()  # (a Python session that launched before)
    for spec in sweeps:  # one after the other, in one Ray session
        summary = launch(spec, address=args.address, storage=args.storage, max_concurrent=args.max_concurrent,
                         smoke=args.smoke, full_grid=args.full_grid, trackers=args.tracker or (), verbose=args.verbose,
                         shared_storage=args.shared_storage, share=not args.no_share)
        failed += summary.counts.get("failed", 0) + summary.counts.get("pending", 0)
        if summary.counts.get("pending", 0) + summary.counts.get("running", 0):  # stopped (Ctrl-C, SIGTERM):
            break                                                                 # no further file starts
    return 143 if TERMINATED.is_set() else 0 if failed == 0 else 1


def cmd_status(args: argparse.Namespace) -> int:
    from .results.reduce import sensitivity
    from .results.report import results_for_report
    from .results.report_checks import sweep_checks, verdict_lines
    from .storage.store import Store
    from .results.summary import label
    from .sweep.live import describe, read_live
    from .sweep.lock import alive, read_lock

    res = results_for_report(args.results)  # what the report reads: the per-layer rows of a few trials only
    counts = res.trials.status.value_counts()
    store = Store(args.results)
    live, running = read_live(store), alive(read_lock(store))
    word = {"ok": "done", "running": "running" if running else "interrupted"}
    print(f"{args.results}: {len(res.trials)} trials: "
          + ", ".join(f"{int(counts.get(s, 0))} {word.get(s, s)}" for s in STATUSES))
    if live is not None and (counts.get("running", 0) or not live.get("finished")):
        print("\n".join(describe(live, running=running)))
    if not running:  # (a running launch adds them within seconds)
        from .sweep.progress import finished_trials

        unmerged = finished_trials(store)[2]
        if unmerged:
            print(f"{len(unmerged)} finished trial(s) are in shards/ but not yet in the tables, so not counted above "
                  f"(the last launch stopped before adding them): launching again adds them without training them")
    if res.search:  # an adaptive sweep: where its search stands
        from .sweep.adaptive import summary_lines

        print("\n".join(summary_lines(res.search)))
    sens = sensitivity(res.trials, res.epochs)
    if not sens.empty:
        ranked = sens.sort_values("sensitivity")
        for which, row in (("worst", ranked.iloc[-1]), ("best", ranked.iloc[0])):  # named by every axis value
            print(f"{which:5} window: {label(row.deficit, row.tags, row.onset, row.length)} "
                  f"{row.sensitivity:+.2f} pts lost vs baseline ({row.acc:.2f}% vs {row.baseline_acc:.2f}%, "
                  f"{int(row.n_seeds)} seed(s))")
    for line in verdict_lines(sweep_checks(res)):
        print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.threshold is not None and not 0 <= args.threshold < math.inf:  # (NaN too)
        raise SpecError("--threshold", f"must be >= 0 points (a window costs more than this), got "
                                       f"{args.threshold:g}")
    if args.compare:  # (an overlay of several sweeps draws their curves as they are)
        unused = [flag for flag, given in (("--threshold", args.threshold is not None),
                                           ("--per-parameter", args.per_parameter),
                                           ("--measure", args.measure != "test_acc")) if given]
        if unused:
            raise SpecError(unused[0], "applies to one sweep's report, not to --compare's overlay; drop it, or "
                                       "write each sweep's report alone")
    from .results.reduce import DEFAULT_THRESHOLD
    from .results.report import write_compare, write_report

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    folder = os.path.dirname(args.output) if args.output and "://" not in args.output else ""
    new = bool(folder) and not os.path.isdir(folder)
    if args.compare:
        path = write_compare([args.results, *args.compare], args.output or "compare.html")
    else:
        path = write_report(args.results, args.output, threshold, args.per_parameter, args.measure)
    print(f"{path} (created the folder {folder})" if new else path)
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    """Seeds a design needs, from a pilot's seed-to-seed spread (or --sd), before the sweep runs."""
    for flag, value, ok, wanted in (
            ("--power", args.power, 0 < args.power < 1, "a chance between 0 and 1, e.g. 0.8"),
            ("--comparisons", args.comparisons, args.comparisons >= 1, "a whole number >= 1"),
            ("--sd", args.sd, args.sd is None or 0 < args.sd < math.inf, "points > 0, e.g. 0.5"),
            ("--effect", args.effect, all(0 < e < math.inf for e in args.effect), "points > 0, e.g. 1 2")):
        if not ok:
            raise SpecError(flag, f"must be {wanted}, got {value}")
    if (args.results is None) == (args.sd is None):
        raise SpecError("seeds", "give a pilot's results folder (e.g. results/quickstart) or --sd POINTS, one of them")
    from .results import power

    spread = power.given_spread(args.sd) if args.sd is not None else power.folder_spread(args.results)
    where = f"--sd {args.sd:g}" if args.sd is not None else args.results
    print("\n".join(power.lines(spread, where, args.effect, args.power, args.comparisons)))
    return 0


def format_record(r, epochs: int) -> str:
    fisher = f"{r.fisher_trace:10.4g}" if r.fisher_trace == r.fisher_trace else "         -"
    if r.epoch < 0:  # the record at initialisation
        return (f"{'init':<15} {'':<12} {'':<12}  {'':<17}  test {r.test_loss:.3f} {100 * r.test_acc:5.1f}%  "
                f"fisher {fisher}  {r.seconds:5.2f}s")
    return (f"epoch {r.epoch + 1:>4}/{epochs:<4} lr {r.lr:<9.4g} deficit {'on ' if r.deficit_active else 'off'}  "
            f"train {r.train_loss:.3f} {100 * r.train_acc:5.1f}%  test {r.test_loss:.3f} {100 * r.test_acc:5.1f}%  "
            f"fisher {fisher}  {r.seconds:5.2f}s")


# the fields of `make_trial` that come from `cpsweep trial`'s flags
TRIAL_FLAGS = {"onset": "--onset", "length": "--length", "seed": "--seed", "epochs": "--epochs",
               "grid.onset/length": "--onset/--length"}


def cmd_trial(args: argparse.Namespace) -> int:
    from .config.pick import as_typed, pick_trial
    from .config.sweep_file import load_sweep
    from .storage.records import final_accuracy
    from .storage.store import SPEC_FILE, Store

    from .sweep.preflight import check_plugins

    sweep = load_sweep(args.spec)
    seed = sweep.seeds[0] if args.seed is None else args.seed
    try:
        trial, values, defaulted = pick_trial(sweep, args.onset, args.length, seed, args.axis or (), args.epochs)
    except SpecError as e:  # the flags' mistakes, named as flags (the window's rule reads the file's epochs)
        field = TRIAL_FLAGS.get(e.field, e.field)  # (a flag alone is said without the file)
        raise SpecError(field, e.message, None if field.startswith("--") and "/" not in field else args.spec) \
            from None
    check_plugins([trial], sweep)  # a plug-in that fails is said in one line, as by validate and launch

    from .engine import _device
    from .engine.trial import train_trial

    # without --device: a GPU when the spec asks for one and there is one here, else the CPU (said so)
    gpus = sweep.resources.gpu if _device.gpu_count() else 0
    device = _device.choose(args.device, gpus, f"trial {trial.trial_id}", "--device")
    fallback = args.device is None and sweep.resources.gpu > 0 and device == "cpu"
    if device == "cpu":  # the sweep's trial trains on resources.cpu threads, which its arithmetic depends on
        import torch

        torch.set_num_threads(max(1, int(sweep.resources.cpu)))
    note = " (the spec asks for a GPU; torch finds none here)" if fallback else ""
    out = args.out or os.path.join("results", sweep.name, "trials", trial.trial_id)
    store = Store(out, fix="choose another folder with --out")
    store.check_writable()  # before any training
    # a sweep's tables are folders of parts, which one trial's files cannot replace: said before training
    if store.exists(SPEC_FILE) or store.exists("shards"):
        raise CpsweepError(f"--out: {out} holds a sweep's results, which one trial's tables would overwrite; "
                           "choose another folder with --out (a new one, or a trial's own)")

    print(f"trial {sweep.name}/{trial.trial_id}: {trial.data.name}, {trial.model.name}, deficit "
          f"{trial.deficit.name} in [{trial.onset}, {trial.window_end}), {trial.epochs} epochs, seed {trial.seed}, "
          f"on {device}{note}")
    if defaulted:  # the sweep's other axes: say which value each took, and how to pick another
        print("  " + ", ".join(f"{a}={as_typed(values[a])} (first of {len(sweep.grid[a])})" for a in defaulted)
              + "; pick another with --axis AXIS=VALUE")
    records, run = [], train_trial(trial, device)
    try:
        for record in run:
            records.append(record)
            print(format_record(record, trial.epochs), flush=True)
    except TrialDiverged as e:
        print(f"trial diverged: {e}", file=sys.stderr)
        store.write_trial(trial, records, "diverged", numerics=run.numerics)
        return 1
    store.write_trial(trial, records, "ok", numerics=run.numerics)
    print(f"final test accuracy (median of the last {FINAL_EPOCHS} epochs): {100 * final_accuracy(records):.2f}%"
          f"  -> {out}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .config.schema import schema_text

    if args.output is None:
        sys.stdout.write(schema_text())
        return 0
    from ._io import atomic_write

    folder = os.path.dirname(args.output)
    new = bool(folder) and not os.path.isdir(folder)
    try:  # like `report -o`: whole or not at all, the folder made if missing
        atomic_write(args.output, schema_text().encode())
    except OSError as e:
        raise CpsweepError(f"cannot write {args.output}: {e.strerror or e}; pass -o a file in a folder you can "
                           f"write to") from None
    print(f"{args.output} (created the folder {folder})" if new else args.output)
    return 0


COMMANDS = {"launch": cmd_launch, "status": cmd_status, "report": cmd_report, "seeds": cmd_seeds,
            "validate": cmd_validate, "trial": cmd_trial, "schema": cmd_schema}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CpsweepError as e:
        print(f"cpsweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cpsweep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped (`cpsweep status DIR | head`): nothing more to say, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (else Python's exit flush fails again)
        return 1


if __name__ == "__main__":
    sys.exit(main())
