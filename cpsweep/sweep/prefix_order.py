"""Hand Tune the trials of a launch in the order shared prefixes allow (`config.sharing.plan`).

Tune takes this order through its searcher interface (`search_alg`), but nothing is searched (the adaptive
search of a `search:` section is `adaptive.py`): `PrefixOrder` suggests no new configurations, only the
planned trials, each once. A trial that branches from another trial of the launch is held back until that
trial has reported the epoch its prefix checkpoint is taken at (the trainable saves the checkpoint before it
reports the epoch); among the trials that may run, the one that unlocks the longest chain of work goes first
(a heap: every event costs O(log n) at most). If a trial ends without reaching a branch epoch (it diverged,
or failed for good), the trials waiting on it start from scratch instead: the same records, computed again.
"""

from __future__ import annotations

import heapq
from typing import Any, Mapping, Sequence

from ray.tune.search import Searcher

from ..config.sharing import Start
from .task import TrialTask


class PrefixOrder(Searcher):
    """A Tune searcher that suggests `tasks` (trial id -> task) once each, parents before the trials branching
    from them."""

    def __init__(self, tasks: Mapping[str, TrialTask], starts: Mapping[str, Start],
                 priority: Mapping[str, int], order: Sequence[str]):
        super().__init__()
        self.tasks = dict(tasks)
        self.starts = starts
        rank = {tid: i for i, tid in enumerate(order)}
        self.key = lambda tid: (-priority.get(tid, 0), rank[tid], tid)
        self.waiting = {tid for tid in order if starts[tid].parent is not None}
        self.ready = [self.key(tid) for tid in order if tid not in self.waiting]  # a heap of keys
        heapq.heapify(self.ready)
        # each trial's children by branch epoch, and how many of them have been released
        self.children = {tid: sorted(starts[tid].children, key=lambda c: starts[c].epoch) for tid in order}
        self.released = dict.fromkeys(order, 0)
        self.running: dict[str, str] = {}  # Tune's trial id -> ours

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the configurations are ours; Tune's constants are merged into each

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.ready:
            return None if self.waiting else Searcher.FINISHED
        tid = heapq.heappop(self.ready)[-1]
        self.running[trial_id] = tid
        return self.tasks[tid].to_config()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        epoch = result.get("epoch")
        tid = self.running.get(trial_id)
        if tid is None or epoch is None or result.get("diverged"):  # a diverged epoch saved nothing
            return
        # the prefix checkpoint at epoch p holds the state after epochs 0 … p-1
        children, i = self.children[tid], self.released[tid]
        while i < len(children) and self.starts[children[i]].epoch <= int(epoch) + 1:
            i += 1
        if i > self.released[tid]:
            self._release(children[self.released[tid]:i])
            self.released[tid] = i

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        tid = self.running.pop(trial_id, None)
        if tid is None:
            return
        orphans = [c for c in self.children[tid][self.released[tid]:] if c in self.waiting]
        for c in orphans:  # the branch epoch was never reached: train the prefix again
            self.tasks[c] = self.tasks[c].without_branch()
        self._release(orphans)
        self.released[tid] = len(self.children[tid])

    def _release(self, tids: Sequence[str]) -> None:
        for t in tids:
            if t in self.waiting:
                self.waiting.discard(t)
                heapq.heappush(self.ready, self.key(t))
