"""Data sets held whole as tensors on the training device, and the seeded randomness that reads them.

Registry
--------
`DATASETS` maps a name to a `DatasetSpec` (kind, number of classes, default augmentation, loader):

* ``cifar10``: torchvision's CIFAR-10 (50,000 / 10,000 RGB 32x32 images), normalised per channel with
  mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010). The paper's train-time augmentation
  (`augment_batch`: 4-pixel zero padding, random 32x32 crop, random horizontal flip) is on by default.
* ``mnist``: torchvision's MNIST (60,000 / 10,000 grey 28x28 images), zero-padded to 32x32 as in the
  paper (the padding is black, i.e. raw 0, so after normalisation it equals a black pixel), then
  normalised with mean 0.1307, std 0.3081. No augmentation by default.
* ``mnist1d``: MNIST-1D (4,000 / 1,000 signals of length 40, shape (N, 1, 40)), generated offline by the
  ``mnist1d`` package with its default arguments (seed 42) and cached as ``mnist1d.npz`` in the data
  directory; standardised with the training set's global mean and std. No augmentation by default.

`load_dataset` returns a frozen `Dataset` whose tensors live on the requested device, so a training
loop only indexes them. CIFAR-10 and MNIST are downloaded by torchvision into ``data_dir`` when they are
missing; downloads and cache writes happen under a file lock in ``data_dir``, so parallel trials on one
node do not race. Any failure to find, download or read a data set is a `DataError` whose one-line
message names the data set, the directory and the fix.

Determinism contract
--------------------
All randomness here comes from explicitly seeded CPU `torch.Generator`s whose seeds are derived with
`derive_seed` (blake2b over the parts, never Python's salted ``hash``); no global RNG (torch, numpy,
``random``) is read or changed. Consequently:

* the order in which epoch ``e`` visits the training set is ``epoch_order(n, seed, e)``, a function of
  ``(seed, e)`` only: it does not depend on what ran before (resuming at epoch ``e`` or running epoch
  ``e`` of another trial with the same seed gives the same order), nor on the device;
* ``augment_batch(x, g)`` depends only on ``x`` and the state of ``g`` (callers derive ``g``'s seed
  from the trial seed, the epoch and the batch index);
* the ``subset`` selection and `class_balanced_probe` are fixed functions of the labels and the seed.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import pickle
import random
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from cpsweep.errors import DataError

from .sampling import (apply_augmentation, augment_batch, augment_params, balanced_order,  # noqa: F401
                       class_balanced_probe, derive_seed, epoch_order, make_generator)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "MNIST_MEAN",
    "MNIST_STD",
    "augment_batch",
    "augment_params",
    "apply_augmentation",
    "balanced_order",
    "class_balanced_probe",
    "derive_seed",
    "epoch_order",
    "get_dataset_names",
    "load_dataset",
    "make_generator",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
NORMALISATION = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "mnist": ((MNIST_MEAN,), (MNIST_STD,))}
MNIST_PAD = 2  # 28 -> 32 on each axis
MNIST1D_CACHE = "mnist1d.npz"

# What a torchvision data set's constructor raises when files are missing, corrupt or cannot be
# downloaded: URLError/HTTPError/socket errors/permission problems are OSErrors; torchvision raises
# RuntimeError for failed checksums and failed MNIST mirrors; truncated pickles and archives raise the
# rest (its IDX reader even uses `assert`).
_LOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, KeyError, IndexError, TypeError,
                AssertionError, pickle.UnpicklingError, tarfile.TarError)


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

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Stored inputs (a batch or all) as the float32 the models read: uint8 pixels / 255, minus the
        channel mean, over the channel std, on the tensors' device; float inputs unchanged."""
        if x.dtype != torch.uint8:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(shape)
        return x.to(torch.float32).div_(255.0).sub_(mean).div_(std)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (3, 32, 32) or (1, 40)."""
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x_train.device


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry.

    Attributes:
        name: registry name.
        kind: ``image`` (N, C, H, W) or ``signal`` (N, 1, L).
        num_classes: number of classes.
        default_augment: whether `augment_batch` applies unless `load_dataset` is told otherwise.
        loader: ``loader(data_dir) -> (x_train, y_train, x_test, y_test)``, CPU tensors, normalised.
        fix: what to tell the user when the files cannot be found or downloaded (``{data_dir}`` is
            filled in).
    """

    name: str
    kind: str
    num_classes: int
    default_augment: bool
    loader: Callable[[Path], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    fix: str


# --------------------------------------------------------------------------------------------------
# Loading


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_error(spec: DatasetSpec, data_dir: Path, exc: BaseException) -> DataError:
    cause = _one_line(f"{type(exc).__name__}: {exc}")
    return DataError(f"cannot load data set {spec.name} from data_dir {data_dir} ({cause}); "
                     + spec.fix.format(data_dir=data_dir))


@contextlib.contextmanager
def _data_lock(data_dir: Path, name: str) -> Iterator[None]:
    """Hold ``<data_dir>/<name>.lock`` (creating data_dir) so parallel trials on one node do not race.

    If the lock file cannot be created (a read-only, pre-filled data_dir, or not a directory at all),
    nothing can be written there either, so we go on without the lock: reading is safe, and a needed
    download fails on its own with a proper error. (filelock would otherwise retry forever.)
    """
    import filelock

    lock_path = data_dir / f"{name}.lock"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a"):
            pass
        writable = True
    except OSError:
        writable = False
    if not writable:
        yield
        return
    with filelock.FileLock(str(lock_path)):
        yield


def _cifar_to_tensor(data: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> uint8 (N, 3, 32, 32); `Dataset.inputs` normalises batches."""
    if data.ndim != 4 or data.shape[1:] != (32, 32, 3) or data.dtype != np.uint8:
        raise ValueError(f"CIFAR-10 images should be uint8 (N, 32, 32, 3), got {data.dtype} {data.shape}")
    return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))


def _check_labels(y: torch.Tensor, n: int, num_classes: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(y).to(torch.int64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{what}: {n} inputs but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{what}: labels outside 0..{num_classes - 1}")
    return y


def _load_cifar10(data_dir: Path):
    from torchvision.datasets import CIFAR10

    with _data_lock(data_dir, "cifar10"):
        # download=True checks all six batches' md5 and downloads only if one is missing or wrong;
        # the test split is then known to be there (each check reads the whole ~180 MB once).
        train = CIFAR10(root=str(data_dir), train=True, download=True)
        test = CIFAR10(root=str(data_dir), train=False, download=False)
    x_train, x_test = _cifar_to_tensor(train.data), _cifar_to_tensor(test.data)
    return (x_train, _check_labels(torch.tensor(train.targets), len(x_train), 10, "cifar10 train"),
            x_test, _check_labels(torch.tensor(test.targets), len(x_test), 10, "cifar10 test"))


def _mnist_to_tensor(data: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> uint8 (N, 1, 32, 32) with black (0) padding; `Dataset.inputs` normalises."""
    if data.dim() != 3 or tuple(data.shape[1:]) != (28, 28) or data.dtype != torch.uint8:
        raise ValueError(f"MNIST images should be uint8 (N, 28, 28), got {data.dtype} {tuple(data.shape)}")
    return F.pad(data.unsqueeze(1), (MNIST_PAD,) * 4, value=0)


def _load_mnist(data_dir: Path):
    from torchvision.datasets import MNIST

    with _data_lock(data_dir, "mnist"):
        train = MNIST(root=str(data_dir), train=True, download=True)  # fetches both splits if missing
        test = MNIST(root=str(data_dir), train=False, download=False)
    x_train, x_test = _mnist_to_tensor(train.data), _mnist_to_tensor(test.data)
    return (x_train, _check_labels(train.targets, len(x_train), 10, "mnist train"),
            x_test, _check_labels(test.targets, len(x_test), 10, "mnist test"))


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """Run the mnist1d generator with its default arguments, leaving the global RNGs as they were.

    ``make_dataset`` calls ``mnist1d.utils.set_seed(42)``, which reseeds numpy's global RNG *and*
    Python's ``random``, and then draws from both; we restore both afterwards.
    """
    import mnist1d.data  # imports matplotlib.pyplot, hence only here

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": np.asarray(raw["x"], np.float64), "y": np.asarray(raw["y"], np.int64),
            "x_test": np.asarray(raw["x_test"], np.float64), "y_test": np.asarray(raw["y_test"], np.int64)}


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"cannot read the MNIST-1D cache {path} ({_one_line(f'{type(exc).__name__}: {exc}')}); "
                        f"delete it and it will be generated again") from exc
    if (arrays["x"].ndim != 2 or arrays["x_test"].ndim != 2 or arrays["x"].shape[1] != arrays["x_test"].shape[1]
            or arrays["y"].shape != arrays["x"].shape[:1] or arrays["y_test"].shape != arrays["x_test"].shape[:1]):
        raise DataError(f"the MNIST-1D cache {path} has unexpected shapes "
                        f"{ {k: v.shape for k, v in arrays.items()} }; delete it and it will be generated again")
    return arrays


