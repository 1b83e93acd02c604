"""A dry run of a sweep's plug-ins on the driver, before Ray starts or anything is written.

Parsing a sweep checks a plug-in's reference and options against its signature; only calling it shows
whether it returns the right kind of thing. `check_plugins(trials)` builds each plug-in model once for its
data set's input shape (from the registry, without loading a built-in data set; a plug-in data set is
loaded) and runs a batch of two zero inputs through it, and calls each plug-in deficit once on such a
batch (with a plug-in data set, the built-in model and deficit too): a wrong return value, a wrong output
shape or an exception of the user's code is one `SpecError` naming the field, instead of a failed trial
on some node later. Built-ins are not dry-run (their tests cover them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..config.registry import DataSetInfo, entry
from ..config.spec import TrialSpec
from ..errors import CpsweepError, SpecError
from .data import load_data
from .deficits import Deficit
from .models import instantiate
from .windows import TrainingSettings

BATCH = 2  # inputs of the dry run (BatchNorm needs two in training mode)


def check_plugins(trials: Sequence[TrialSpec]) -> int:
    """Dry-run every distinct plug-in (model per data set, deficit per data set) of `trials`; returns how
    many ran.

    Raises:
        SpecError: naming `model.name` or `deficit.name`, what went wrong, and the fix.
    """
    seen: set[tuple[str, str, str]] = set()
    for t in trials:
        info = entry("data", t.data.name).data or _plugin_info(t)
        for kind, c in (("model", t.model), ("deficit", t.deficit)):
            key = (kind, repr(c), repr(t.data))
            if not (c.plugin or t.data.plugin) or key in seen or (kind == "deficit" and t.is_baseline):
                continue
            seen.add(key)
            try:
                _dry_model(t, info) if kind == "model" else _dry_deficit(t, info)
            except CpsweepError:
                raise
            except Exception as e:  # noqa: BLE001 - the user's code: any exception is reported in one line
                detail = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                raise SpecError(f"{kind}.name", f"{c.name} failed on a dry run with a batch of {BATCH} inputs of "
                                                f"shape {info.shape} ({t.data.name}): {detail}; fix the "
                                                f"{kind} (docs/plugins.md)") from None
    return len(seen)


def _plugin_info(t: TrialSpec) -> DataSetInfo:
    """A plug-in data set's kind, classes and input shape: from the data set itself (loaded once here)."""
    data = load_data(t.data)
    return DataSetInfo("any", data.num_classes, False, data.input_shape)


def _dry_model(t: TrialSpec, info) -> None:
    model = instantiate(entry("model", t.model.name), t.model.options, info.shape, info.num_classes, seed=0)
    model.train()
    out = model(torch.zeros(BATCH, *info.shape))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, info.num_classes):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise SpecError("model.name", f"{t.model.name} returned {got} for a batch of {BATCH} inputs of shape "
                                      f"{info.shape}; a model returns logits of shape (batch, num_classes) = "
                                      f"({BATCH}, {info.num_classes})")
    if not any(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters()):
        raise SpecError("model.name", f"{t.model.name} has no trainable parameters; register its layers as "
                                      f"attributes of the module")


IGNORED = -100  # the label torch's cross-entropy ignores (its ignore_index)


def _dry_deficit(t: TrialSpec, info) -> None:
    y_train = torch.arange(BATCH) % info.num_classes
    deficit = Deficit(entry("deficit", t.deficit.name), t.deficit.options, y_train=y_train,
                      num_classes=info.num_classes, seed=0)
    if deficit.acts_on == "training":  # a window on the training settings: given an epoch's, as a trial does
        weight = nn.Parameter(torch.zeros(1))
        settings = TrainingSettings(0, t.optim.lr, t.optim.weight_decay, t.optim.batch_size, True,
                                    torch.optim.SGD([weight], lr=t.optim.lr), torch.Generator().manual_seed(0))
        deficit.adjust(settings)
        loss = settings.loss(torch.zeros(BATCH, info.num_classes, requires_grad=True), y_train)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else f"a {type(loss).__name__}"
            raise SpecError("deficit.name", f"{t.deficit.name} set a loss that returned {got}; a loss returns one "
                                            f"scalar tensor for (logits, labels) (docs/plugins.md)")
        return
    _, y = deficit(torch.zeros(BATCH, *info.shape), y_train.clone(), torch.arange(BATCH),
                   torch.Generator().manual_seed(0), 0)
    y = y[y != IGNORED]  # (labels the loss ignores, cross-entropy's ignore_index)
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < info.num_classes:  # (a trial checks no batch: a sync)
        raise SpecError("deficit.name", f"{t.deficit.name} returned labels from {int(y.min())} to {int(y.max())}; "
                                        f"labels are class indices 0 to {info.num_classes - 1} (or {IGNORED}, "
                                        f"ignored by the loss)")
