"""fp32 means fp32, GPU determinism is a stated mode (engine.tf32, engine.deterministic), random draws are
made on the CPU on every device, and a trial given a GPU that finds none fails with one line (issue 27,
item 3). Everything here runs on the CPU; the tests marked for CUDA run where a GPU is."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import subprocess
import sys

import pytest
import torch
from tiny_specs import UNIT, tiny_sweep
from trial_runs import comparable

import cpsweep.engine.trial as trial_module
from cpsweep.config.sharing import prefix_keys
from cpsweep.config.spec import EngineSpec
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.config.views import computed_settings, hashed_settings
from cpsweep.engine import numerics
from cpsweep.engine.fisher import fisher_trace
from cpsweep.engine.models import build_model
from cpsweep.engine.sampling import derive_seed, make_generator
from cpsweep.engine.trial import train_trial
from cpsweep.errors import CpsweepError
from cpsweep.storage.records import TRIAL_FIELDS, trial_row


def trial(onset=1, length=2, seed=0, **changes):
    return parse_sweep(tiny_sweep(UNIT, **changes)).make_trial(onset, length, seed)


@pytest.fixture
def tf32_flags():
    """The two TF32 flags, restored after the test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


# -- the options ---------------------------------------------------------------------------------------

def test_the_options_are_off_by_default_and_leave_hashes_and_prefix_keys_alone():
    assert EngineSpec().tf32 is False and EngineSpec().deterministic is False
    t = trial()
    for name in ("tf32", "deterministic"):
        on = dataclasses.replace(t, engine=EngineSpec(**{name: True}))
        assert hashed_settings(on)["engine"][name] is True and "engine" not in hashed_settings(t)
        assert computed_settings(on)["engine"][name] is True and name not in computed_settings(t)["engine"]
        assert prefix_keys(on) != prefix_keys(t)  # (a GPU computes otherwise: no sharing across the two)
    bf16 = dataclasses.replace(t, engine=EngineSpec(precision="bf16"))  # another engine option set: still out
    assert hashed_settings(bf16)["engine"] == {"precision": "bf16", "channels_last": False, "compile": False}


def test_the_options_parse_from_a_sweep_file():
    t = trial(engine={"tf32": True, "deterministic": True})
    assert t.engine == EngineSpec(tf32=True, deterministic=True)


# -- TF32 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("on", [False, True])
def test_a_trial_sets_tf32_from_its_option_at_its_start(on, tf32_flags):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not on
    train_trial(trial(engine={"tf32": on}), "cpu")
    assert tf32() == (on, on)


def test_the_fisher_is_measured_with_tf32_off_whatever_the_option(tf32_flags):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            seen.append(tf32())
            return self.fc(x)

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    fisher_trace(Spy(), torch.randn(5, 4))
    assert seen and set(seen) == {(False, False)}
    assert tf32() == (True, True)  # restored after
    with pytest.raises(ValueError):  # restored after an error too
        fisher_trace(Spy(), torch.randn(5, 4), method="nonsense")
    assert tf32() == (True, True)


def test_a_cpu_trial_records_how_it_ran(tmp_path):
    from cpsweep.storage.store import Store

    threads = torch.get_num_threads()
    try:  # the thread count splits the CPU's reductions: part of what reproduces a trial, so recorded
        torch.set_num_threads(1)
        run = train_trial(trial(engine={"tf32": True, "deterministic": True}), "cpu")
        assert run.numerics == "cpu fp32 1 thread"
        assert train_trial(trial(engine={"precision": "bf16"}), "cpu").numerics == "cpu bf16 1 thread"
        records = list(run)
        torch.set_num_threads(2)
        assert run.numerics == "cpu fp32 2 threads"
    finally:
        torch.set_num_threads(threads)
    row = trial_row(run.trial, records, "ok", numerics="cpu fp32 1 thread")
    assert row["numerics"] == "cpu fp32 1 thread" and set(row) <= set(TRIAL_FIELDS)
    store = Store(str(tmp_path))  # as the trainable writes a finished trial's shard
    store.write_shard(run.trial, records, "ok", numerics="cpu fp32 1 thread")
    assert store.read_shard(run.trial.trial_id)["trials"].numerics.tolist() == ["cpu fp32 1 thread"]


def test_a_cuda_trial_would_record_its_modes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    label = numerics.numerics_label
    assert label(EngineSpec(), "cuda") == "cuda fp32 tf32-off nondeterministic (Some GPU)"
    assert label(EngineSpec(precision="bf16", tf32=True, deterministic=True), "cuda:0") == \
        "cuda bf16 tf32-on deterministic (Some GPU)"


