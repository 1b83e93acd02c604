"""Tiny CIFAR-10 and MNIST files in the real on-disk formats, for tests that run the real loaders.

CIFAR-10 batches are Python-2 style pickles (as the real files): torchvision reads them with
``encoding="latin1"`` and str keys. torchvision also checks the md5 of every file against hard-coded
sums, which tiny files cannot match: `trust_tiny_cifar()` replaces the expected sums with those of the
files found in ``$CPSWEEP_DATA_DIR`` so that all of torchvision's code, integrity checks included, runs.
In Ray workers it runs as a `worker_process_setup_hook`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    """Writes pickles like Python 2's cPickle, which wrote the real CIFAR-10 files: ``str`` and ``bytes``
    both become Python 2 byte strings (SHORT_BINSTRING / BINSTRING).

    This matters: torchvision loads the batches with ``pickle.load(f, encoding="latin1")``, which turns
    those byte strings (the dict keys, and the array buffer) into ``str``, and then reads
    ``entry["data"]`` / ``entry["labels"]`` / ``meta["label_names"]`` with str keys. A Python 3 pickle
    with ``b"data"`` keys (what ``encoding="bytes"`` shows for the real files) would be a KeyError.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_string(self, raw: bytes) -> None:
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    def save_str(self, obj):
        self._save_py2_string(obj.encode("latin1"))
        self.memoize(obj)

    def save_bytes(self, obj):
        self._save_py2_string(obj)
        self.memoize(obj)

    dispatch[str] = save_str
    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_cifar10(root: Path, per_batch: int = 60, test: int = 100, seed: int = 0) -> None:
    """`root/cifar-10-batches-py/` with 5 training batches of `per_batch` images and a test batch."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        rows = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(per_batch) + i) % 10]
        (folder / f"data_batch_{i}").write_bytes(py2_pickle({
            "batch_label": f"training batch {i} of 5", "labels": labels, "data": rows,
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)]}))
    rows = rng.integers(0, 256, size=(test, 3072), dtype=np.uint8)
    (folder / "test_batch").write_bytes(py2_pickle({
        "batch_label": "testing batch 1 of 1", "labels": [int(v) for v in np.arange(test) % 10], "data": rows,
        "filenames": [f"test_{j}.png" for j in range(test)]}))
    (folder / "batches.meta").write_bytes(py2_pickle({
        "num_cases_per_batch": 10000, "label_names": CIFAR_LABEL_NAMES, "num_vis": 3072}))


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic = 0x00 0x00 <type 0x08 = unsigned byte> <ndim>, then each dim as big-endian uint32."""
    assert array.dtype == np.uint8
    Path(path).write_bytes(struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
                           + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def write_mnist(root: Path, train: int = 300, test: int = 100, seed: int = 0) -> None:
    """`root/MNIST/raw/` with the four IDX files (torchvision checks only that they exist)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, size=(train, 28, 28), dtype=np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", (np.arange(train) % 10).astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(test, 28, 28), dtype=np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", (np.arange(test) % 10).astype(np.uint8))


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def tiny_cifar_sums(root: Path) -> dict:
    """The `CIFAR10` class attributes (train_list, test_list, meta) that make torchvision expect the md5
    sums of the tiny files under `root` (set them with monkeypatch, or `trust_tiny_cifar`)."""
    folder = Path(root) / "cifar-10-batches-py"
    return {"train_list": [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)],
            "test_list": [["test_batch", md5(folder / "test_batch")]],
            "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")}}


def trust_tiny_cifar() -> None:
    """Make torchvision expect the md5 sums of the tiny CIFAR-10 files in $CPSWEEP_DATA_DIR (for a whole
    process: a Ray worker's setup hook, the golden recorder)."""
    from torchvision.datasets import CIFAR10

    root = Path(os.environ["CPSWEEP_DATA_DIR"])
    if (root / "cifar-10-batches-py").exists():
        for name, value in tiny_cifar_sums(root).items():
            setattr(CIFAR10, name, value)
