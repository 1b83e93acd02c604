"""An adaptive sweep: rounds of onsets chosen where they can move the end of the critical period.

A sweep file with a `search:` section (`config/search.py`) runs, inside one `cpsweep launch`, rounds of
the ordinary grid machinery (`launch.run_tune`) over growing subsets of its onset lattice:

    round 0   the coarse onsets of every window length (and deficit, schedule, ...: each such *window
              group* is searched on its own), every seed, and every seed's baseline
    round r   once every trial of round r - 1 has finished: per group, the sampled onsets are classified
              from their paired t-intervals over seeds and the onsets that can move the end are added
              (`results/boundary.py`); the round runs them
    stop      no group has an onset to add (every end located, beyond the range, or none), `max_rounds`
              reached, or the next round would pass `max_epochs` / `max_trials` (the round is then not run)

Every decision is a pure function of the spec and of the results of the trials already chosen, so a
relaunch after a crash replays the rounds from the results folder (no state of its own to lose) and goes
on where the crashed launch stopped: the same trials, the same rounds, the same reasons. Trials that
failed stop the search before the next round (a relaunch retries them, then goes on), and trials that
diverged stop it for good (they have no final accuracy), so no decision rests on a missing result.

Prefix sharing spans the rounds: each round's trials are planned together with every lattice trial not
chosen yet (`launch.plan_tasks(future=...)`), so a baseline saves prefix checkpoints at every lattice
onset and a window added later branches from one. The epochs a search costs are counted the way a fresh
launch of its trials would train them with shared prefixes (`sharing_summary`), the same count as the
full grid's, so the two compare; `trained` adds what the results folder says was actually trained.

Each chosen trial's round and reason go into trials.parquet (`round`, `reason`); `search.json` in the
results folder holds the settings, the rounds, every sampled onset's class and interval, the boundary
of every group and the epochs against the full grid (the report's adaptive section draws it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from ..config.search import coarse_onsets
from ..config.sharing import sharing_summary
from ..config.spec import TrialSpec
from ..config.sweep_file import SweepSpec
from ..errors import SpecError
from ..results.boundary import WINDOW, classify_windows, locate, propose
from ..storage.records import tags_text
from ..results.reduce import seed_sensitivity
from ..storage.store import SEARCH_FILE, Store
from .progress import FINISHED, Progress

Group = tuple  # (deficit, tags, length)


def group_of(trial: TrialSpec) -> Group:
    return (trial.deficit.name, tags_text(trial), trial.length)


@dataclass(frozen=True)
class Added:
    round: int
    reason: str


@dataclass
class GridCache:
    """What every search of one sweep computes alike, kept across the hundreds of searches a simulation runs:
    the whole grid's trials, and per chosen set (None: the whole grid) its trials and its cost."""
    all_trials: list[TrialSpec]
    trials: dict[frozenset, list[TrialSpec]] = field(default_factory=dict)
    costs: dict[frozenset | None, tuple[int, int, int]] = field(default_factory=dict)


