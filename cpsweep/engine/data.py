"""Data sets held whole as tensors on the training device.

    data = load_data(trial.data, device)      # the one entry point from a spec: cached per process

`load_data` resolves the spec's data folder (`data.data_dir`, else ``$CPSWEEP_DATA_DIR``, else
``~/.cache/cpsweep``), reads the files (`_readers.py`: CIFAR-10 and MNIST through torchvision,
downloaded when missing; MNIST-1D generated offline) and returns a frozen `Dataset` whose tensors live on
the device, so a training loop only indexes them. The last data set loaded is kept for the next trial of
the same process (Tune reuses its worker processes), so a sweep reads and moves each data set once per
worker; the tensors are never written to, so sharing them is safe. Any failure to find, download or read
a data set is a `DataError` whose one-line message names the data set, the folder and the fix.

Names, kinds, class counts, default augmentation and the reader of each data set come from its entry in
`config.registry.BUILTINS["data"]`. Randomness over a data set (epoch
order, augmentation, balanced selections) lives in `sampling.py`: seeded, never global.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config.registry import BUILTINS
from ..config.registry import entry as registry_entry
from ..config.spec import DataSpec
from ..errors import DataError, SpecError
from . import _device
from ._readers import LOAD_ERRORS, NORMALISATION, load_error, read_plugin
from .sampling import balanced_order, derive_seed


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole data set as tensors on one device.

    Attributes:
        name: registry name (``cifar10``, ``mnist``, ``mnist1d``).
        x_train: the stored inputs: raw uint8 (N, C, H, W) pixels for images (a quarter of float32's
            memory, so data sets stay whole on the device even with several trials per GPU), normalised
            float32 (N, 1, L) for 1-D signals. Models read `inputs(x_train[idx])`.
        y_train: int64 (N,).
        x_test: like ``x_train``.
        y_test: like ``y_train``.
        num_classes: number of classes; labels are in ``range(num_classes)``.
        augment: whether the train-time augmentation (`augment_batch`) applies.
        mean, std: per-channel normalisation of uint8 inputs, in [0, 1] units (None: stored normalised).

    The normalisation's tensors are made once per device and input rank and kept (`normalisation`), so a
    training step builds no constant and makes no host-to-device copy for them.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    _constants: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def normalisation(self, device: torch.device | str, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """`mean` and `std` as float32 tensors shaped (1, C, 1, ...) for inputs of `dim` dimensions, on
        `device`: made (and moved, one copy each) at the first call, the same tensors afterwards."""
        key = (str(torch.device(device)), dim)
        if key not in self._constants:
            shape = (1, -1) + (1,) * (dim - 2)
            self._constants[key] = tuple(_device.to_device(torch.tensor(v, dtype=torch.float32).view(shape), device)
                                         for v in (self.mean, self.std))
        return self._constants[key]

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Stored inputs (a batch or all) as the float32 the models read: uint8 pixels / 255, minus the
        channel mean, over the channel std, on the tensors' device; float inputs unchanged."""
        if x.dtype != torch.uint8:
            return x
        mean, std = self.normalisation(x.device, x.dim())
        return x.to(torch.float32).div_(255.0).sub_(mean).div_(std)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (3, 32, 32) or (1, 40)."""
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def _select(x: torch.Tensor, y: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if k >= len(y):
        return x, y
    keep = torch.sort(balanced_order(y, seed)[:k]).values
    return x[keep], y[keep]


def subset_labels(name: str, y_train: torch.Tensor, subset: int | None) -> torch.Tensor:
    """The training labels that `load_dataset(name, subset=subset)` keeps of the whole set's `y_train`
    (the same selection, without touching the inputs)."""
    return y_train if subset is None else _select(y_train, y_train, subset, derive_seed("subset", name, "train"))[1]


def load_dataset(name: str, *, data_dir: str | os.PathLike, device: torch.device | str = "cpu",
                 subset: int | None = None, augment: bool | None = None,
                 options: dict | None = None) -> Dataset:
    """Load data set `name` whole onto `device`.

    Args:
        name: a registry name (`config.registry.BUILTINS["data"]`).
        data_dir: where the files are, or are downloaded / generated to (created if needed).
        device: where the tensors go.
        subset: keep only this many training examples, a fixed class-balanced random selection (the
            first `subset` of ``balanced_order(y_train, derive_seed("subset", name, "train"))``, kept in
            their original order; smaller subsets are nested in larger ones); the test set is cut the same
            way to at most `subset` examples. None, or more than the set holds, keeps everything.
        augment: whether train-time augmentation applies; None takes the data set's default (True only
            for cifar10). Only image data sets can be augmented.
        options: a plug-in data set's options (`data_section`).

    Raises:
        DataError: unknown name, files missing and not downloadable, unreadable data, bad arguments.
    """
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise DataError(f"{name}: subset must be a positive number of examples or None, got {subset!r}")
    data_dir = Path(os.path.expanduser(os.fspath(data_dir)))
    entry = BUILTINS["data"].get(name) if isinstance(name, str) else None
    if entry is not None:
        info, reader = entry.data, entry.load()
        try:
            x_train, y_train, x_test, y_test = reader.read(data_dir)
        except DataError:
            raise
        except LOAD_ERRORS as exc:
            raise load_error(name, data_dir, exc, reader) from exc
    else:  # a plug-in (`package.module:function`), or an unknown name
        try:
            entry = registry_entry("data", name)
        except SpecError as e:
            raise DataError(e.message) from None
        x_train, y_train, x_test, y_test, info = read_plugin(entry, data_dir, options or {})
    augment = info.default_augment if augment is None else bool(augment)
    if augment and info.kind != "image":
        raise DataError(f"{name}: augmentation (random crop and flip) is only defined for images; "
                        f"turn it off for {info.kind} data")

    if subset is not None:
        x_train, y_train = _select(x_train, y_train, subset, derive_seed("subset", name, "train"))
        x_test, y_test = _select(x_test, y_test, subset, derive_seed("subset", name, "test"))
    mean, std = NORMALISATION.get(name, (None, None))
    return Dataset(name=name, x_train=x_train.to(device), y_train=y_train.to(device),
                   x_test=x_test.to(device), y_test=y_test.to(device),
                   num_classes=info.num_classes, augment=augment, mean=mean, std=std)


def resolve_data_dir(data_dir: str | None) -> str:
    """The folder data sets live in: `data_dir`, else $CPSWEEP_DATA_DIR, else ~/.cache/cpsweep."""
    if data_dir:
        return os.path.expanduser(data_dir)
    return os.environ.get("CPSWEEP_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "cpsweep")


_CACHE: dict[tuple, Dataset] = {}


def load_data(spec: DataSpec, device: torch.device | str = "cpu") -> Dataset:
    """The data set of a spec's `data` section on `device`: `load_dataset` with the spec's settings, kept
    for the next call with the same settings in this process (one data set at a time).

    Raises:
        DataError: as `load_dataset`.
    """
    key = (spec.name, resolve_data_dir(spec.data_dir), spec.subset, spec.augment, repr(sorted(spec.options.items())),
           spec.plugin, str(torch.device(device)))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_dataset(spec.name, data_dir=key[1], device=device, subset=spec.subset,
                                   augment=spec.augment, options=spec.options)
    return _CACHE[key]