def _load_mnist1d(data_dir: Path):
    path = data_dir / MNIST1D_CACHE
    arrays = None
    if not path.is_file():
        with _data_lock(data_dir, "mnist1d"):
            if not path.is_file():  # another process may have written it while we waited
                arrays = _generate_mnist1d()
                try:
                    fd, tmp = tempfile.mkstemp(prefix=".mnist1d.", suffix=".npz.tmp", dir=data_dir)
                    try:
                        with os.fdopen(fd, "wb") as f:
                            np.savez(f, **arrays)
                        os.replace(tmp, path)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            os.unlink(tmp)
                        raise
                except OSError:
                    pass  # data_dir not writable: use the freshly generated arrays without a cache
    if path.is_file():
        arrays = _read_mnist1d_cache(path)
    assert arrays is not None
    x_train = torch.from_numpy(arrays["x"]).to(torch.float64)
    mean, std = x_train.mean(), x_train.std(correction=0)  # population std, as numpy
    x_test = torch.from_numpy(arrays["x_test"]).to(torch.float64)
    x_train = ((x_train - mean) / std).to(torch.float32).unsqueeze(1)
    x_test = ((x_test - mean) / std).to(torch.float32).unsqueeze(1)
    return (x_train, _check_labels(torch.from_numpy(arrays["y"]), len(x_train), 10, "mnist1d train"),
            x_test, _check_labels(torch.from_numpy(arrays["y_test"]), len(x_test), 10, "mnist1d test"))


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", "image", 10, True, _load_cifar10,
        "fix: download CIFAR-10 on a machine with internet access "
        "(torchvision.datasets.CIFAR10(root, download=True)) and copy its cifar-10-batches-py folder into "
        "{data_dir}, or set data.data_dir to a folder that has it"),
    "mnist": DatasetSpec(
        "mnist", "image", 10, False, _load_mnist,
        "fix: download MNIST on a machine with internet access "
        "(torchvision.datasets.MNIST(root, download=True)) and copy its MNIST/raw folder to "
        "{data_dir}/MNIST/raw, or set data.data_dir to a folder that has it"),
    "mnist1d": DatasetSpec(
        "mnist1d", "signal", 10, False, _load_mnist1d,
        "fix: make {data_dir} a readable directory, or set data.data_dir to one"),
}


