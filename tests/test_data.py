"""Tests of cpsweep.engine.data and cpsweep.engine.sampling.

CIFAR-10 and MNIST are read by torchvision's own code from tiny files that the tests write in the real
on-disk formats (IDX for MNIST, Python-2 pickles for CIFAR-10). Nothing here touches the network: an
autouse fixture makes every socket connection / name lookup fail and records it, and a test fails if
anything tried.
"""

from __future__ import annotations

import pickle
import random
import socket
import struct
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.mnist as tv_mnist
from torchvision.datasets import CIFAR10

from tiny_data import CIFAR_LABEL_NAMES, py2_pickle, tiny_cifar_sums, write_idx

from cpsweep.engine import data as D
from cpsweep.engine import sampling as S
from cpsweep.errors import CpsweepError, DataError


# --------------------------------------------------------------------------------------------------
# No network, ever


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert not attempts, f"a test tried to use the network: {attempts}"


def offline_urlopen(*args, **kwargs):
    """What urllib does on a machine without internet (name resolution fails)."""
    raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


@pytest.fixture
def no_download(monkeypatch):
    """Record (and fail) any download torchvision attempts."""
    calls = []

    def record(url, *args, **kwargs):
        calls.append(url)
        raise AssertionError(f"download attempted: {url}")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", record)
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", record)
    return calls


# --------------------------------------------------------------------------------------------------
# MNIST in IDX format