class Search:
    """The rounds of one adaptive sweep: which onsets of which window group are chosen, when and why."""

    def __init__(self, sweep: SweepSpec, out=None, cache: GridCache | None = None):
        """`cache`: shared by searches of the same sweep (`GridCache(sweep.trials())`); a fresh one if None."""
        if sweep.search is None:
            raise ValueError(f"sweep {sweep.name} has no search: section")
        self.sweep, self.settings, self.out = sweep, sweep.search, out
        self.cache = GridCache(sweep.trials()) if cache is None else cache
        self.lattice = sorted(sweep.grid["onset"])
        self.all_trials = self.cache.all_trials
        self.groups = sorted({group_of(t) for t in self.all_trials if not t.is_baseline})
        coarse = coarse_onsets(self.settings, self.lattice)
        self.chosen: dict[tuple, Added] = {(*g, o): Added(0, f"coarse: round 0 onsets {coarse}")
                                           for g in self.groups for o in coarse}
        self.round = 0
        self.rounds: list[dict[str, Any]] = [self._round_record(0, [(g, o, "coarse") for g in self.groups
                                                                     for o in coarse])]
        self.stop: str | None = None
        self.points: dict[Group, list] = {}
        self.full_epochs = self._cost(None, full=True)
        first = self.rounds[0]
        for key, what, limit in (("max_epochs", "epochs", self.settings.max_epochs),
                                 ("max_trials", "trials", self.settings.max_trials)):
            if limit is not None and first[what] > limit:
                raise SpecError(f"search.{key}", f"round 0 alone (onsets {coarse}) has {first[what]:,} {what} > "
                                                 f"{limit:,}; raise it, or give fewer coarse onsets", sweep.source)

    # -- the trials ----------------------------------------------------------------------------------
    def accepts(self, trial: TrialSpec) -> bool:
        return (*group_of(trial), trial.onset) in self.chosen

    def trials(self, chosen: dict | None = None) -> list[TrialSpec]:
        """The chosen trials and the baselines they use (resolved once per chosen set: the cache keeps them)."""
        keys = frozenset(self.chosen if chosen is None else chosen)
        if keys not in self.cache.trials:
            self.cache.trials[keys] = self.sweep.trials(lambda t: (*group_of(t), t.onset) in keys)
        return self.cache.trials[keys]

    def future(self) -> list[TrialSpec]:
        """The lattice's trials not chosen yet: planned with each round so that its trials save the prefix
        checkpoints later rounds branch from."""
        return [t for t in self.all_trials if not t.is_baseline and not self.accepts(t)]

    def note(self, trial: TrialSpec) -> tuple[int, str]:
        """(round, reason) of a chosen trial, for trials.parquet."""
        if trial.is_baseline:
            return 0, "baseline"
        added = self.chosen[(*group_of(trial), trial.onset)]
        return added.round, added.reason

    def _cost(self, chosen: dict | None, full: bool = False) -> tuple[int, int, int]:
        """(trials, epochs from scratch, epochs with shared prefixes) of the chosen set (or the full grid)."""
        key = None if full else frozenset(self.chosen if chosen is None else chosen)
        if key not in self.cache.costs:
            trials = self.all_trials if full else self.trials(chosen)
            self.cache.costs[key] = (len(trials), *sharing_summary(trials))
        return self.cache.costs[key]

    def epochs(self, chosen: dict | None = None) -> int:
        """Epochs a fresh launch of the chosen trials trains, shared prefixes on."""
        return self._cost(chosen)[2]

    # -- the rounds ----------------------------------------------------------------------------------
    def _round_record(self, r: int, added: list[tuple[Group, int, str]], chosen: dict | None = None) -> dict:
        n, _, epochs = self._cost(chosen)
        return {"round": r, "added": [{"deficit": g[0], "tags": g[1], "length": int(g[2]), "onset": int(o),
                                       "reason": why} for g, o, why in added],
                "trials": n, "epochs": epochs}

    def sensitivities(self, progress: Progress) -> pd.DataFrame:
        """Per-seed sensitivity of every finished chosen window (`reduce.seed_sensitivity`)."""
        ids = {t.trial_id for t in self.trials()}
        rows = [progress.rows[tid] for tid in ids if tid in progress.rows and progress.status.get(tid) in FINISHED]
        if not rows:
            return pd.DataFrame(columns=[*WINDOW, "onset", "seed", "sens"])
        curves = [pd.DataFrame({"trial_id": tid, "epoch": c.index, "test_acc": c.values})
                  for tid, c in progress.curves.items() if tid in ids]
        return seed_sensitivity(pd.DataFrame(rows), pd.concat(curves, ignore_index=True) if curves else None)

    def classify(self, sens: pd.DataFrame) -> None:
        """Every group's sampled onsets, classed (`boundary.classify_windows`); a group with none finished: []."""
        self.points = {g: [] for g in self.groups} | classify_windows(sens, self.settings.threshold,
                                                                      self.settings.margin)

    def advance(self, progress: Progress) -> bool:
        """After a round: add the next round's trials to `progress` (True), or stop (False, `self.stop` says
        why). Call when no chosen trial is left to run."""
        unfinished = [t.trial_id for t in self.trials() if progress.status.get(t.trial_id) not in FINISHED]
        sens = self.sensitivities(progress)
        if unfinished:
            self.classify(sens)
            self.stop = (f"{len(unfinished)} trial(s) of round {self.round} did not finish (e.g. {unfinished[0]}); "
                         f"relaunch to retry them and go on with the search")
            return False
        diverged = [t.trial_id for t in self.trials() if progress.status.get(t.trial_id) == "diverged"]
        if diverged:  # (no final accuracy: its window's cost, or its baseline's windows', cannot be read)
            self.classify(sens)
            self.stop = (f"{len(diverged)} trial(s) diverged (e.g. {diverged[0]}), so the windows they belong to "
                         f"have no cost to decide on; lower the learning rate (or fix the trial) and launch the "
                         f"sweep under a new name")
            return False
        proposals = self.step(sens)
        if proposals is None:
            return False
        new = [t for t in self.trials() if t.trial_id not in progress.trials]
        progress.extend(new, {t.trial_id: self.note(t) for t in new})
        print(f"sweep {self.sweep.name}: round {self.round}: adds " + "; ".join(
            f"{_label(g)} onset {o} ({why})" for g, o, why in proposals), file=self.out, flush=True)
        return True

    def step(self, sens: pd.DataFrame) -> list[tuple[Group, int, str]] | None:
        """One decision from the per-seed sensitivities of the chosen windows (`reduce.seed_sensitivity`
        columns; all of them finished): the onsets the next round adds, now chosen, or None when the
        search stops (`self.stop` says why). A pure function of the sensitivities and the state."""
        s = self.settings
        self.classify(sens)
        proposals = [(g, o, why) for g in self.groups for o, why in propose(self.points[g], self.lattice)]
        again = [(g, o) for g, o, _ in proposals if (*g, o) in self.chosen]
        if again:  # (an onset chosen before but with no result to place it: never added twice)
            g, o = again[0]
            self.stop = (f"{_label(g)} onset {o}, chosen in round {self.chosen[(*g, o)].round}, has no finished "
                         f"window with its baseline to decide on, so its end cannot move")
            return None
        if not proposals:
            self.stop = "every window group's end is settled: no onset left that could move it"
            return None
        if self.round >= s.max_rounds:
            self.stop = f"max_rounds ({s.max_rounds}) reached with {len(proposals)} onset(s) still to add"
            return None
        nxt = {**self.chosen, **{(*g, o): Added(self.round + 1, why) for g, o, why in proposals}}
        record = self._round_record(self.round + 1, proposals, nxt)
        if s.max_epochs is not None and record["epochs"] > s.max_epochs:
            self.stop = (f"budget: round {self.round + 1} would bring the epochs to {record['epochs']:,} > "
                         f"max_epochs {s.max_epochs:,}")
            return None
        if s.max_trials is not None and record["trials"] > s.max_trials:
            self.stop = (f"budget: round {self.round + 1} would bring the trials to {record['trials']} > "
                         f"max_trials {s.max_trials}")
            return None
        self.chosen, self.round = nxt, self.round + 1
        self.rounds.append(record)
        return proposals

    # -- the record ----------------------------------------------------------------------------------
    def record(self, progress: Progress) -> dict[str, Any]:
        """search.json: settings, rounds, every sampled onset, each group's boundary, epochs spent."""
        when = {k: a.round for k, a in self.chosen.items()}
        groups = []
        for g in self.groups:
            points = self.points.get(g, [])
            b = locate(points, self.lattice) if points else None
            groups.append({"deficit": g[0], "tags": g[1], "length": int(g[2]),
                           "boundary": b.to_dict() if b else None,
                           "points": [{**_point(p), "round": when.get((*g, p.onset))} for p in points],
                           "chosen": sorted(int(k[3]) for k in self.chosen if tuple(k[:3]) == g)})
        ids = {t.trial_id for t in self.trials()}
        trained = sum(int(r["epochs"]) - int(r.get("shared_epochs") or 0) for tid, r in progress.rows.items()
                      if tid in ids and progress.status.get(tid) in FINISHED)
        spent = self.epochs()
        return {"settings": self.settings.to_dict(), "lattice": self.lattice, "rounds": self.rounds,
                "stop": self.stop, "groups": groups,
                "epochs": {"search": spent, "full_grid": self.full_epochs[2],
                           "full_grid_no_sharing": self.full_epochs[1],
                           "fraction": spent / self.full_epochs[2] if self.full_epochs[2] else None,
                           "trained": trained},
                "trials": {"search": len(ids), "full_grid": len(self.all_trials)}}

    def write(self, store: Store, progress: Progress) -> dict[str, Any]:
        doc = self.record(progress)
        store.write_bytes(json.dumps(doc, indent=1).encode(), SEARCH_FILE)
        return doc


