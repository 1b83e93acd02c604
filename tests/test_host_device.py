"""Host-device synchronisation and recompiles (issue 27, item 2), counted on the CPU with stand-ins.

- Augmentation: an epoch's draws are made at once, the same values as batch-by-batch draws, and moved
  with one copy; the normalisation constants are made once per trial, not per batch.
- Every host-to-device move of the training loop goes through `engine._device.to_device`: wrapped here,
  it counts the copies an epoch would make on a GPU (two: the order and the augmentation draws).
- The Fisher reads back one small tensor per chunk and its sums once; its chunk is sized from free device
  memory on CUDA (closed form, injected numbers).
- torch.compile: static shapes, the partial last batch dropped, no compile after the first epoch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tiny_specs import UNIT, tiny_sweep
from trial_runs import image_data

from cpsweep.config.sweep_file import parse_sweep
from cpsweep.engine import _device, fisher as F
from cpsweep.engine import sampling as S
from cpsweep.engine import trial as T
from cpsweep.engine.compile_stats import compiled_frames
from cpsweep.engine.data import Dataset
from cpsweep.engine.fisher import fisher_trace
from cpsweep.engine.trial import train_trial


def image_trial(**changes):
    return parse_sweep(tiny_sweep(UNIT, **{"model": {"name": "all_cnn_c", "width": 0.05},
                                           "data": {"name": "cifar10"}, **changes})).make_trial(1, 2, 0)


def uint8_data(n=150) -> Dataset:
    """`n` random uint8 3x8x8 "images" of 4 classes with a normalisation, like CIFAR-10's (no files)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 4
    return Dataset("synthetic", x, y, x[:40].clone(), y[:40].clone(), 4, True,
                   mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))


# --------------------------------------------------------------------------------------------------
# Augmentation draws and copies


def test_epoch_augment_params_equal_batch_by_batch_draws():
    sizes = [64, 64, 17, 1, 30]
    params = S.epoch_augment_params(sizes, S.make_generator(3))
    assert params.shape == (3, sum(sizes)) and params.dtype == torch.int64
    g, start = S.make_generator(3), 0
    for size in sizes:
        dy, dx, flip = S.augment_params(size, g)
        assert torch.equal(params[0, start:start + size], dy) and torch.equal(params[1, start:start + size], dx)
        assert torch.equal(params[2, start:start + size].bool(), flip)
        start += size
    # the generator is left where batch-by-batch draws leave it
    h = S.make_generator(3)
    S.epoch_augment_params(sizes, h)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=h))
    assert S.epoch_augment_params([], S.make_generator(3)).shape == (3, 0)


def reference_batches(run, epoch, augment):
    """The training batches as they were made before this change: per batch, `augment_batch` drawing from
    the epoch's generator, the normalisation constants built for the batch."""
    d, t = run.data, run.trial
    g = S.make_generator(S.derive_seed(t.seed, "augment", epoch))
    out = []
    for idx in run.batches(epoch, "train"):
        x = d.x_train[idx].to(torch.float32).div_(255.0)
        x = x.sub_(torch.tensor(d.mean).view(1, -1, 1, 1)).div_(torch.tensor(d.std).view(1, -1, 1, 1))
        out.append((S.augment_batch(x, g) if augment else x, d.y_train[idx]))
    return out


@pytest.mark.parametrize("augment", [True, False])
def test_training_batches_are_those_of_per_batch_draws(augment):
    data = uint8_data()
    run = train_trial(image_trial(), "cpu", data=data)
    settings = run.epoch_settings(2, False)
    settings.augment = augment
    got = list(run.train_batches(2, False, settings))
    want = reference_batches(run, 2, augment)
    assert len(got) == len(want) == 3  # 150 examples in batches of 64: 64, 64, 22
    for (x, y), (xr, yr) in zip(got, want):
        assert torch.equal(x, xr) and torch.equal(y, yr)


class Copies:
    """A stand-in for the device: wraps `_device.to_device` and records what it is asked to move."""

    def __init__(self, monkeypatch):
        self.moved: list[tuple[int, ...]] = []
        real = _device.to_device

        def counted(tensor, device):
            self.moved.append(tuple(tensor.shape))
            return real(tensor, device)

        monkeypatch.setattr(_device, "to_device", counted)


