"""Which trials share work: training prefixes to branch from, and packs to train as one (no torch, no ray).

Two trials compute the same first p epochs exactly when they have the same fixed settings and seed and,
epoch by epoch, the same learning rate, the same deficit (or none) and the same Fisher measurement. Then
the state after p epochs (model, optimiser, records) of one is the state of the other, and a trial can
start from the other's checkpoint at epoch p instead of training those epochs again. Resuming is exact
(bit for bit on CPU, and on a GPU with `engine.deterministic`: `engine/numerics.py`), so branching is too;
on a GPU without it, both are statistically equal only (the trials' `numerics` column says which).

    key = prefix_keys(trial)[p]       # names the state after the first p epochs; equal keys, equal states

`check_packable(trials)` says whether trials can train as one vmapped model (`benchmarks/packed_run.py`): they
must share every setting whose role is not per member (`spec.py`) and their learning rate at every epoch.

For a sliding-window grid, every window [onset, onset + length) of a seed branches from the baseline at
its onset; windows with the same onset share their deficit epochs up to the shorter length; the windows
[0, k) of a removal curve share their deficit epochs with each other.

`plan()` gives every trial to run a start: the longest prefix it can take from another trial of this
launch (which then saves a prefix checkpoint at that epoch) or from a prefix checkpoint an earlier launch
left in storage, unless its own checkpoint is further on. Attaching each trial to the longest common
prefix among those planned before it trains every distinct prefix exactly once, whatever the order, so
the plan costs the epochs of the trie of all trials' epoch sequences.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .registry import entry
from .spec import TrialSpec
from .views import computed_settings, shared_settings
from .timeline import fisher_due, trial_lr


def epoch_signature(trial: TrialSpec, epoch: int) -> list:
    """What, besides the fixed settings, decides epoch `epoch` of `trial` and its record."""
    deficit = trial.deficit.to_dict() if trial.deficit_active(epoch) else None
    return [repr(trial_lr(trial, epoch)), deficit, fisher_due(trial, epoch)]


def prefix_keys(trial: TrialSpec) -> list[str]:
    """`keys[p]` names the training state after the first p epochs (p = 0 … trial.epochs)."""
    fixed = computed_settings(trial)  # the fields whose role decides every epoch (`spec.py`)
    h = hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()
    keys = [h[:24]]
    for epoch in range(trial.epochs):
        sig = json.dumps(epoch_signature(trial, epoch), sort_keys=True)
        h = hashlib.sha256(f"{h}|{sig}".encode()).hexdigest()
        keys.append(h[:24])
    return keys


@dataclass
class Start:
    """Where one trial starts and what it must leave behind for others."""
    trial_id: str
    epoch: int = 0                      # first epoch this trial trains
    branch_key: str | None = None       # prefix checkpoint to start from (None: scratch or own checkpoint)
    parent: str | None = None           # trial of this launch that saves that checkpoint (None: in storage)
    save: dict[int, str] = field(default_factory=dict)  # epoch -> key of prefix checkpoints to save
    children: list[str] = field(default_factory=list)    # trials waiting for one of those


def plan(trials: Sequence[TrialSpec], *, stored: Iterable[str] = (), resume: Mapping[str, int] | None = None,
         share: bool = True) -> dict[str, Start]:
    """Plan the starts of `trials` (those to run, in the order given).

    Args:
        stored: keys of complete prefix checkpoints already in storage.
        resume: trial id -> epoch of its own newest checkpoint from an earlier launch.
        share: False plans every trial from scratch (or its own checkpoint).
    """
    resume = resume or {}
    starts = {t.trial_id: Start(t.trial_id, epoch=resume.get(t.trial_id, 0)) for t in trials}
    if not share:
        return starts
    stored = set(stored)
    owner: dict[str, str] = {}  # key -> a trial of this launch that passes through that state
    for t in trials:
        keys, s = prefix_keys(t), starts[t.trial_id]
        best = next((p for p in range(t.epochs, 0, -1) if keys[p] in stored or keys[p] in owner), 0)
        if best > s.epoch:  # the longest prefix on offer beats starting from scratch or its own checkpoint
            source = None if keys[best] in stored else owner[keys[best]]
            s.epoch, s.branch_key, s.parent = best, keys[best], source
            if source is not None:
                starts[source].save[best] = keys[best]
                starts[source].children.append(t.trial_id)
        for p in range(s.epoch, t.epochs + 1):
            owner.setdefault(keys[p], t.trial_id)
    return starts


def cost(trials: Sequence[TrialSpec], starts: Mapping[str, Start]) -> int:
    """Epochs trained when every trial starts where `starts` says."""
    return sum(t.epochs - starts[t.trial_id].epoch for t in trials)


def sharing_summary(trials: Sequence[TrialSpec]) -> tuple[int, int]:
    """(epochs without sharing, epochs with sharing) for a fresh launch of `trials`."""
    return sum(t.epochs for t in trials), cost(trials, plan(trials))


def subtree_epochs(trials: Sequence[TrialSpec], starts: Mapping[str, Start]) -> dict[str, int]:
    """For each trial, the epochs on the longest chain of work it unlocks (itself and its descendants):
    the scheduling priority that keeps the branching tree's critical path short."""
    own = {t.trial_id: t.epochs - starts[t.trial_id].epoch for t in trials}
    memo: dict[str, int] = {}

    def longest(tid: str) -> int:  # a child can start once its parent has trained up to its branch epoch
        if tid not in memo:
            s = starts[tid]
            memo[tid] = max([own[tid]] + [starts[c].epoch - s.epoch + longest(c) for c in s.children])
        return memo[tid]

    for t in trials:
        longest(t.trial_id)
    return memo


def check_packable(trials: Sequence[TrialSpec]) -> None:
    """Raise ValueError unless `trials` can train as one batched model: the same settings but for the
    fields that may differ per member (seed, window, deficit, tags) and the same learning rate at every
    epoch."""
    if not trials:
        raise ValueError("a pack needs at least one trial")
    windows = [t.trial_id for t in trials if entry("deficit", t.deficit.name).acts_on == "training"]
    if windows:
        raise ValueError(f"{windows[0]} changes a training setting during its window; a pack trains its members "
                         f"with one setting")
    shared = [shared_settings(t) for t in trials]
    for t, s in zip(trials[1:], shared[1:]):
        if s != shared[0]:
            diff = sorted(k for k in s if s[k] != shared[0].get(k))
            raise ValueError(f"{t.trial_id} cannot share a pack with {trials[0].trial_id}: "
                             f"{', '.join(diff)} differ")
    lrs = [[trial_lr(t, e) for e in range(t.epochs)] for t in trials]
    if any(lr != lrs[0] for lr in lrs[1:]):
        raise ValueError("pack members must use the same learning rate at every epoch "
                         "(restart_after_deficit restarts each member's schedule at its own window end)")