MNIST_TRAIN_LABELS = [5, 0, 4, 1, 9]
MNIST_TEST_LABELS = [7, 2, 1]


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    train[0, 0, 0], train[0, 27, 27], train[0, 3, 4] = 255, 0, 128  # known pixels (row, col)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", train)
    write_idx(raw / "train-labels-idx1-ubyte", np.array(MNIST_TRAIN_LABELS, np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", test)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array(MNIST_TEST_LABELS, np.uint8))
    # the real magic numbers
    assert struct.unpack(">I", (raw / "train-images-idx3-ubyte").read_bytes()[:4])[0] == 2051
    assert struct.unpack(">I", (raw / "train-labels-idx1-ubyte").read_bytes()[:4])[0] == 2049
    return tmp_path, train, test


def mnist_reference(images: np.ndarray) -> np.ndarray:
    padded = np.zeros((len(images), 1, 32, 32))
    padded[:, 0, 2:30, 2:30] = images / 255.0
    return (padded - 0.1307) / 0.3081


def test_mnist_loads_through_torchvision(mnist_dir, no_download):
    root, train, test = mnist_dir
    ds = D.load_dataset("mnist", data_dir=root)
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.augment is False
    assert ds.x_train.shape == (5, 1, 32, 32) and ds.x_test.shape == (3, 1, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64  # stored raw
    assert ds.y_train.tolist() == MNIST_TRAIN_LABELS and ds.y_test.tolist() == MNIST_TEST_LABELS
    assert ds.input_shape == (1, 32, 32) and ds.device == torch.device("cpu")
    assert ds.inputs(ds.x_train).dtype == torch.float32

    # known pixels, shifted by the 2-pixel padding
    x = ds.inputs(ds.x_train).double()
    assert x[0, 0, 2, 2].item() == pytest.approx((1.0 - 0.1307) / 0.3081, abs=1e-6)
    assert x[0, 0, 29, 29].item() == pytest.approx(-0.1307 / 0.3081, abs=1e-6)
    assert x[0, 0, 5, 6].item() == pytest.approx((128 / 255 - 0.1307) / 0.3081, abs=1e-6)
    # the padding is a black pixel after normalisation
    black = -0.1307 / 0.3081
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    for xs in (ds.inputs(ds.x_train), ds.inputs(ds.x_test)):
        assert torch.allclose(xs[:, 0][:, border].double(), torch.full_like(xs[:, 0][:, border].double(), black),
                              atol=1e-6)
    np.testing.assert_allclose(ds.inputs(ds.x_train).numpy(), mnist_reference(train), atol=2e-6, rtol=0)
    np.testing.assert_allclose(ds.inputs(ds.x_test).numpy(), mnist_reference(test), atol=2e-6, rtol=0)
    # a batch normalises like the whole set, bit for bit
    assert torch.equal(ds.inputs(ds.x_train[[4, 1]]), ds.inputs(ds.x_train)[[4, 1]])
    assert no_download == []
    assert (root / "mnist.lock").exists()


def test_mnist_offline_and_missing_gives_helpful_error(tmp_path, monkeypatch):
    # the real torchvision download code runs until urllib would open a connection
    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    with pytest.raises(DataError) as info:
        D.load_dataset("mnist", data_dir=tmp_path / "data")
    message = str(info.value)
    assert "\n" not in message
    assert "mnist" in message and str(tmp_path / "data") in message
    assert "internet" in message and "data.data_dir" in message and "MNIST/raw" in message
    assert isinstance(info.value, CpsweepError)
    assert isinstance(info.value.__cause__, RuntimeError)  # torchvision's "tried every mirror" error


# --------------------------------------------------------------------------------------------------
# CIFAR-10 as Python 2 pickles


CIFAR_TRAIN_LABELS = [[1, 6], [2, 7], [3, 8], [4, 9], [5, 0]]  # two images in each of data_batch_1..5
CIFAR_TEST_LABELS = [3, 8, 8]


@pytest.fixture
def cifar_files(tmp_path):
    """The real layout: rows of 3072 uint8 = 1024 R, 1024 G, 1024 B values, each plane row-major 32x32."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for i, labels in enumerate(CIFAR_TRAIN_LABELS, start=1):
        rows = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        if i == 1:
            rows[0, 0] = 255                       # R at (0, 0)
            rows[0, 1024 + 5 * 32 + 7] = 0         # G at (5, 7)
            rows[0, 2048 + 31 * 32 + 30] = 128     # B at (31, 30)
        batches.append(rows)
        (folder / f"data_batch_{i}").write_bytes(py2_pickle({
            "batch_label": f"training batch {i} of 5", "labels": labels, "data": rows,
            "filenames": [f"img_{i}_{j}.png" for j in range(len(labels))]}))
    test_rows = rng.integers(0, 256, size=(len(CIFAR_TEST_LABELS), 3072), dtype=np.uint8)
    (folder / "test_batch").write_bytes(py2_pickle({
        "batch_label": "testing batch 1 of 1", "labels": CIFAR_TEST_LABELS, "data": test_rows,
        "filenames": [f"test_{j}.png" for j in range(len(CIFAR_TEST_LABELS))]}))
    (folder / "batches.meta").write_bytes(py2_pickle({
        "num_cases_per_batch": 10000, "label_names": CIFAR_LABEL_NAMES, "num_vis": 3072}))

    # like the real files: str keys under latin1, bytes keys under encoding="bytes"
    with open(folder / "data_batch_1", "rb") as f:
        assert set(pickle.load(f, encoding="latin1")) == {"batch_label", "labels", "data", "filenames"}
    with open(folder / "data_batch_1", "rb") as f:
        assert b"data" in pickle.load(f, encoding="bytes")
    return tmp_path, np.concatenate(batches), test_rows


@pytest.fixture
def cifar_dir(cifar_files, monkeypatch):
    """CIFAR-10 with torchvision's expected md5 sums replaced by those of the tiny files.

    torchvision checks every batch's md5 (`CIFAR10._check_integrity`, before and after `download`) and,
    separately, the md5 of batches.meta (`_load_meta` calls `check_integrity` itself), so patching
    `_check_integrity` alone would not do. Replacing the expected sums keeps all of torchvision's code
    running, integrity checks included.
    """
    for name, value in tiny_cifar_sums(cifar_files[0]).items():
        monkeypatch.setattr(CIFAR10, name, value)
    return cifar_files


def cifar_reference(rows: np.ndarray) -> np.ndarray:
    images = rows.reshape(-1, 3, 32, 32) / 255.0
    mean = np.array([0.4914, 0.4822, 0.4465])[None, :, None, None]
    std = np.array([0.2023, 0.1994, 0.2010])[None, :, None, None]
    return (images - mean) / std


def test_cifar10_loads_through_torchvision(cifar_dir, no_download):
    root, train_rows, test_rows = cifar_dir
    ds = D.load_dataset("cifar10", data_dir=root)
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.augment is True
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.x_test.dtype == torch.uint8  # a quarter of float32's memory
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    assert ds.y_train.tolist() == [label for batch in CIFAR_TRAIN_LABELS for label in batch]
    assert ds.y_test.tolist() == CIFAR_TEST_LABELS
    assert ds.x_train.is_contiguous()

    x = ds.inputs(ds.x_train).double()
    assert x[0, 0, 0, 0].item() == pytest.approx((1.0 - 0.4914) / 0.2023, abs=1e-6)
    assert x[0, 1, 5, 7].item() == pytest.approx(-0.4822 / 0.1994, abs=1e-6)
    assert x[0, 2, 31, 30].item() == pytest.approx((128 / 255 - 0.4465) / 0.2010, abs=1e-6)
    np.testing.assert_allclose(ds.inputs(ds.x_train).numpy(), cifar_reference(train_rows), atol=2e-6, rtol=0)
    np.testing.assert_allclose(ds.inputs(ds.x_test).numpy(), cifar_reference(test_rows), atol=2e-6, rtol=0)
    assert torch.equal(ds.inputs(ds.x_train[[7, 2]]), ds.inputs(ds.x_train)[[7, 2]])
    assert no_download == []
    assert (root / "cifar10.lock").exists()

    assert D.load_dataset("cifar10", data_dir=root, augment=False).augment is False


def test_cifar10_checksums_are_checked(cifar_files, no_download):
    # with torchvision's real md5 sums the tiny files do not pass, so torchvision tries to download
    root = cifar_files[0]
    with pytest.raises(DataError) as info:
        D.load_dataset("cifar10", data_dir=root)
    assert no_download == [CIFAR10.url]
    no_download.clear()
    assert "cifar10" in str(info.value)


def test_cifar10_offline_and_missing_gives_helpful_error(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    data_dir = tmp_path / "nowhere" / "data"
    with pytest.raises(DataError) as info:
        D.load_dataset("cifar10", data_dir=data_dir)
    message = str(info.value)
    assert "\n" not in message
    assert "cifar10" in message and str(data_dir) in message
    assert "internet" in message and "cifar-10-batches-py" in message and "data.data_dir" in message
    assert "Temporary failure in name resolution" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_cifar10_download_failure_is_wrapped(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fail)
    with pytest.raises(DataError, match=r"cifar10.*data.data_dir") as info:
        D.load_dataset("cifar10", data_dir=tmp_path)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_data_dir_that_is_a_file(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(DataError, match="cifar10") as info:
        D.load_dataset("cifar10", data_dir=not_a_dir)
    assert str(not_a_dir) in str(info.value)


# --------------------------------------------------------------------------------------------------
# Registry and arguments


def test_unknown_name(tmp_path):
    with pytest.raises(DataError, match='unknown data set "cifar".*did you mean "cifar10".*cifar10, mnist, mnist1d'):
        D.load_dataset("cifar", data_dir=tmp_path)
    with pytest.raises(DataError, match="valid data sets: cifar10, mnist, mnist1d"):
        D.load_dataset("imagenet", data_dir=tmp_path)


@pytest.mark.parametrize("subset", [0, -3, 2.5, True])
def test_bad_subset(tmp_path, subset):
    with pytest.raises(DataError, match="subset"):
        D.load_dataset("mnist1d", data_dir=tmp_path, subset=subset)


def test_augment_refused_for_signals(tmp_path):
    with pytest.raises(DataError, match="only defined for images"):
        D.load_dataset("mnist1d", data_dir=tmp_path, augment=True)


# --------------------------------------------------------------------------------------------------
# MNIST-1D


def same_np_state(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


@pytest.fixture(scope="module")
def mnist1d_generated(tmp_path_factory):
    """Generate MNIST-1D once for the module, watching the global RNGs and mnist1d's reseeding."""
    import mnist1d.data

    data_dir = tmp_path_factory.mktemp("mnist1d")
    reseeds = []
    real_set_seed = mnist1d.data.set_seed
    np_before, py_before = np.random.get_state(), random.getstate()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mnist1d.data, "set_seed", lambda seed: (reseeds.append(seed), real_set_seed(seed)))
        ds = D.load_dataset("mnist1d", data_dir=data_dir)
    np_after, py_after = np.random.get_state(), random.getstate()
    return {"dir": data_dir, "ds": ds, "reseeds": reseeds,
            "np_untouched": same_np_state(np_before, np_after), "py_untouched": py_before == py_after}


def test_mnist1d_generated(mnist1d_generated):
    ds = mnist1d_generated["ds"]
    assert ds.name == "mnist1d" and ds.num_classes == 10 and ds.augment is False
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
    assert set(ds.y_train.tolist()) == set(range(10)) and set(ds.y_test.tolist()) == set(range(10))
    # standardised with the training set's global statistics
    assert abs(ds.x_train.double().mean().item()) < 1e-5
    assert ds.x_train.double().std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    assert abs(ds.x_test.double().mean().item()) < 0.1


def test_mnist1d_leaves_global_rng_alone(mnist1d_generated):
    assert mnist1d_generated["reseeds"] == [42]  # mnist1d did reseed numpy's and Python's global RNGs ...
    assert mnist1d_generated["np_untouched"]     # ... and we restored both
    assert mnist1d_generated["py_untouched"]


def test_mnist1d_cache_written_atomically_and_reused(mnist1d_generated, monkeypatch):
    import mnist1d.data

    data_dir, first = mnist1d_generated["dir"], mnist1d_generated["ds"]
    cache = data_dir / "mnist1d.npz"
    assert cache.is_file()
    assert not [p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")]
    with np.load(cache, allow_pickle=False) as f:
        assert sorted(f.files) == ["x", "x_test", "y", "y_test"]
        raw_x, raw_y = f["x"], f["y"]
    mean, std = raw_x.mean(), raw_x.std()
    np.testing.assert_allclose(first.x_train[:, 0].numpy(), (raw_x - mean) / std, atol=1e-5)
    assert first.y_train.tolist() == raw_y.tolist()

    def must_not_run(*args, **kwargs):
        raise AssertionError("make_dataset called although the cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", must_not_run)
    second = D.load_dataset("mnist1d", data_dir=data_dir)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(second, name))


def test_mnist1d_corrupt_cache(tmp_path):
    (tmp_path / "mnist1d.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="delete it"):
        D.load_dataset("mnist1d", data_dir=tmp_path)


def fake_make_dataset(args):
    rng = np.random.default_rng(0)
    return {"x": rng.normal(3.0, 2.0, (50, 40)), "y": np.arange(50) % 10,
            "x_test": rng.normal(size=(20, 40)), "y_test": np.arange(20) % 10, "t": None, "templates": {}}


def test_mnist1d_without_writable_dir_is_generated_in_memory(tmp_path, monkeypatch):
    import mnist1d.data

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake_make_dataset)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    ds = D.load_dataset("mnist1d", data_dir=not_a_dir)
    assert ds.x_train.shape == (50, 1, 40) and ds.x_test.shape == (20, 1, 40)
    assert abs(ds.x_train.mean().item()) < 1e-5


def test_subset_is_deterministic_balanced_and_nested(mnist1d_generated):
    data_dir, full = mnist1d_generated["dir"], mnist1d_generated["ds"]
    a = D.load_dataset("mnist1d", data_dir=data_dir, subset=100)
    b = D.load_dataset("mnist1d", data_dir=data_dir, subset=100)
    assert a.x_train.shape == (100, 1, 40) and a.x_test.shape == (100, 1, 40)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert torch.bincount(a.y_train, minlength=10).tolist() == [10] * 10
    assert torch.bincount(a.y_test, minlength=10).tolist() == [10] * 10

    # the kept examples are rows of the full set, in their original order, and subsets are nested
    def rows(sub, x_full):
        matches = (sub[:, None, 0, :] == x_full[None, :, 0, :]).all(-1)
        assert (matches.sum(1) == 1).all()
        return matches.float().argmax(1)

    idx100 = rows(a.x_train, full.x_train)
    assert (idx100.diff() > 0).all()
    assert torch.equal(a.y_train, full.y_train[idx100])
    idx30 = rows(D.load_dataset("mnist1d", data_dir=data_dir, subset=30).x_train, full.x_train)
    assert set(idx30.tolist()) <= set(idx100.tolist())

    whole = D.load_dataset("mnist1d", data_dir=data_dir, subset=10**6)
    assert torch.equal(whole.x_train, full.x_train) and torch.equal(whole.x_test, full.x_test)


def test_subset_on_mnist_files(mnist_dir):
    root = mnist_dir[0]
    full = D.load_dataset("mnist", data_dir=root)
    sub = D.load_dataset("mnist", data_dir=root, subset=2)
    assert sub.x_train.shape == (2, 1, 32, 32) and sub.x_test.shape == (2, 1, 32, 32)
    keep = S.balanced_order(full.y_train, S.derive_seed("subset", "mnist", "train"))[:2].sort().values
    assert torch.equal(sub.x_train, full.x_train[keep]) and torch.equal(sub.y_train, full.y_train[keep])


# --------------------------------------------------------------------------------------------------
# Seeds and epoch order


def test_derive_seed():
    s = S.derive_seed(0, "order", 0)
    assert isinstance(s, int) and 0 <= s < 2**63
    assert S.derive_seed(0, "order", 0) == s
    assert S.derive_seed(np.int64(0), "order", np.int32(0)) == s
    values = {S.derive_seed(*p) for p in [(1, "2"), ("1", 2), (12,), ("12",), (1, 2), ("1", "2"), ()]}
    assert len(values) == 7
    assert S.derive_seed(-1) != S.derive_seed(1)
    assert S.derive_seed(2**100) != S.derive_seed(2**100 + 1)
    for bad in (1.0, True, None, b"x"):
        with pytest.raises(TypeError):
            S.derive_seed(bad)


def test_derive_seed_is_pinned():
    # blake2b, not Python's salted hash(): these values must never change (they fix every epoch order,
    # augmentation draw and subset of past sweeps)
    assert S.derive_seed(0, "order", 0) == 2766130311711237736
    assert S.derive_seed(7, "order") == 3469358481823819118
    assert S.derive_seed() == 2887355069285249616


def test_make_generator():
    a = torch.rand(5, generator=S.make_generator(3))
    torch.manual_seed(99)
    assert torch.equal(a, torch.rand(5, generator=S.make_generator(3)))
    assert not torch.equal(a, torch.rand(5, generator=S.make_generator(4)))


def test_epoch_order():
    n = 1000
    order = S.epoch_order(n, 0, 0, "cpu")
    assert order.dtype == torch.int64 and order.shape == (n,)
    assert torch.equal(order.sort().values, torch.arange(n))
    torch.manual_seed(0)
    np.random.seed(0)
    again = S.epoch_order(n, 0, 0, "cpu")
    torch.manual_seed(1)
    torch.rand(10)
    assert torch.equal(order, again) and torch.equal(order, S.epoch_order(n, 0, 0, "cpu"))
    assert not torch.equal(order, S.epoch_order(n, 0, 1, "cpu"))
    assert not torch.equal(order, S.epoch_order(n, 1, 0, "cpu"))
    # order of calls does not matter: epoch 5 is the same whether or not epochs 0..4 were drawn
    fresh = S.epoch_order(n, 3, 5, torch.device("cpu"))
    for epoch in range(5):
        S.epoch_order(n, 3, epoch, "cpu")
    assert torch.equal(fresh, S.epoch_order(n, 3, 5, "cpu"))
    assert S.epoch_order(0, 0, 0, "cpu").shape == (0,)


# --------------------------------------------------------------------------------------------------
# Augmentation


def reference_augment(x, dy, dx, flip, pad=4):
    """Per sample, with a Python loop: zero-pad, crop at (dy, dx), mirror left-right."""
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=x.dtype)
        padded[:, pad:pad + h, pad:pad + w] = x[i]
        crop = padded[:, int(dy[i]):int(dy[i]) + h, int(dx[i]):int(dx[i]) + w]
        out[i] = crop.flip(-1) if bool(flip[i]) else crop
    return out


def test_augment_batch_matches_reference_loop():
    x = torch.randn(64, 3, 32, 32, generator=S.make_generator(0))
    before = x.clone()
    out = S.augment_batch(x, S.make_generator(7))
    dy, dx, flip = S.augment_params(64, S.make_generator(7))
    assert dy.dtype == torch.int64 and flip.dtype == torch.bool
    assert torch.equal(out, reference_augment(x, dy, dx, flip))
    assert torch.equal(x, before)  # input untouched
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    # pure: same generator state, same output, whatever the global RNG does
    torch.manual_seed(5)
    assert torch.equal(out, S.augment_batch(x, S.make_generator(7)))
    assert not torch.equal(out, S.augment_batch(x, S.make_generator(8)))
    # the generator advances exactly as augment_params says
    g1, g2 = S.make_generator(11), S.make_generator(11)
    S.augment_batch(x, g1)
    S.augment_params(64, g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_augment_batch_output_is_a_crop_of_the_padded_image():
    b = 32
    x = torch.arange(1, b * 3 * 32 * 32 + 1, dtype=torch.float64).reshape(b, 3, 32, 32)  # all distinct, none 0
    out = S.augment_batch(x, S.make_generator(1))
    dy, dx, flip = S.augment_params(b, S.make_generator(1))
    for i in range(b):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        found = [(r, c, f) for r in range(9) for c in range(9) for f in (False, True)
                 if torch.equal(out[i], (lambda crop: crop.flip(-1) if f else crop)(padded[:, r:r + 32, c:c + 32]))]
        assert found == [(int(dy[i]), int(dx[i]), bool(flip[i]))]


def test_augment_params_statistics():
    dy, dx, flip = S.augment_params(20000, S.make_generator(0))
    for offsets in (dy, dx):
        counts = torch.bincount(offsets, minlength=9)
        assert len(counts) == 9 and counts.min() > 20000 / 9 * 0.85
    assert 0.48 < flip.double().mean().item() < 0.52
    assert not torch.equal(dy, dx)


def test_augment_identity_params_and_errors():
    x = torch.randn(4, 3, 32, 32)
    four = torch.full((4,), 4)
    assert torch.equal(S.apply_augmentation(x, four, four, torch.zeros(4, dtype=torch.bool)), x)
    assert torch.equal(S.apply_augmentation(x, four, four, torch.ones(4, dtype=torch.bool)), x.flip(-1))
    shifted = S.apply_augmentation(x, torch.zeros(4, dtype=torch.long), four, torch.zeros(4, dtype=torch.bool))
    assert torch.equal(shifted[:, :, 4:], x[:, :, :28]) and (shifted[:, :, :4] == 0).all()
    with pytest.raises(ValueError):
        S.augment_batch(torch.randn(4, 1, 40), S.make_generator(0))
    if torch.cuda.is_available():  # pragma: no cover - only on GPU machines
        with pytest.raises(ValueError):
            S.augment_params(4, torch.Generator(device="cuda"))


# --------------------------------------------------------------------------------------------------
# Class-balanced selections


def labels_with_counts(counts, seed=0):
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return y[torch.randperm(len(y), generator=S.make_generator(seed))]


def test_class_balanced_probe():
    y = labels_with_counts([10, 20, 7, 30, 8])
    idx = S.class_balanced_probe(y, 7, seed=3)
    assert idx.dtype == torch.int64 and len(idx) == 35
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 35
    assert torch.bincount(y[idx]).tolist() == [7] * 5
    torch.manual_seed(123)
    assert torch.equal(idx, S.class_balanced_probe(y, 7, seed=3))
    assert not torch.equal(idx, S.class_balanced_probe(y, 7, seed=4))
    assert S.class_balanced_probe(y, 7, seed=3, num_classes=5).tolist() == idx.tolist()
    with pytest.raises(DataError, match="class 2 has 7"):
        S.class_balanced_probe(y, 8, seed=3)
    with pytest.raises(DataError, match="class 5 has 0"):
        S.class_balanced_probe(y, 2, seed=3, num_classes=6)
    with pytest.raises(DataError):
        S.class_balanced_probe(y, 0, seed=3)


def test_balanced_order():
    y = labels_with_counts([5, 50, 50, 3])
    order = S.balanced_order(y, 9)
    assert torch.equal(order.sort().values, torch.arange(len(y)))
    assert torch.equal(order, S.balanced_order(y, 9))
    assert not torch.equal(order, S.balanced_order(y, 10))
    assert sorted(y[order[:4]].tolist()) == [0, 1, 2, 3]
    assert torch.bincount(y[order[:12]], minlength=4).tolist() == [3, 3, 3, 3]
    assert torch.bincount(y[order[:30]], minlength=4).tolist() == [5, 11, 11, 3]


def test_missing_mnist1d_package_gives_one_line_data_error(tmp_path, monkeypatch):
    """Without the mnist1d package (a bare GPU machine) generating MNIST-1D is a DataError naming the fix,
    not an ImportError escaping the data loader."""
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # `import mnist1d.data` now raises ImportError
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError) as info:
        D.load_dataset("mnist1d", data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message
    assert "mnist1d package is missing" in message and "pip install mnist1d" in message
    assert "fetch_wheels.sh" in message and "mnist1d.npz" in message
    assert isinstance(info.value.__cause__, ImportError)