def test_an_epoch_makes_two_copies_and_builds_no_constant(monkeypatch):
    """On a GPU a training epoch copies the epoch's order and the epoch's augmentation draws, once each,
    whatever its number of batches; the normalisation's mean and std are moved once per trial."""
    data = uint8_data()
    run = train_trial(image_trial(fisher={"every": 0}, bn_refresh=0), "cpu", data=data)
    copies = Copies(monkeypatch)
    built = []
    real_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: built.append(a) or real_tensor(*a, **k))
    settings = run.epoch_settings(0, False)
    assert settings.augment
    run.train_epoch(0, False, settings)
    assert sorted(copies.moved) == [(1, 3, 1, 1), (1, 3, 1, 1), (3, 150), (150,)]  # mean, std; draws, order
    assert len(built) == 2  # mean and std, the first time they are needed
    copies.moved.clear(), built.clear()
    for epoch in (1, 2):
        run.train_epoch(epoch, False, run.epoch_settings(epoch, False))
    assert sorted(copies.moved) == [(3, 150), (3, 150), (150,), (150,)]  # two copies per epoch
    assert built == []  # no constant rebuilt per batch


def test_normalisation_constants_are_made_once_per_device():
    data = uint8_data()
    mean, std = data.normalisation("cpu")
    assert data.normalisation(torch.device("cpu")) == (mean, std)  # the same tensors
    assert mean.shape == (1, 3, 1, 1) and torch.equal(mean.flatten(), torch.tensor(data.mean))
    assert data.normalisation("cpu", dim=3)[0].shape == (1, 3, 1)
    x = data.x_train[:5]
    shape = (1, 3, 1, 1)
    want = (x.to(torch.float32) / 255.0 - torch.tensor(data.mean).view(shape)) / torch.tensor(data.std).view(shape)
    assert torch.equal(data.inputs(x), want)


def test_to_device_is_the_tensor_itself_when_already_there():
    t = torch.arange(3)
    assert _device.to_device(t, "cpu") is t


@pytest.mark.cuda
def test_to_device_copies_to_cuda_from_pinned_memory():
    t = torch.arange(1000)
    moved = _device.to_device(t, "cuda")
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), t)


# --------------------------------------------------------------------------------------------------
# The Fisher: read back once, chunk sized from free device memory


class Reads:
    """Counts reads of tensor values into Python (each a synchronisation on a GPU)."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counted(real))

    def _counted(self, real):
        def read(t, *args):
            self.count += 1
            return real(t, *args)
        return read


@pytest.mark.parametrize("method, per_chunk", [("exact", 1), ("empirical", 0)])
def test_fisher_reads_back_once_per_chunk_and_once_at_the_end(monkeypatch, method, per_chunk):
    torch.manual_seed(0)
    # float64, so that chunking changes the sums only at 1e-16 (in float32, a batch of 20 and one of 3 can take
    # matrix kernels that round differently, 1e-8 apart, depending on the CPU)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.arange(20) % 5
    kwargs = {"labels": y} if method == "empirical" else {}
    whole = fisher_trace(model, x, method=method, backend="func", chunk_size=20, **kwargs)
    reads = Reads(monkeypatch)
    chunked = fisher_trace(model, x, method=method, backend="func", chunk_size=3, **kwargs)  # 7 chunks
    # exact: which classes have some probability, per chunk (was one read per class); empirical: the labels'
    # range, once; then the sums, once (was one read per layer and one for the total)
    assert reads.count == 7 * per_chunk + (method == "empirical") + 1
    assert chunked.total == pytest.approx(whole.total, rel=1e-12)
    assert chunked.total == pytest.approx(sum(chunked.per_layer.values()), rel=1e-12)


@pytest.mark.parametrize("free, per_sample, n, want", [
    (80 * 2**30, 3 * 2**20, 300, 300),            # a big free GPU: the whole probe in one chunk
    (8 * 2**30, 100 * 2**20, 300, 20),            # 2 GiB budget / 100 MiB per sample
    (2**20, 2**20, 300, 256),                     # little free memory: never under the CPU budget
    (80 * 2**30, 2**40, 300, 1),                  # at least one
])
def test_fisher_chunk_is_sized_from_free_device_memory(free, per_sample, n, want):
    budget = F.chunk_budget("cuda", free_bytes=free)
    assert budget == max(F.CHUNK_BUDGET_BYTES, int(free * F.CUDA_FREE_FRACTION))
    assert F.chunk_size_for(per_sample, n, budget) == want == max(1, min(n, budget // per_sample))
    assert F.chunk_budget("cpu", free_bytes=free) == F.CHUNK_BUDGET_BYTES  # off CUDA: as before


def test_fisher_chunk_on_cuda_uses_the_free_memory(monkeypatch):
    """`_auto_chunk` asks `chunk_budget` for its device's budget: a (pretended) CUDA budget of 8 times the
    CPU's gives chunks 8 times larger."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(300, 4))
    x = torch.randn(5000, 300)
    modules = F._trainable_modules(model)
    cpu = F._auto_chunk(model, x, modules, "func")
    monkeypatch.setattr(F, "chunk_budget", lambda device: 8 * F.CHUNK_BUDGET_BYTES)
    assert cpu < 5000 // 8 and F._auto_chunk(model, x, modules, "func") in range(8 * cpu, 8 * cpu + 8)


