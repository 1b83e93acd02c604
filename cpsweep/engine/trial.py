"""Train one deficit-window trial: an iterator of per-epoch records (never imports ray).

    run = train_trial(trial, "cpu")            # or resume=load_state_file(path)
    for record in run:                         # one EpochRecord per epoch
        save_state_file(run.state_dict(), path)

A `TrialRun` is built in named steps (data, model, memory layout and compilation, optimiser, deficit,
Fisher probe, layer table, resume) and runs an epoch as steps other engines reuse (the benchmarks, their
vmapped packs in `benchmarks/packed_run.py`): `train_batches` (the epoch's prepared batches), `train_epoch`,
`evaluate_epoch` (BN refresh, test, Fisher), `lr`, `autocast`.

Each epoch: train on the shuffled training set (order from (seed, epoch)), with the deficit applied to
every batch while the epoch is in [onset, onset + length); re-estimate BatchNorm statistics on clean
training data (as the authors do before testing); evaluate on the clean test set; measure the trace of
the Fisher Information on a fixed class-balanced probe set of clean training examples. When the Fisher
is on, a fresh (not resumed) run first yields a record at initialisation: epoch -1, before any training
step (BN refresh, test, Fisher; train loss and accuracy NaN, lr 0), so "the trace rises" can be tested
against the untrained network. It does not change training: every BN refresh starts from reset
statistics. All randomness
(initialisation, data order, augmentation, deficit noise, sampled Fisher labels, variational Fisher
noise) derives from
(seed, purpose, epoch), drawn on the CPU on every device, so a trial resumed from its epoch-k checkpoint
reproduces the uninterrupted run exactly (bit for bit on CPU, and on a GPU with engine.deterministic:
`numerics.py`). A non-finite training loss raises `TrialDiverged`.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import replace
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config.spec import TrialSpec
from ..config.views import checkpoint_identity
from ..config.timeline import fisher_due, trial_lr
from ..errors import CpsweepError, TrialDiverged
from ..storage.records import EpochRecord
from .trial_state import load_state_file
from .data import Dataset, load_data
from ..config.registry import Entry, entry
from ..config.spec import Component
from ..errors import SpecError
from .deficits import Deficit
from .fisher import fisher_trace
from .metrics import MetricContext, bind, measure
from .models import instantiate
from .numerics import numerics_label, set_numerics
from .sampling import (apply_augmentation, class_balanced_probe, derive_seed, epoch_augment_params, epoch_order,
                       make_generator, seeded_global_rng)
from .windows import TrainingSettings

EVAL_BATCH = 1000  # examples per forward pass when evaluating (no gradients)
INIT_EPOCH = -1    # the record at initialisation, before any training step


def make_optimizer(trial: TrialSpec, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The trial's optimiser over `params` (a model's parameters, or a pack's stacked ones)."""
    o = trial.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