def test_tf32_changes_nothing_on_the_cpu(tf32_flags):
    assert comparable(train_trial(trial(engine={"tf32": True}), "cpu")) == comparable(train_trial(trial(), "cpu"))


# -- the deterministic mode ----------------------------------------------------------------------------

@pytest.mark.parametrize("on", [False, True])
def test_the_deterministic_mode_sets_every_flag_on_a_gpu(on, monkeypatch, tf32_flags):
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: calls.append(mode))
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", not on)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    numerics.set_numerics(EngineSpec(deterministic=on), "cuda")
    assert calls == [on] and torch.backends.cudnn.deterministic is on
    assert torch.backends.cudnn.benchmark is not on  # (off for determinism; left as it was otherwise)
    assert (numerics.os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8") is on
    calls.clear()
    numerics.set_numerics(EngineSpec(deterministic=True), "cpu")  # the CPU is deterministic anyway
    assert calls == []


def test_an_existing_cublas_setting_is_kept(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    numerics.prepare_process(EngineSpec(deterministic=True))
    assert numerics.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_every_worker_of_a_launch_with_a_deterministic_trial_starts_with_the_cublas_setting(monkeypatch):
    """A Ray worker may have run a non-deterministic GPU trial (and made its cuBLAS handles) before a
    deterministic one: the setting is in every worker's environment from its start, kept if the user set
    it, and absent when no trial asks for determinism."""
    from cpsweep.sweep._cluster import runtime_environment

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert numerics.worker_environment([EngineSpec(), EngineSpec(tf32=True)]) == {}
    env = numerics.worker_environment([EngineSpec(), EngineSpec(deterministic=True)])
    assert env == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert runtime_environment([], {}) == {}
    assert runtime_environment(["/p/plug.py"], env) == {"runtime_env": {"py_modules": ["/p/plug.py"],
                                                                        "env_vars": env}}
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert numerics.worker_environment([EngineSpec(deterministic=True)]) == {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}


def test_a_launch_gives_its_ray_workers_the_environment_of_its_trials(tmp_path, monkeypatch):
    """A launch hands its trials' worker environment to `connect`, and a real local Ray started by `connect`
    gives it to a worker although the driver's environment lacks it."""
    import cpsweep.sweep.launch as launch_module

    class Connected(Exception):
        pass

    def connect_stub(address, verbose, ship=(), env=None):
        seen.append(env)
        raise Connected  # (nothing is written before Ray is reached)

    seen: list = []
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(launch_module, "connect", connect_stub)
    for deterministic in (False, True):
        spec = tiny_sweep(engine={"deterministic": deterministic}, epochs=2, grid={"onset": [0], "length": [1]})
        with pytest.raises(Connected):
            launch_module.launch(spec, storage=str(tmp_path), report=False)
    assert seen == [{}, {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}]

    # in a process of its own (a Ray started with a token leaves process-wide state that other tests' Rays
    # must not inherit)
    code = ("import os, ray; from cpsweep.sweep._cluster import connect; connect(None, False, env={env!r}); "
            "print(ray.get(ray.remote(lambda: os.environ.get('CUBLAS_WORKSPACE_CONFIG')).remote()), "
            "os.environ.get('CUBLAS_WORKSPACE_CONFIG'))").format(env=seen[-1])
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [":4096:8", "None"]  # the worker has it, the driver does not


@pytest.mark.parametrize("shape", [(4, 6, 5, 7), (4, 6, 9)])
def test_global_average_pooling_is_adaptive_pooling_on_the_cpu_and_a_mean_in_deterministic_cuda(shape):
    x = torch.randn(shape)
    pool = numerics.GlobalAvgPool()
    F = torch.nn.functional
    ref = F.adaptive_avg_pool1d(x, 1) if len(shape) == 3 else F.adaptive_avg_pool2d(x, 1)
    assert torch.equal(pool(x), ref)  # bit for bit: CPU results are unchanged
    assert torch.allclose(x.mean(dim=tuple(range(2, x.dim())), keepdim=True), ref, atol=1e-6)
    for name, options, in_shape in [("all_cnn_c", {"width": 0.1}, (3, 8, 8)), ("cnn1d", {"channels": 4}, (1, 16)),
                                    ("resnet18", {"width": 4}, (3, 8, 8))]:
        model = build_model(name, options, in_shape, 10, seed=0)
        assert not any(isinstance(m, (torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d)) for m in model.modules())
        assert any(isinstance(m, numerics.GlobalAvgPool) for m in model.modules())


# -- random draws on the CPU ---------------------------------------------------------------------------

def test_the_deficit_and_fisher_draws_are_made_on_the_cpu_whatever_the_device(monkeypatch):
    """With a stand-in device (the run believes it is on "cuda", its tensors stay on the CPU), the noise
    deficit's, the sampled Fisher's and the metrics' generators are still made on the CPU (the epoch order
    is asked for on the stand-in, which shows the stand-in took effect)."""
    made, orders = [], []
    real_order = trial_module.epoch_order

    def spy(seed, device="cpu"):
        made.append((seed, torch.device(device).type))
        return make_generator(seed)  # (a real CPU generator: the tensors are on the CPU)

    t = trial(onset=0, length=2, deficit={"name": "noise", "std": 1.0}, fisher={"every": 1, "probe_per_class": 2,
                                                                                "method": "sampled"})
    run = train_trial(t, "cpu")
    monkeypatch.setattr(trial_module, "make_generator", spy)
    monkeypatch.setattr(trial_module, "epoch_order", lambda n, seed, epoch, device="cpu":
                        orders.append(torch.device(device).type) or real_order(n, seed, epoch))
    run.device = torch.device("cuda")
    monkeypatch.setattr(run, "autocast", contextlib.nullcontext)  # (torch.autocast("cuda") would start CUDA)
    monkeypatch.setattr(run, "refresh_bn", lambda epoch: None)  # (what would touch the device: not drawn)
    monkeypatch.setattr(run, "evaluate", lambda x, y: (0.0, 1.0))
    list(run.train_batches(0, True))
    run.evaluate_epoch(0, math.nan, math.nan)
    devices = {seed: device for seed, device in made}
    assert devices[derive_seed(t.seed, "deficit", 0)] == "cpu"
    assert devices[derive_seed(t.seed, "fisher", 0)] == "cpu"
    assert devices[derive_seed(t.seed, "metric", 0)] == "cpu"
    assert orders and set(orders) == {"cuda"}


def test_the_noise_is_the_cpu_generators_numbers():
    t = trial(onset=0, length=2, deficit={"name": "noise", "std": 2.0})
    run = train_trial(t, "cpu")
    (x, _), *_ = run.train_batches(0, True)
    g = torch.Generator().manual_seed(derive_seed(t.seed, "deficit", 0))
    assert torch.equal(x, torch.randn(x.shape, generator=g) * 2.0)


# -- a GPU asked for and not found ---------------------------------------------------------------------

def test_a_trial_given_a_gpu_that_finds_none_fails_with_one_line(monkeypatch, tmp_path):
    from cpsweep.sweep import trainable
    from cpsweep.sweep.preflight import TRIAL_ERROR
    from cpsweep.sweep.task import TrialTask

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # (the trainable's, for this process)
    assert trainable.trial_device("baseline-s0", 0) == "cpu"
    asked = r"trial baseline-s0 asks for 0.5 GPU \(resources.gpu\) .*\(resources.gpu: 0\)"
    with pytest.raises(CpsweepError, match=asked) as e:
        trainable.trial_device("baseline-s0", 0.5)
    assert not trainable.transient(e.value)
    # through the trainable: reported (not raised, so Tune does not retry it) as one line
    reported = []
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, **kw: reported.append(metrics))
    t = trial()
    task = TrialTask(trial=t, store=str(tmp_path), cpus=1, gpus=1, spec_hash="h", git_commit="")
    trainable.run_trial(task.to_config())
    [line] = [r[TRIAL_ERROR] for r in reported]
    assert "\n" not in line and line.startswith(f"trial {t.trial_id} asks for 1 GPU") and "not retried" in line
    assert (tmp_path / "logs" / f"{t.trial_id}.txt").exists()


@pytest.mark.cuda
def test_gpu_trials_in_deterministic_mode_resume_bit_for_bit(tmp_path):
    """On a GPU, engine.deterministic gives the CPU's guarantee: a resumed trial equals the uninterrupted
    one bit for bit; and the noise deficit draws the CPU's numbers."""
    t = trial(onset=1, length=2, deficit={"name": "noise", "std": 1.0},
              fisher={"every": 1, "probe_per_class": 2, "method": "sampled"}, engine={"deterministic": True})
    full = train_trial(t, "cuda")
    assert full.numerics.startswith("cuda fp32 tf32-off deterministic")
    full = comparable(full)
    run = train_trial(t, "cuda")
    first = [next(run), next(run)]
    state = run.state_dict()
    rest = list(train_trial(t, "cuda", resume=state))
    assert comparable(first + rest) == full
    (x, _), *_ = train_trial(t, "cuda").train_batches(1, True)
    g = torch.Generator().manual_seed(derive_seed(t.seed, "deficit", 1))
    assert torch.equal(x.cpu(), torch.randn(x.shape, generator=g))