def get_dataset_names() -> list[str]:
    """The registered data set names."""
    return list(DATASETS)


def _select(x: torch.Tensor, y: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if k >= len(y):
        return x, y
    keep = torch.sort(balanced_order(y, seed)[:k]).values
    return x[keep], y[keep]


def load_dataset(name: str, *, data_dir: str | os.PathLike, device: torch.device | str = "cpu",
                 subset: int | None = None, augment: bool | None = None) -> Dataset:
    """Load data set `name` whole onto `device`.

    Args:
        name: a registry name (see `get_dataset_names`).
        data_dir: where the files are, or are downloaded / generated to (created if needed).
        device: where the tensors go.
        subset: keep only this many training examples, a fixed class-balanced random selection (the
            first `subset` of ``balanced_order(y_train, derive_seed("subset", name, "train"))``, kept in
            their original order; smaller subsets are nested in larger ones); the test set is cut the same
            way to at most `subset` examples. None, or more than the set holds, keeps everything.
        augment: whether train-time augmentation applies; None takes the data set's default (True only
            for cifar10). Only image data sets can be augmented.

    Raises:
        DataError: unknown name, files missing and not downloadable, unreadable data, bad arguments.
    """
    spec = DATASETS.get(name) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name), list(DATASETS), n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise DataError(f'unknown data set "{name}"{hint}; valid data sets: {", ".join(DATASETS)}')
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise DataError(f"{name}: subset must be a positive number of examples or None, got {subset!r}")
    augment = spec.default_augment if augment is None else bool(augment)
    if augment and spec.kind != "image":
        raise DataError(f"{name}: augmentation (random crop and flip) is only defined for images; "
                        f"turn it off for {spec.kind} data")

    data_dir = Path(os.path.expanduser(os.fspath(data_dir)))
    try:
        x_train, y_train, x_test, y_test = spec.loader(data_dir)
    except DataError:
        raise
    except _LOAD_ERRORS as exc:
        raise _load_error(spec, data_dir, exc) from exc

    if subset is not None:
        x_train, y_train = _select(x_train, y_train, subset, derive_seed("subset", name, "train"))
        x_test, y_test = _select(x_test, y_test, subset, derive_seed("subset", name, "test"))
    mean, std = NORMALISATION.get(name, (None, None))
    return Dataset(name=name, x_train=x_train.to(device), y_train=y_train.to(device),
                   x_test=x_test.to(device), y_test=y_test.to(device),
                   num_classes=spec.num_classes, augment=augment, mean=mean, std=std)


_CACHE: dict[tuple, Dataset] = {}


def cached_dataset(trial, device: torch.device | str) -> Dataset:
    """`load_dataset` for `trial`'s data settings, kept for the next trial of this process (Tune reuses its
    worker processes between trials, so a sweep reads and moves each data set once per worker). The
    tensors are never written to, so sharing them is safe; one data set is kept at a time."""
    from .train import resolve_data_dir

    d = trial.data
    key = (d.name, resolve_data_dir(d.data_dir), d.subset, d.augment, str(torch.device(device)))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_dataset(d.name, data_dir=key[1], device=device, subset=d.subset, augment=d.augment)
    return _CACHE[key]