# --------------------------------------------------------------------------------------------------
# torch.compile: one batch shape, no recompile after the first epoch


def test_compile_drops_the_partial_last_batch_and_nothing_else():
    data = image_data(n=150)  # batches of 64: 64, 64, 22
    plain = train_trial(image_trial(), "cpu", data=data)
    compiled = train_trial(image_trial(engine={"compile": True}), "cpu", data=data)
    assert [len(i) for i in plain.batches(0, "train")] == [64, 64, 22]
    assert [len(y) for _, y in compiled.train_batches(0, False)] == [64, 64]
    for (x, y), (xp, yp) in zip(compiled.train_batches(0, False), plain.train_batches(0, False)):
        assert torch.equal(x, xp) and torch.equal(y, yp)  # the same batches and draws, the last one left out
    assert [len(i) for i in compiled.batches(0, "train", 200, drop_last=True)] == [150]  # the only batch stays


@pytest.mark.slow
def test_compiled_trial_compiles_in_its_first_epoch_only(monkeypatch):
    """With a partial last batch and a partial last test chunk (EVAL_BATCH 15 on 32 test examples): two
    graphs (training, testing) in the first epoch, none after, none for a second trial in the process."""
    monkeypatch.setattr(T, "EVAL_BATCH", 15)
    data = image_data(n=150)
    counts = []
    for _ in range(2):
        run = train_trial(image_trial(engine={"compile": True}, epochs=3), "cpu", data=data)
        counts.append([compiled_frames() for _ in run])  # after initialisation, epochs 0, 1, 2
    first = counts[0]
    assert first[1] == first[2] == first[3] == counts[1][0] == counts[1][-1]
    # the compiled trial's test results equal the plain model's on the same weights (the padding is ignored)
    plain = train_trial(image_trial(epochs=3), "cpu", data=data)
    plain.model.load_state_dict(run.model.state_dict())
    loss, acc = run.evaluate(data.x_test, data.y_test)
    loss_plain, acc_plain = plain.evaluate(data.x_test, data.y_test)
    assert loss == pytest.approx(loss_plain, rel=1e-4) and acc == acc_plain


def test_testing_sums_on_the_device_as_python_did(monkeypatch):
    """`evaluate` sums on the device and reads back once: the same numbers, bit for bit, as the float sums
    per chunk it made before (here 3 chunks)."""
    monkeypatch.setattr(T, "EVAL_BATCH", 15)
    data = image_data(n=150)
    run = train_trial(image_trial(), "cpu", data=data)
    run.model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, 32, 15):
            logits = run.model(data.x_test[i:i + 15]).float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, data.y_test[i:i + 15], reduction="sum"))
            correct += int((logits.argmax(1) == data.y_test[i:i + 15]).sum())
    assert run.evaluate(data.x_test, data.y_test) == (loss_sum / 32, correct / 32)
