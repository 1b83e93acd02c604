"""Deficits: pure batch transforms applied to training batches during the window [onset, onset + length).

Each deficit is a function `(x, y, ctx, **options) -> (x, y)` over a batch, a built-in below or a user's
plug-in alike: inputs `x` (B, C, H, W) for images or (B, C, L) for 1-D signals, labels `y` (B,), and a
`DeficitContext`: the batch's example indices into the training set, a `torch.Generator` for any
randomness (derived by the trainer from (seed, epoch), so a deficit never touches global RNG state), and
`ctx.fixed(...)` for randomness fixed over the whole trial. Outside the window the trainer does not call it at all:
every deficit is the identity there by construction (`TrialSpec.deficit_active`). Test data stay clean.

| name              | what it does during the window |
|-------------------|--------------------------------|
| none              | nothing (the baseline) |
| blur              | downsample by `factor` and upsample back: images 32 -> 8 -> 32 with antialiased bilinear down- and bilinear upsampling (the paper's cataract); signals average-pooled by `factor` then linearly upsampled |
| vflip             | every input upside down: image rows reversed; 1-D signals reversed along their length |
| label_permutation | a fixed permutation of the class names with no fixed point (every class renamed), from the seed |
| label_shuffle     | labels shuffled across training examples once per trial (random labels) |
| noise             | inputs replaced by i.i.d. N(0, std^2) noise in normalised units, fresh every batch; the paper's "sensory deprivation"; augmentation is off while it is active |
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ..config.registry import Entry, entry
from ..errors import SpecError
from .sampling import derive_seed


def blur(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Downsample by `factor` then upsample back to the input size (removes high spatial frequencies).

    Args:
        x: (B, C, H, W) images or (B, C, L) signals.
        factor: downsampling factor; the low-resolution size is ceil(size / factor).
    """
    if x.dim() == 4:
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(-(-h // factor), -(-w // factor)), mode="bilinear",
                              align_corners=False, antialias=True)
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if x.dim() == 3:
        length = x.shape[-1]
        small = F.avg_pool1d(x, kernel_size=factor, stride=factor, ceil_mode=True)
        return F.interpolate(small, size=length, mode="linear", align_corners=False)
    raise ValueError(f"blur expects (B, C, H, W) or (B, C, L) inputs, got shape {tuple(x.shape)}")


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Reverse the vertical axis of images (rows) or the length of 1-D signals; an involution."""
    return x.flip(-2) if x.dim() == 4 else x.flip(-1)


def noise_like(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """I.i.d. Gaussian noise of x's shape, drawn from `generator` (on the generator's device)."""
    return (torch.randn(x.shape, generator=generator, device=generator.device) * std).to(x.device, x.dtype)


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of range(n) with no fixed point (n >= 2), by rejection."""
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == torch.arange(n)).any()):
            return perm


@dataclass
class DeficitContext:
    """What a deficit receives besides the batch (the third argument of every deficit).

    Attributes:
        idx: (B,) the batch's example indices into the training set.
        generator: this epoch's generator, derived from (seed, epoch), on the CPU (draw there, then move
            to x's device: the same numbers on every device); the epoch's batches draw from it in order,
            so a resumed trial draws the same numbers.
        epoch: the 0-based epoch.
        num_classes: the data set's number of classes.
        y_train: (N,) the training labels.
        seed: the seed of the trial's fixed randomness (`fixed`).
    """
    idx: torch.Tensor
    generator: torch.Generator
    epoch: int
    num_classes: int
    y_train: torch.Tensor
    seed: int
    cache: dict = field(default_factory=dict, repr=False)

    def fixed(self, key: str, make: Callable[[torch.Generator], Any]) -> Any:
        """A value fixed for the whole trial (a permutation of the classes, shuffled labels): `make`
        called once with a CPU generator seeded from the trial and `key` (two keys, two independent
        streams), then kept."""
        return self._fixed(key, make, derive_seed(self.seed, "fixed", key))

    def _fixed(self, key: str, make: Callable[[torch.Generator], Any], seed: int) -> Any:
        if key not in self.cache:
            self.cache[key] = make(torch.Generator().manual_seed(seed))
        return self.cache[key]


def _builtin_fixed(ctx: DeficitContext, key: str, make: Callable[[torch.Generator], Any]) -> Any:
    """`ctx.fixed` for the built-in deficits, each with its one key: seeded with the trial's fixed seed
    itself, as before keys had their own streams, so that their trials keep their results."""
    return ctx._fixed(key, make, ctx.seed)


# -- the built-in deficits: registered in config.registry as "cpsweep.engine.deficits:<function>" -----

def no_deficit(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext) -> tuple[torch.Tensor, torch.Tensor]:
    return x, y


def blur_deficit(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext, factor: int = 4):
    return blur(x, factor), y


def vflip_deficit(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext):
    return vflip(x), y


