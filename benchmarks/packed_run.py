"""Train several same-shape trials as one batched model (`torch.func.stack_module_state` + `vmap`).

    run = PackedRun([trial_a, trial_b, trial_c], "cuda")   # same model, data, optimiser and schedule
    for records in run:                                     # one EpochRecord per member per epoch
        ...

Each member keeps its own seed (initialisation, data order, augmentation, deficit randomness, Fisher
labels) and its own deficit window; only the arithmetic is shared: every step stacks the members'
batches into one (members, batch, ...) tensor and runs the forward and backward pass of all members as
one vmapped call, so small models fill the device with K times larger kernels instead of K processes of
small ones. The parameters, BatchNorm buffers and optimiser state live stacked; after each epoch they are
copied into the members' own models for the BN refresh, the test pass and the Fisher trace, which run per
member exactly as in `trial.py`. Results equal the members' single runs within floating-point tolerance
(batched kernels round differently; `tests/test_packed.py`).

Limits: members must share every setting whose role is not per member (`config/spec.py`: model, data,
optimiser, schedule, engine, epochs, ...) and their learning rate at every epoch (so no
`restart_after_deficit` with windows ending at different epochs): `config.sharing.check_packable`. A
non-finite loss in any member stops the pack. `benchmarks/throughput.py` measures it against running the
members as separate processes.

Not a launcher mode (docs/throughput.md says what wiring it into `cpsweep launch` would take): it lives
with the benchmark that measures it, and `tests/test_packed.py` checks it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from cpsweep.config.sharing import check_packable
from cpsweep.config.spec import TrialSpec
from cpsweep.engine.data import Dataset, load_data
from cpsweep.engine.trial import TrialRun, make_optimizer
from cpsweep.errors import TrialDiverged
from cpsweep.storage.records import EpochRecord


class PackedRun:
    """Iterator over the members' EpochRecords, one list (in member order) per epoch."""

    def __init__(self, trials: Sequence[TrialSpec], device: torch.device | str, data: Dataset | None = None):
        check_packable(trials)
        first = trials[0]
        self.device = torch.device(device)
        data = data if data is not None else load_data(first.data, self.device)
        self.members = [TrialRun(t, self.device, data=data) for t in trials]
        self.params, self.buffers = stack_module_state([m.model for m in self.members])
        self.skeleton = copy.deepcopy(self.members[0].model).to("meta")
        self.optimizer = make_optimizer(first, self.params.values())
        self.epochs = first.epochs
        self.epoch = 0
        self.init_due = first.fisher.every > 0  # every member's record at initialisation, as `TrialRun`
        for m in self.members:
            m.init_due = False

    def __iter__(self) -> Iterator[list[EpochRecord]]:
        return self

    def __next__(self) -> list[EpochRecord]:
        if self.init_due:
            self.init_due = False
            self._unstack()
            records = [m.initial_record() for m in self.members]
            self._restack()
            return records
        if self.epoch >= self.epochs:
            raise StopIteration
        records = self.run_epoch(self.epoch)
        self.epoch += 1
        return records

    def _loss(self, params, buffers, x, y):
        with self.members[0].autocast():
            logits = functional_call(self.skeleton, (params, buffers), (x,))
            return F.cross_entropy(logits, y), logits

    def train_epoch(self, epoch: int) -> list[tuple[float, float]]:
        """One epoch of every member, stacked: returns each member's (mean loss, accuracy)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.members[0].lr(epoch)
        batched = vmap(self._loss, in_dims=(0, 0, 0, 0), randomness="different")
        streams = [m.train_batches(epoch, m.trial.deficit_active(epoch)) for m in self.members]
        k = len(self.members)
        loss_sum = torch.zeros(k, device=self.device, dtype=torch.float64)
        correct = torch.zeros(k, device=self.device, dtype=torch.int64)
        for batch in zip(*streams):
            x = torch.stack([b[0] for b in batch])
            y = torch.stack([b[1] for b in batch])
            losses, logits = batched(self.params, self.buffers, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members' parameters are disjoint slices: each gets its own gradient
            self.optimizer.step()
            loss_sum += losses.detach().double() * y.shape[1]
            correct += (logits.argmax(-1) == y).sum(1)
        n = len(self.members[0].data.y_train)
        return [(float(s) / n, int(c) / n) for s, c in zip(loss_sum, correct)]

    @torch.no_grad()
    def _unstack(self) -> None:
        for i, m in enumerate(self.members):
            for name, p in m.model.named_parameters():
                p.copy_(self.params[name][i])
            for name, b in m.model.named_buffers():
                b.copy_(self.buffers[name][i])

    @torch.no_grad()
    def _restack(self) -> None:  # the BN refresh changed the members' running statistics
        for i, m in enumerate(self.members):
            for name, b in m.model.named_buffers():
                self.buffers[name][i].copy_(b)

    def run_epoch(self, epoch: int) -> list[EpochRecord]:
        """Train all members one epoch, then evaluate each as `TrialRun.run_epoch` does."""
        start = time.perf_counter()
        results = self.train_epoch(epoch)
        for m, (loss, _) in zip(self.members, results):
            if not math.isfinite(loss):
                raise TrialDiverged(epoch, loss)
        train_s = (time.perf_counter() - start) / len(self.members)
        self._unstack()
        records = []
        for m, (loss, acc) in zip(self.members, results):
            record = m.evaluate_epoch(epoch, loss, acc)
            records.append(dataclasses.replace(record, seconds=record.seconds + train_s))
            m.epoch = epoch + 1
        self._restack()
        return records
