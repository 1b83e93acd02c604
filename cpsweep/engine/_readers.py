"""The files of each data set, read into CPU tensors (plumbing of `data.py`).

* ``cifar10``: torchvision's CIFAR-10 (50,000 / 10,000 RGB 32x32 images), kept as uint8 pixels;
  `Dataset.inputs` normalises them per channel with mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994,
  0.2010).
* ``mnist``: torchvision's MNIST (60,000 / 10,000 grey 28x28 images), zero-padded to 32x32 as in the
  paper (the padding is black, i.e. raw 0, so after normalisation it equals a black pixel), normalised
  with mean 0.1307, std 0.3081.
* ``mnist1d``: MNIST-1D (4,000 / 1,000 signals of length 40, shape (N, 1, 40)), generated offline by the
  ``mnist1d`` package with its default arguments (seed 42) and cached as ``mnist1d.npz`` in the data
  directory; standardised with the training set's global mean and std.

CIFAR-10 and MNIST are downloaded by torchvision into ``data_dir`` when they are missing; downloads and
cache writes happen under a file lock in ``data_dir``, so parallel trials on one node do not race.
Each `Reader` pairs a reading function with what to tell the user when its files cannot be found; the
registry (`config.registry`) names them.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import random
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write
from ..errors import DataError

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
LOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, KeyError, IndexError, TypeError,
               AssertionError, pickle.UnpicklingError, tarfile.TarError)


class Reader(NamedTuple):
    """How to read one data set: ``read(data_dir) -> (x_train, y_train, x_test, y_test)`` (CPU tensors)
    and the fix to print when that fails (``{data_dir}`` is filled in)."""
    read: Callable[[Path], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    fix: str


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_error(name: str, data_dir: Path, exc: BaseException, reader: Reader) -> DataError:
    """The one-line `DataError` for a data set whose files could not be read or downloaded."""
    cause = _one_line(f"{type(exc).__name__}: {exc}")
    return DataError(f"cannot load data set {name} from data_dir {data_dir} ({cause}); "
                     + reader.fix.format(data_dir=data_dir))


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
    try:
        import mnist1d.data  # imports matplotlib.pyplot, hence only here
    except ImportError as exc:  # not one of LOAD_ERRORS: say so in the data error's one line, with the fix
        raise DataError(f"cannot generate MNIST-1D: the mnist1d package is missing or broken "
                        f"({_one_line(f'{type(exc).__name__}: {exc}')}); fix: pip install mnist1d (offline: "
                        f"bash benchmarks/fetch_wheels.sh on a machine with internet access, then pip install "
                        f"--no-index --no-deps wheels/mnist1d-*.whl), or put an mnist1d.npz made elsewhere into "
                        f"the data directory") from exc

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
                buf = io.BytesIO()
                np.savez(buf, **arrays)
                with contextlib.suppress(OSError):  # data_dir not writable: use the arrays without a cache
                    atomic_write(path, buf.getvalue())
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


# the readers the registry names (`config.registry.BUILTINS["data"]`: "cpsweep.engine._readers:CIFAR10")
CIFAR10 = Reader(
    _load_cifar10,
    "fix: download CIFAR-10 on a machine with internet access "
    "(torchvision.datasets.CIFAR10(root, download=True)) and copy its cifar-10-batches-py folder into "
    "{data_dir}, or set data.data_dir to a folder that has it")
MNIST = Reader(
    _load_mnist,
    "fix: download MNIST on a machine with internet access "
    "(torchvision.datasets.MNIST(root, download=True)) and copy its MNIST/raw folder to "
    "{data_dir}/MNIST/raw, or set data.data_dir to a folder that has it")
MNIST1D = Reader(_load_mnist1d, "fix: make {data_dir} a readable directory, or set data.data_dir to one")


def read_plugin(entry: Any, data_dir: Path, options: dict) -> tuple:
    """A plug-in data set, `fn(data_dir, **options) -> (x_train, y_train, x_test, y_test)`: float inputs
    (normalised as the model should read them: (N, C, H, W) images, (N, C, L) signals or any other shape),
    integer labels 0..K-1. Returns the four CPU tensors and its `DataSetInfo` (K: the largest label + 1).

    Raises:
        DataError: the loader raised, or returned something else (one line naming the fix).
    """
    from ..config.registry import DataSetInfo

    name = entry.name
    try:
        out = entry.load()(data_dir, **options)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's loader: any failure is reported in one line
        raise DataError(f"data set {name} failed to load from data_dir {data_dir} "
                        f"({_one_line(f'{type(exc).__name__}: {exc}')}); fix the loader (docs/plugins.md)") from exc
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        raise DataError(f"data.name: data set {name} returned {got}; a data set returns 4: (x_train, y_train, "
                        f"x_test, y_test) (docs/plugins.md)")
    x_train, y_train, x_test, y_test = (torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
                                        for t in out)
    if not x_train.is_floating_point() or not x_test.is_floating_point():
        raise DataError(f"data set {name} returned {x_train.dtype} inputs; return float inputs, normalised as the "
                        f"model should read them")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dim() < 2:
        raise DataError(f"data set {name}: train inputs {tuple(x_train.shape)} and test inputs "
                        f"{tuple(x_test.shape)} must be (N, ...) with the same shape per example")
    try:
        k = int(max(int(y_train.max()), int(y_test.max()))) + 1
        y_train = _check_labels(y_train, len(x_train), k, f"{name} train")
        y_test = _check_labels(y_test, len(x_test), k, f"{name} test")
    except (ValueError, RuntimeError) as exc:
        raise DataError(f"data set {name}: {exc}; labels are integers 0..K-1, one per input") from None
    kind = {4: "image", 3: "signal"}.get(x_train.dim(), "any")
    info = DataSetInfo(kind, k, False, tuple(x_train.shape[1:]))
    return x_train.float().cpu(), y_train.cpu(), x_test.float().cpu(), y_test.cpu(), info