class TrialRun:
    """Iterator over a trial's EpochRecords; `state_dict()` after a record is its checkpoint."""

    def __init__(self, trial: TrialSpec, device: torch.device | str, resume: dict | str | None = None,
                 data: Dataset | None = None):
        self.trial = trial
        self.device = torch.device(device)
        set_numerics(trial.engine, self.device)  # TF32 and determinism, before anything computes
        self.data = data if data is not None else load_data(trial.data, self.device)
        self.model = self._build_model()
        self.forward = self._forward_pass()
        self.optimizer = make_optimizer(trial, self.model.parameters())
        # the spec's hyper-parameters of each param group, put back at every epoch's start (`epoch_settings`)
        self.spec_groups = [copy.deepcopy({k: v for k, v in g.items() if k != "params"})
                            for g in self.optimizer.param_groups]
        self.deficit = self._bind_deficit()
        self.probe = self._fisher_probe() if trial.fisher.every > 0 else None  # (no Fisher: no probe needed)
        self.layer_params, self.layer_kinds = self._layer_table()
        self.metrics = [bind(m, lambda c: component_entry(c, "metric").load()) for m in trial.metrics]
        self.epoch = 0  # next epoch to run
        self.init_due = resume is None and trial.fisher.every > 0  # the record at initialisation (epoch -1)
        if resume is not None:
            self.load_state_dict(load_state_file(resume) if isinstance(resume, (str, os.PathLike)) else resume)

    # -- construction steps --------------------------------------------------------------------------
    @property
    def numerics(self) -> str:
        """How its arithmetic runs (trials.parquet's `numerics`, `engine/numerics.py`), e.g. "cpu fp32 1 thread"."""
        return numerics_label(self.trial.engine, self.device)

    @property
    def channels_last(self) -> bool:
        """NHWC memory layout: asked for (engine.channels_last) and meaningful (2-D images only)."""
        return self.trial.engine.channels_last and self.data.x_train.dim() == 4

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of engine.precision (None: plain fp32)."""
        return torch.bfloat16 if self.trial.engine.precision == "bf16" else None

    def _build_model(self) -> nn.Module:
        """The trial's model, initialised from its seed, on the device, in its memory layout."""
        t = self.trial
        model = instantiate(component_entry(t.model, "model"), t.model.options, self.data.input_shape,
                            self.data.num_classes, seed=derive_seed(t.seed, "init")).to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def _forward_pass(self) -> nn.Module:
        """What training and testing call: the model, compiled when asked (the BN refresh and the Fisher run
        the plain model). Compiled with static shapes (``dynamic=False``): every training batch has the
        same size under compile (`batches` drops the partial last one) and test chunks are padded to one
        size (`evaluate`), so a trial compiles a graph for training and one for testing in its first epoch
        and nothing after (tests/test_host_device.py counts the graphs)."""
        return torch.compile(self.model, dynamic=False) if self.trial.engine.compile else self.model

    def _bind_deficit(self) -> Deficit:
        d, t = self.data, self.trial
        return Deficit(component_entry(t.deficit, "deficit"), t.deficit.options, y_train=d.y_train,
                       num_classes=d.num_classes, seed=derive_seed(t.seed, "deficit"))

    def _fisher_probe(self) -> torch.Tensor:
        """Indices of the fixed, class-balanced clean training examples the Fisher is measured on."""
        return class_balanced_probe(self.data.y_train, self.trial.fisher.probe_per_class, self.trial.seed,
                                    num_classes=self.data.num_classes)

    def _layer_table(self) -> tuple[dict[str, int], dict[str, str]]:
        """Per module: its own trainable parameters, and its class name (for the per-layer Fisher)."""
        modules = dict(self.model.named_modules())
        params = {name: sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad)
                  for name, m in modules.items()}
        return params, {name: type(m).__name__ for name, m in modules.items()}

    # -- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"trial": self.trial.to_dict(), "epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint of this trial (the fields whose role is identity must match)."""
        stored = state.get("trial")
        stored = stored if isinstance(stored, dict) else {}
        if checkpoint_identity(stored, type(self.trial)) != checkpoint_identity(self.trial):
            raise CpsweepError(f"checkpoint belongs to another trial ({stored.get('sweep')}/... epoch "
                               f"{state.get('epoch')}), not {self.trial.trial_id}; remove it to start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])

    # -- the epoch loop ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[EpochRecord]:
        return self

    def __next__(self) -> EpochRecord:
        if self.init_due:
            self.init_due = False
            return self.initial_record()
        if self.epoch >= self.trial.epochs:
            raise StopIteration
        record = self.run_epoch(self.epoch)
        self.epoch += 1
        return record

    def lr(self, epoch: int) -> float:
        return trial_lr(self.trial, epoch)

    def initial_record(self) -> EpochRecord:
        """The untrained network measured like a trained epoch: epoch -1, lr 0, no training loss."""
        record = self.evaluate_epoch(INIT_EPOCH, float("nan"), float("nan"))
        return replace(record, lr=0.0, deficit_active=False)

    def epoch_settings(self, epoch: int, active: bool) -> TrainingSettings:
        """How epoch `epoch` trains: the spec's settings, changed by a training window while it is on. The
        optimiser's param groups get the spec's hyper-parameters back first, so that nothing a window set in
        them (momentum, betas) outlives it (the optimiser's state, e.g. its momentum buffers, does)."""
        t = self.trial
        for group, spec in zip(self.optimizer.param_groups, self.spec_groups):
            group.update(copy.deepcopy(spec))
        settings = TrainingSettings(epoch, self.lr(epoch), t.optim.weight_decay, t.optim.batch_size,
                                    self.data.augment and not (active and self.deficit.disables_augment),
                                    self.optimizer, make_generator(derive_seed(t.seed, "window", epoch)))
        if active and self.deficit.acts_on == "training":
            self.deficit.adjust(settings)
        return settings

    def run_epoch(self, epoch: int) -> EpochRecord:
        start = time.perf_counter()
        settings = self.epoch_settings(epoch, self.trial.deficit_active(epoch))
        for group in self.optimizer.param_groups:  # set every epoch: nothing a window changed carries over
            group["lr"], group["weight_decay"] = settings.lr, settings.weight_decay
        train_loss, train_acc = self.train_epoch(epoch, self.trial.deficit_active(epoch), settings)
        if not math.isfinite(train_loss):
            raise TrialDiverged(epoch, train_loss)
        record = self.evaluate_epoch(epoch, train_loss, train_acc)
        return replace(record, lr=settings.lr, seconds=time.perf_counter() - start)

    def evaluate_epoch(self, epoch: int, train_loss: float, train_acc: float) -> EpochRecord:
        """After training epoch `epoch`: refresh BN statistics, test, measure the Fisher; the record
        (`seconds` covers this part only)."""
        t, d = self.trial, self.data
        start = time.perf_counter()
        self.refresh_bn(epoch)
        test_loss, test_acc = self.evaluate(d.x_test, d.y_test)
        fisher_start = time.perf_counter()
        total, layers = float("nan"), {}
        if epoch == INIT_EPOCH or fisher_due(t, epoch):
            method = t.fisher.method
            ft = fisher_trace(self.model, d.inputs(d.x_train[self.probe]), method=method,
                              labels=d.y_train[self.probe] if method in ("empirical", "variational") else None,
                              samples=t.fisher.samples, backend=t.fisher.backend,
                              generator=make_generator(derive_seed(t.seed, "fisher", epoch))  # (on the CPU)
                              if method in ("sampled", "variational") else None,
                              **({"beta": t.fisher.beta, "steps": t.fisher.steps} if method == "variational" else {}))
            total, layers = ft.total, ft.per_layer
            values = measure(self.metrics, self.model, d,
                             MetricContext(epoch, self.device, make_generator(derive_seed(t.seed, "metric", epoch)),
                                           self.autocast))  # (a CPU generator, as every draw of a trial)
        else:
            values = {m.column: float("nan") for m in self.metrics}
        end = time.perf_counter()
        params = {name: self.layer_params[name] for name in layers}
        kinds = {name: self.layer_kinds[name] for name in layers}
        return EpochRecord(t.trial_id, epoch, self.lr(epoch), t.deficit_active(epoch), train_loss, train_acc,
                           test_loss, test_acc, total, layers, params, kinds, seconds=end - start,
                           fisher_seconds=end - fisher_start, metrics=values)

    def autocast(self):
        """bf16 autocast when the spec asks for it (engine.precision), else a no-op."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory layout."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batches(self, epoch: int, purpose: str, batch_size: int | None = None, drop_last: bool = False
                ) -> Iterator[torch.Tensor]:
        """Index batches of the training set in the order of (seed, purpose, epoch); a last batch of
        one example is dropped (BatchNorm cannot train on it), a partial last batch too with `drop_last`
        (unless it is the only one)."""
        n, bs = len(self.data.y_train), batch_size or self.trial.optim.batch_size
        seed = self.trial.seed if purpose == "train" else derive_seed(self.trial.seed, purpose)
        order = epoch_order(n, seed, epoch, self.device)
        for i in range(0, n, bs):
            if i == 0 or (n - i >= 2 and not (drop_last and n - i < bs)):
                yield order[i:i + bs]

    def train_batches(self, epoch: int, active: bool, settings: TrainingSettings | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's training batches (inputs, labels): shuffled by (seed, epoch), augmented, and given
        the deficit when `active`, all as batched tensor operations on the device. The augmentation's
        draws for the whole epoch are made first and moved to the device with one copy
        (`epoch_augment_params`: the same values as drawing them batch by batch). Under engine.compile
        the partial last batch is dropped (one batch shape, no recompile; the epoch trains on the
        remaining examples)."""
        t, d = self.trial, self.data
        settings = settings or self.epoch_settings(epoch, active)
        deficit_gen = make_generator(derive_seed(t.seed, "deficit", epoch))  # draws on the CPU, copied
        batches = list(self.batches(epoch, "train", settings.batch_size, drop_last=t.engine.compile))
        sizes = [len(idx) for idx in batches]
        if settings.augment:
            params = epoch_augment_params(sizes, make_generator(derive_seed(t.seed, "augment", epoch)), self.device)
        start = 0
        for idx, size in zip(batches, sizes):
            x, y = d.inputs(d.x_train[idx]), d.y_train[idx]
            if settings.augment:
                dy, dx, flip = params[:, start:start + size]
                x = apply_augmentation(x, dy, dx, flip.bool())
            start += size
            if active and self.deficit.acts_on == "batch":
                x, y = self.deficit(x, y, idx, deficit_gen, epoch)
            yield self.layout(x), y

    def train_epoch(self, epoch: int, active: bool, settings: TrainingSettings | None = None) -> tuple[float, float]:
        with seeded_global_rng(derive_seed(self.trial.seed, "global", epoch), self.device):
            return self._train_epoch(epoch, active, settings)

    def _train_epoch(self, epoch: int, active: bool, settings: TrainingSettings | None) -> tuple[float, float]:
        """The epoch's training steps; mean loss and accuracy over the examples trained."""
        self.model.train()
        settings = settings or self.epoch_settings(epoch, active)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        for x, y in self.train_batches(epoch, active, settings):
            with self.autocast():
                logits = self.forward(x)
                loss = settings.loss(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        return float(loss_sum) / seen, int(correct) / seen  # over the examples trained (a dropped batch not)

    @torch.no_grad()
    def refresh_bn(self, epoch: int) -> None:
        """Re-estimate BatchNorm running statistics on clean, unaugmented training batches, with the plain
        model also under engine.compile (its cumulative average reads a counter on the host, a graph break,
        and its mode is neither training's nor testing's: compiling it would only add graphs)."""
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns or self.trial.bn_refresh == 0:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the refresh batches
        self.model.train()
        with seeded_global_rng(derive_seed(self.trial.seed, "bn-global", epoch), self.device):
            for i, idx in enumerate(self.batches(epoch, "bn")):
                if self.trial.bn_refresh != -1 and i >= self.trial.bn_refresh:
                    break
                with self.autocast():
                    self.model(self.layout(self.data.inputs(self.data.x_train[idx])))
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy on (x, y) in chunks of EVAL_BATCH, summed on the device and read back once.
        Under engine.compile a partial last chunk is padded with zeros to the first chunk's size and the
        padding's outputs are ignored (eval mode: examples do not mix), so testing has one shape."""
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        size = min(EVAL_BATCH, len(y))
        for i in range(0, len(y), EVAL_BATCH):
            xb, yb = self.data.inputs(x[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH]
            if self.trial.engine.compile and len(yb) < size:
                xb = torch.cat([xb, xb.new_zeros((size - len(yb),) + xb.shape[1:])])
            with self.autocast():
                logits = self.forward(self.layout(xb))[:len(yb)].float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
        return float(loss_sum) / len(y), int(correct) / len(y)


def component_entry(c: Component, kind: str) -> Entry:
    """The registry entry of a spec's model or deficit; a plug-in's code here must be the code the sweep
    was planned with (its source identity), or the trial would silently train something else."""
    e = entry(kind, c.name)
    if c.plugin and e.plugin != c.plugin:
        raise SpecError(f"{kind}.name", f"the code of {c.name} here ({e.plugin.rpartition('@')[2]}) is not the code "
                                        f"the sweep was launched with ({c.plugin.rpartition('@')[2]}); ship the "
                                        f"same version to every node (docs/plugins.md)")
    return e


def train_trial(trial: TrialSpec, device: torch.device | str = "cpu", resume: dict | str | None = None,
                data: Dataset | None = None) -> TrialRun:
    """Start (or resume) a trial; iterate the result for its EpochRecords.

    Args:
        trial: the resolved trial.
        device: where the data, the model and all computation live.
        resume: a checkpoint (a state dict from `TrialRun.state_dict()` or a path saved by
            `save_state_file`); training continues at the epoch after the one it was taken at.
        data: an already loaded data set (shared by trials in one process); loaded from the spec if None.

    Raises:
        TrialDiverged: (while iterating) the training loss became non-finite.
        DataError, SpecError: the data set or model cannot be built.
    """
    return TrialRun(trial, device, resume, data)
