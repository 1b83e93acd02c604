"""Seeded randomness over a data set: derived seeds, epoch order, augmentation, balanced selections.

All randomness comes from explicitly seeded CPU `torch.Generator`s whose seeds are derived with
`derive_seed` (blake2b over the parts, never Python's salted ``hash``); no global RNG is read or changed.
The order of epoch e is `epoch_order(n, seed, e)`, a function of (seed, e) only; `augment_batch(x, g)`
depends only on x and the state of g; `class_balanced_probe` and `balanced_order` are fixed functions of
the labels and the seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from . import _device


# --------------------------------------------------------------------------------------------------
# Seeds and generators


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from ints and strings, e.g. ``derive_seed(seed, "order", epoch)``.

    blake2b of a length-prefixed, type-tagged encoding of the parts, so it is the same in every process,
    on every machine and Python version (unlike ``hash``), and ``(1, "2")``, ``(12,)`` and ``("1", 2)``
    differ. Ints may be any size or sign (numpy integers are accepted); bools and floats are refused.
    """
    h = hashlib.blake2b(digest_size=8, person=b"cpsweep-seed")
    for part in parts:
        if isinstance(part, str):
            tag, payload = b"s", part.encode("utf-8")
        elif isinstance(part, (bool, np.bool_)) or isinstance(part, float):
            raise TypeError(f"derive_seed takes ints and strings, got {type(part).__name__} {part!r}")
        else:
            try:
                value = operator.index(part)
            except TypeError:
                raise TypeError(f"derive_seed takes ints and strings, got {type(part).__name__} "
                                f"{part!r}") from None
            tag, payload = b"i", str(value).encode("ascii")
        h.update(tag + len(payload).to_bytes(8, "big") + payload)
    return int.from_bytes(h.digest(), "big") >> 1


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh `torch.Generator` on `device` seeded with `seed` (touches no global RNG)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """torch's global generators (the CPU's and `device`'s) seeded with `seed` inside, and restored after.
    cpsweep itself never draws from them; a plug-in model that does (dropout, stochastic depth) then draws
    the same numbers on every run of a trial and after a resume, since the trainer wraps each epoch's
    training and BN refresh in this with a seed from (seed, epoch)."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type="cuda"):
        torch.manual_seed(int(seed))
        yield


def epoch_order(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The order in which epoch `epoch` visits the `n` training examples: a permutation of range(n).

    A pure function of ``(seed, epoch)`` (and `n`): drawn on the CPU from a generator seeded with
    ``derive_seed(seed, "order", epoch)``, then moved to `device` (one copy), so it is the same on every device.
    """
    generator = make_generator(derive_seed(seed, "order", epoch))
    return _device.to_device(torch.randperm(int(n), generator=generator), device)


# --------------------------------------------------------------------------------------------------
# Augmentation