def label_permutation(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext):
    perm = _builtin_fixed(ctx, "permutation", lambda g: derangement(ctx.num_classes, g).to(y.device))
    return x, perm[y]


def label_shuffle(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext):
    shuffled = _builtin_fixed(ctx, "shuffled", lambda g: ctx.y_train[
        torch.randperm(len(ctx.y_train), generator=g).to(ctx.y_train.device)])
    return x, shuffled[ctx.idx]


def noise(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext, std: float = 1.0):
    return noise_like(x, std, ctx.generator), y


def label_noise(x: torch.Tensor, y: torch.Tensor, ctx: DeficitContext, fraction: float = 0.2):
    """A fixed random `fraction` of the training examples labelled uniformly at random (their label may
    stay the same by chance: 1 / num_classes of them), the others left as they are."""
    def noisy(g: torch.Generator) -> torch.Tensor:
        n = len(ctx.y_train)
        chosen = torch.randperm(n, generator=g)[:round(fraction * n)]
        labels = ctx.y_train.cpu().clone()
        labels[chosen] = torch.randint(ctx.num_classes, (len(chosen),), generator=g)
        return labels.to(ctx.y_train.device)
    return x, _builtin_fixed(ctx, "noisy labels", noisy)[ctx.idx]


class Deficit:
    """A deficit bound to one trial: `deficit(x, y, idx, generator, epoch)` -> (x, y), its output checked;
    a window on the training settings (`acts_on == "training"`) changes an epoch's `TrainingSettings`
    instead (`adjust`)."""

    def __init__(self, entry: Entry, options: Mapping[str, Any], *, y_train: torch.Tensor, num_classes: int,
                 seed: int):
        self.name, self.disables_augment, self.acts_on = entry.name, entry.disables_augment, entry.acts_on
        self.fn, self.options = entry.load(), dict(options)
        self.num_classes, self.y_train, self.seed, self.cache = num_classes, y_train, seed, {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, generator: torch.Generator,
                 epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = DeficitContext(idx, generator, epoch, self.num_classes, self.y_train, self.seed, self.cache)
        out = self.fn(x, y, ctx, **self.options)
        if (not isinstance(out, tuple) or len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out)
                or out[0].shape != x.shape or out[1].shape != y.shape):
            got = (f"shapes {[tuple(t.shape) for t in out]}" if isinstance(out, tuple) and
                   all(isinstance(t, torch.Tensor) for t in out) else f"a {type(out).__name__}")
            raise SpecError("deficit.name", f"{self.name} returned {got}; a deficit returns (x, y) shaped like its "
                                            f"inputs {tuple(x.shape)}, {tuple(y.shape)} (docs/plugins.md)")
        if out[0].dtype != x.dtype or out[1].dtype != y.dtype:  # (the loss refuses float labels, mid-trial)
            raise SpecError("deficit.name", f"{self.name} returned (x, y) of dtypes {out[0].dtype}, {out[1].dtype}; a "
                                            f"deficit returns them with its inputs' dtypes {x.dtype}, {y.dtype} "
                                            f"(labels stay class indices)")
        return out

    def adjust(self, settings: Any) -> None:
        """Change one epoch's `windows.TrainingSettings` (a window on the training settings)."""
        result = self.fn(settings, **self.options)
        if result is not None and result is not settings:
            raise SpecError("deficit.name", f"{self.name} returned a {type(result).__name__}; a training window "
                                            f"changes the settings it is given and returns nothing (docs/plugins.md)")
        for key, ok, wanted in (
                ("batch_size", _whole(settings.batch_size) and settings.batch_size >= 1, "a whole number >= 1"),
                ("lr", _number(settings.lr) and settings.lr >= 0, "a number >= 0"),
                ("weight_decay", _number(settings.weight_decay) and settings.weight_decay >= 0, "a number >= 0"),
                ("augment", isinstance(settings.augment, bool), "True or False")):
            if not ok:
                raise SpecError("deficit.name", f"{self.name} set settings.{key} to {getattr(settings, key)!r}; it "
                                                f"must be {wanted}")


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # (numpy's integers too)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def make_deficit(name: str, options: Mapping[str, Any], *, y_train: torch.Tensor, num_classes: int,
                 seed: int) -> Deficit:
    """Bind a registered deficit (or a plug-in) to a trial.

    Args:
        name: a built-in name (`config.registry.BUILTINS["deficit"]`) or a reference `package.module:function`.
        options: its options; missing ones take their defaults.
        y_train: the training labels (N,), for label_shuffle.
        num_classes: number of classes, for label_permutation.
        seed: seed of the fixed randomness of a trial (the permutation, the shuffled labels).

    Raises:
        SpecError: unknown name or option.
    """
    e = entry("deficit", name)
    return Deficit(e, e.complete(options, "deficit"), y_train=y_train, num_classes=num_classes, seed=seed)
