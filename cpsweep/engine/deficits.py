"""Deficits: pure batch transforms applied to training batches during the window [onset, onset + length).

Each deficit is a function `(x, y, idx, generator) -> (x, y)` over a batch: inputs `x` (B, C, H, W) for
images or (B, C, L) for 1-D signals, labels `y` (B,), the batch's example indices `idx` (B,) into the
training set, and a `torch.Generator` for any randomness (derived by the trainer from (seed, epoch), so
a deficit never touches global RNG state). Outside the window the trainer does not call it at all:
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

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..config.registry import deficit_options

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


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


@dataclass(frozen=True)
class Deficit:
    """A deficit bound to one trial's data and seed."""
    name: str
    transform: Transform
    disables_augment: bool = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(x, y, idx, generator)


def _none(opts, y_train, num_classes, fixed):
    return Deficit("none", lambda x, y, idx, g: (x, y))


def _blur(opts, y_train, num_classes, fixed):
    return Deficit("blur", lambda x, y, idx, g: (blur(x, opts["factor"]), y))


def _vflip(opts, y_train, num_classes, fixed):
    return Deficit("vflip", lambda x, y, idx, g: (vflip(x), y))


def _label_permutation(opts, y_train, num_classes, fixed):
    perm = derangement(num_classes, fixed).to(y_train.device)
    return Deficit("label_permutation", lambda x, y, idx, g: (x, perm[y]))


def _label_shuffle(opts, y_train, num_classes, fixed):
    shuffled = y_train[torch.randperm(len(y_train), generator=fixed).to(y_train.device)]
    return Deficit("label_shuffle", lambda x, y, idx, g: (x, shuffled[idx]))


def _noise(opts, y_train, num_classes, fixed):
    return Deficit("noise", lambda x, y, idx, g: (noise_like(x, opts["std"], g), y), disables_augment=True)


# name -> builder(options, y_train, num_classes, fixed generator); names and options: config.registry
BUILDERS: dict[str, Callable[..., Deficit]] = {
    "none": _none, "blur": _blur, "vflip": _vflip, "label_permutation": _label_permutation,
    "label_shuffle": _label_shuffle, "noise": _noise}


def make_deficit(name: str, options: dict, *, y_train: torch.Tensor, num_classes: int, seed: int) -> Deficit:
    """Bind a registered deficit to a trial.

    Args:
        name: a deficit name (`config.registry.DEFICIT_OPTIONS`).
        options: its options; missing ones take their defaults.
        y_train: the training labels (N,), for label_shuffle.
        num_classes: number of classes, for label_permutation.
        seed: seed of the fixed randomness of a trial (the permutation, the shuffled labels).

    Raises:
        SpecError: unknown name or option.
    """
    opts = deficit_options(name, options)
    return BUILDERS[name](opts, y_train, num_classes, torch.Generator().manual_seed(seed))