def augment_params(batch_size: int, generator: torch.Generator, pad: int = 4
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random draws of `augment_batch`, on the CPU, in this order from `generator`:

    ``dy`` and ``dx``: int64 (B,), the crop's top-left corner in the padded image, uniform in
    ``[0, 2 * pad]`` (``pad`` means no shift); ``flip``: bool (B,), True with probability 0.5.
    """
    if generator.device.type != "cpu":
        raise ValueError(f"augment_params needs a CPU generator, got one on {generator.device}")
    dy = torch.randint(0, 2 * pad + 1, (batch_size,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch_size,), generator=generator)
    flip = torch.rand(batch_size, generator=generator) < 0.5
    return dy, dx, flip


def epoch_augment_params(batch_sizes: list[int], generator: torch.Generator, device: torch.device | str = "cpu",
                         pad: int = 4) -> torch.Tensor:
    """The draws of a whole epoch's augmentation, moved to `device` with one copy: int64 (3, sum(batch_sizes)),
    rows dy, dx and flip (0 or 1), batch after batch.

    Drawn batch by batch on the CPU exactly as successive `augment_params(size, generator, pad)` calls (the
    same generator, the same order of draws), so batch k's columns equal what `augment_batch` would draw
    for it: the values do not depend on whether an epoch draws them at once or per batch.
    """
    draws = [augment_params(size, generator, pad) for size in batch_sizes]
    if not draws:
        return _device.to_device(torch.zeros((3, 0), dtype=torch.int64), device)
    params = torch.cat([torch.stack([dy, dx, flip.to(torch.int64)]) for dy, dx, flip in draws], dim=1)
    return _device.to_device(params, device)


def apply_augmentation(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
                       pad: int = 4) -> torch.Tensor:
    """Zero-pad each image of `x` (B, C, H, W) by `pad`, crop H x W at (dy, dx), mirror where `flip`.

    Vectorised: one gather over the padded batch. The padding is 0 in the (normalised) units of `x`.
    """
    if x.dim() != 4:
        raise ValueError(f"augmentation needs a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    device = x.device
    dy, dx, flip = dy.to(device), dx.to(device), flip.to(device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The paper's CIFAR train-time augmentation on a batch (B, C, H, W): random H x W crop after
    `pad`-pixel zero padding and a random horizontal flip with probability 0.5, per sample.

    The draws come from `generator` (a CPU generator) as documented in `augment_params`; the same
    generator state gives the same output. Returns a new tensor on ``x.device`` with ``x.dtype``.
    """
    dy, dx, flip = augment_params(x.shape[0], generator, pad)
    return apply_augmentation(x, dy, dx, flip, pad)


# --------------------------------------------------------------------------------------------------
# Class-balanced selections


def _class_ranks(y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """For each position i of `perm`, how many earlier positions hold an example of the same class."""
    yp = y[perm]
    grouped = torch.argsort(yp, stable=True)  # positions grouped by class, each group in perm order
    counts = torch.bincount(yp)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(perm)
    ranks[grouped] = torch.arange(len(perm)) - starts[yp[grouped]]
    return ranks


def _labels_cpu(y: torch.Tensor) -> torch.Tensor:
    y = y.detach().to("cpu", torch.int64)
    if y.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(y.shape)}")
    if len(y) and int(y.min()) < 0:
        raise ValueError("labels must be non-negative")
    return y


def balanced_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """All indices of `y`, shuffled and then interleaved by class (round robin over the classes, the
    class order within each round random), so that every prefix is as class-balanced as the counts allow.

    Drawn from a CPU generator seeded with `seed`; a CPU int64 tensor. `load_dataset(subset=k)` keeps
    the first k (a prefix, so smaller subsets are nested in larger ones).
    """
    y = _labels_cpu(y)
    perm = torch.randperm(len(y), generator=make_generator(seed))
    if len(y) == 0:
        return perm
    ranks = _class_ranks(y, perm)
    return perm[torch.argsort(ranks, stable=True)]


def class_balanced_probe(y: torch.Tensor, per_class: int, seed: int, *,
                         num_classes: int | None = None) -> torch.Tensor:
    """Sorted indices of a fixed class-balanced subset of `y`: `per_class` examples of every class.

    The examples are chosen by a generator seeded with ``derive_seed(seed, "probe")``. The classes are
    those present in `y`, or ``range(num_classes)`` when given. Raises `DataError` if a class has fewer
    than `per_class` examples. Returned on ``y.device``.
    """
    if per_class < 1:
        raise DataError(f"probe: per_class must be at least 1, got {per_class}")
    y_cpu = _labels_cpu(y)
    counts = torch.bincount(y_cpu, minlength=num_classes or 0)
    classes = range(len(counts)) if num_classes is not None else torch.unique(y_cpu).tolist()
    short = {int(c): int(counts[c]) for c in classes if counts[c] < per_class}
    if short:
        detail = ", ".join(f"class {c} has {n}" for c, n in sorted(short.items()))
        raise DataError(f"probe: {per_class} examples per class are needed but {detail}; "
                        f"lower fisher.probe_per_class (or use more training data)")
    perm = torch.randperm(len(y_cpu), generator=make_generator(derive_seed(seed, "probe")))
    chosen = perm[_class_ranks(y_cpu, perm) < per_class]
    return torch.sort(chosen).values.to(y.device)