def _point(p) -> dict[str, Any]:
    return {"onset": p.onset, "cls": p.cls, "mean": p.mean, "low": p.low, "high": p.high, "upper": p.upper,
            "n": p.n}


def _label(g: Group) -> str:
    return f"{g[0]} l{g[2]}" + (f" [{g[1]}]" if g[1] else "")


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The end of a search in a few lines: each group's boundary, then the epochs against the full grid."""
    lines = [f"  {_label((g['deficit'], g['tags'], g['length']))}: {g['boundary']['status']}: "
             f"{g['boundary']['text']}" for g in doc["groups"] if g["boundary"]]
    e = doc["epochs"]
    frac = f" ({e['fraction']:.0%})" if e["fraction"] is not None else ""
    lines.append(f"  {len(doc['rounds'])} round(s), {doc['trials']['search']} of {doc['trials']['full_grid']} "
                 f"trials; {e['search']:,} epochs with shared prefixes against {e['full_grid']:,} for the full "
                 f"grid{frac}; stopped: {doc['stop']}")
    return lines


RunRound = Callable[[list[TrialSpec], list[TrialSpec], int], None]


def replay(search: Search, progress: Progress) -> None:
    """Go through the rounds whose trials have all finished (a relaunch), up to the first round with
    trials to run or the end of the search; nothing runs."""
    progress.notes.update({t.trial_id: search.note(t) for t in search.trials()})
    while all(progress.status.get(t.trial_id) in FINISHED for t in search.trials()) and search.advance(progress):
        pass


def run_rounds(search: Search, progress: Progress, run: RunRound, store: Store) -> dict[str, Any]:
    """Run rounds until the search stops: `run(pending, future, round)` trains one round's unfinished
    trials; rounds whose trials are all finished (a relaunch) are replayed without running anything."""
    while True:
        pending = [t for t in search.trials() if progress.status.get(t.trial_id) not in FINISHED]
        if pending:
            run(pending, search.future(), search.round)
            if any(progress.status.get(t.trial_id) not in FINISHED for t in pending):
                search.advance(progress)  # records why it stops
                break
        if not search.advance(progress):
            break
        search.write(store, progress)
    return search.write(store, progress)
