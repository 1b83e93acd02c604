"""Tests of cpsweep.engine.fisher against brute-force loops and a closed form, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cpsweep.engine.fisher import FisherTrace, fisher_trace

BACKENDS = ("func", "gram")
RTOL = 1e-8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models are tiny: one intra-op thread is fastest and immune to oversubscribed CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- models


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so BN's gradients are generic."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return model


def mlp() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4)), (2, 3)


def conv2d() -> tuple[nn.Module, tuple[int, ...]]:
    # conv "1" hits the bmm path of the weight norm (m·D <= T(m+D): 4·27 vs 25·31), conv "4" the Gram path
    # (16·36 > 9·52); conv "7" has string padding ("same", with dilation 2) and no bias.
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 5, 3, padding="same", dilation=2, bias=False), nn.BatchNorm2d(5), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)), (3, 9, 9)


def conv1d() -> tuple[nn.Module, tuple[int, ...]]:
    # MNIST-1D-like signals (N, 1, L); the second conv pads by reflection (explicit F.pad path)
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv1d(1, 4, 5, padding=2, bias=False), nn.BatchNorm1d(4), nn.ReLU(),
        nn.Conv1d(4, 6, 5, stride=2, padding=2, padding_mode="reflect"), nn.BatchNorm1d(6), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 4)), (1, 16)


class TokenNet(nn.Module):
    """A Linear applied to (B, T, d) inputs (extra dims), then a flat Linear."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 5)
        self.head = nn.Linear(15, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.proj(x)).flatten(1))


def tokens() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(3)
    return TokenNet(), (3, 4)


MODELS = {"mlp": mlp, "conv2d": conv2d, "conv1d": conv1d, "tokens": tokens}


def make(name: str, n: int = 5, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    model, shape = MODELS[name]()
    gen = torch.Generator().manual_seed(seed)
    model = _randomise_bn(model.double().eval(), gen)
    return model, torch.randn((n, *shape), generator=gen, dtype=torch.float64)


# ---------------------------------------------------------------------------------------- references


def trainable_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if any(p.requires_grad for p in m.parameters(recurse=False))}


def brute_force(model: nn.Module, x: torch.Tensor, method: str = "exact", labels=None, drawn=None):
    """Mean over examples of sum over (class, weight) of weight·||d log p(class|x_i)/dw||², per module."""
    model.eval()
    mods = trainable_modules(model)
    per = {n: 0.0 for n in mods}
    for i in range(x.shape[0]):
        logp = torch.log_softmax(model(x[i:i + 1]), dim=1)[0]
        C = logp.shape[0]
        if method == "exact":
            pairs = [(c, logp[c].exp().item()) for c in range(C)]
        elif method == "sampled":
            pairs = [(int(c), 1.0 / drawn.shape[1]) for c in drawn[i]]
        else:
            pairs = [(int(labels[i]), 1.0)]
        for c, w in pairs:
            for name, m in mods.items():
                params = [p for p in m.parameters(recurse=False) if p.requires_grad]
                grads = torch.autograd.grad(logp[c], params, retain_graph=True, allow_unused=True)
                per[name] += w * sum(float(g.square().sum()) for g in grads if g is not None)
    per = {n: v / x.shape[0] for n, v in per.items()}
    return sum(per.values()), per


def assert_matches(ft: FisherTrace, ref) -> None:
    total, per = ref
    assert isinstance(ft.total, float) and all(isinstance(v, float) for v in ft.per_layer.values())
    assert list(ft.per_layer) == list(per)
    assert ft.total == pytest.approx(total, rel=RTOL)
    for name, v in per.items():
        assert ft.per_layer[name] == pytest.approx(v, rel=RTOL, abs=1e-12 * total), name


# ------------------------------------------------------------------------------- against brute force


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_exact_matches_brute_force(name, backend):
    model, x = make(name)
    ft = fisher_trace(model, x, backend=backend)
    assert ft.backend == backend and ft.method == "exact" and ft.num_inputs == x.shape[0]
    assert_matches(ft, brute_force(model, x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["mlp", "conv2d", "conv1d"])
def test_empirical_matches_brute_force(name, backend):
    model, x = make(name)
    C = model(x[:1]).shape[1]
    labels = torch.arange(x.shape[0]) % C
    ft = fisher_trace(model, x, method="empirical", labels=labels, backend=backend)
    assert_matches(ft, brute_force(model, x, "empirical", labels=labels))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["mlp", "conv2d", "conv1d"])
def test_sampled_reproduces_the_draws(name, backend):
    model, x = make(name)
    samples, seed = 3, 123
    # the documented draw: all inputs at once, from the float64 softmax, with the given generator
    p = torch.softmax(model(x).detach().double(), dim=1)
    drawn = torch.multinomial(p, samples, replacement=True, generator=torch.Generator().manual_seed(seed))
    ft = fisher_trace(model, x, method="sampled", samples=samples, generator=torch.Generator().manual_seed(seed),
                      backend=backend, chunk_size=2)
    assert_matches(ft, brute_force(model, x, "sampled", drawn=drawn))


def test_sampled_approaches_exact_with_many_samples():
    model, x = make("mlp", n=3)
    exact = fisher_trace(model, x).total
    est = fisher_trace(model, x, method="sampled", samples=2000, generator=torch.Generator().manual_seed(0)).total
    assert est == pytest.approx(exact, rel=0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_regression_closed_form(backend):
    # log p_c = (W x + b)_c - logsumexp: grads (e_c - p) xᵀ and (e_c - p); E_c ||e_c - p||² = 1 - ||p||²
    torch.manual_seed(4)
    model = nn.Linear(7, 5).double()
    x = torch.randn(11, 7, dtype=torch.float64)
    p = torch.softmax(model(x).detach(), dim=1)
    expected = ((x.square().sum(1) + 1) * (1 - p.square().sum(1))).mean().item()
    ft = fisher_trace(model, x, backend=backend)
    assert ft.total == pytest.approx(expected, rel=RTOL)
    assert list(ft.per_layer) == [""] and ft.per_layer[""] == pytest.approx(expected, rel=RTOL)


# ---------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_layer_keys_and_sum(backend):
    model, x = make("conv2d")
    model[0].bias.requires_grad_(False)  # module 0 still owns a trainable weight
    for p in model[4].parameters():  # module 4 owns no trainable parameter any more
        p.requires_grad_(False)
    ft = fisher_trace(model, x, backend=backend)
    assert list(ft.per_layer) == ["0", "1", "3", "6", "7", "11"]
    assert math.fsum(ft.per_layer.values()) == pytest.approx(ft.total, rel=1e-12)
    assert_matches(ft, brute_force(model, x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_not_sum(backend):
    model, x = make("conv1d")
    once = fisher_trace(model, x, backend=backend)
    twice = fisher_trace(model, torch.cat([x, x, x]), backend=backend)
    assert twice.total == pytest.approx(once.total, rel=1e-12)
    assert twice.num_inputs == 3 * x.shape[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["exact", "sampled", "empirical"])
def test_chunking_does_not_change_the_result(backend, method):
    model, x = make("conv2d", n=7)
    kw = {"labels": torch.arange(7) % 3} if method == "empirical" else {}
    results = []
    for chunk in (1, 3, 100, None):
        if method == "sampled":
            kw = {"samples": 2, "generator": torch.Generator().manual_seed(9)}
        results.append(fisher_trace(model, x, method=method, backend=backend, chunk_size=chunk, **kw).total)
    assert results == pytest.approx([results[0]] * 4, rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_mode_used_flags_restored_grads_untouched(backend):
    model, x = make("conv2d")
    reference = brute_force(model, x)  # eval mode
    model.train()
    model[4].eval()  # a mixed state must come back as it was
    flags = [m.training for m in model.modules()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    ft = fisher_trace(model, x, backend=backend)
    assert_matches(ft, reference)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # BN stats not updated
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")


def test_flags_restored_on_error():
    model, x = make("mlp")
    model.train()
    with pytest.raises(ValueError, match="must lie in"):
        fisher_trace(model, x, method="empirical", labels=torch.full((x.shape[0],), 99))
    assert all(m.training for m in model.modules())


def test_backends_agree_in_float32():
    model, x = make("conv2d", n=6)
    model, x = model.float(), x.float()
    a, b = (fisher_trace(model, x, backend=bk) for bk in BACKENDS)
    assert b.total == pytest.approx(a.total, rel=1e-4)
    for name in a.per_layer:
        assert b.per_layer[name] == pytest.approx(a.per_layer[name], rel=1e-4, abs=1e-6 * a.total)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_relu_after_bn(backend):
    # ReLU(inplace=True) overwrites BN's output; the gram backend must still use BN's own output gradient
    torch.manual_seed(5)
    model = _randomise_bn(nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(inplace=True),
                                        nn.Linear(6, 3)).double(), torch.Generator().manual_seed(0))
    x = torch.randn(5, 5, dtype=torch.float64)
    assert_matches(fisher_trace(model, x, backend=backend, chunk_size=2), brute_force(model, x))


# ------------------------------------------------------------------------ unsupported modules, errors


class Scale(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class RawParamNet(nn.Module):
    """A root module with a raw nn.Parameter used in forward, plus a Scale module."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.scale = Scale(6)
        self.fc2 = nn.Linear(6, 3)
        self.shift = nn.Parameter(torch.linspace(-1.0, 1.0, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.scale(self.fc1(x)))) + self.shift


def test_auto_falls_back_to_func_for_unsupported_module():
    torch.manual_seed(6)
    model = RawParamNet().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    ft = fisher_trace(model, x)
    assert ft.backend == "func"
    assert set(ft.per_layer) == {"", "fc1", "scale", "fc2"}
    assert_matches(ft, brute_force(model, x))
    with pytest.raises(ValueError, match="RawParamNet"):
        fisher_trace(model, x, backend="gram")
    model.shift.requires_grad_(False)
    with pytest.raises(ValueError, match="Scale"):
        fisher_trace(model, x, backend="gram")


def test_auto_falls_back_for_module_called_twice():
    torch.manual_seed(7)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="more than once"):
        fisher_trace(model, x, backend="gram")
    ft = fisher_trace(model, x)
    assert ft.backend == "func"
    assert_matches(ft, brute_force(model, x))
    # the fallback found at run time draws the documented labels again
    p = torch.softmax(model(x).detach(), dim=1)
    drawn = torch.multinomial(p, 2, replacement=True, generator=torch.Generator().manual_seed(1))
    ft = fisher_trace(model, x, method="sampled", samples=2, generator=torch.Generator().manual_seed(1))
    assert_matches(ft, brute_force(model, x, "sampled", drawn=drawn))


def test_auto_prefers_a_supported_backend():
    model, x = make("mlp")
    assert fisher_trace(model, x).backend in BACKENDS


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "fisher"}, "unknown method"),
    ({"backend": "jax"}, "unknown backend"),
    ({"method": "empirical"}, "needs labels"),
    ({"method": "empirical", "labels": torch.zeros(2, dtype=torch.long)}, "shape"),
    ({"method": "empirical", "labels": torch.zeros(5)}, "integer"),
    ({"labels": torch.zeros(5, dtype=torch.long)}, "only used by method='empirical'"),
    ({"method": "sampled"}, "needs generator"),
    ({"method": "sampled", "generator": 0}, "needs generator"),
    ({"generator": torch.Generator()}, "only used by method='sampled'"),
    ({"method": "sampled", "generator": torch.Generator(), "samples": 0}, "samples"),
    ({"samples": 3}, "only used by method='sampled'"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"method": "empirical", "labels": torch.full((5,), 4)}, r"\[0, 4\)"),
])
def test_bad_arguments(kwargs, match):
    model, x = make("mlp")
    with pytest.raises(ValueError, match=match):
        fisher_trace(model, x, **kwargs)


def test_bad_inputs_and_logits():
    model, x = make("mlp")
    with pytest.raises(ValueError, match="N >= 1"):
        fisher_trace(model, x[:0])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        fisher_trace(nn.Sequential(nn.Flatten(0)).double(), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_matches_cpu(backend):
    model, x = make("conv2d")
    cpu = fisher_trace(model, x, backend=backend)
    gpu = fisher_trace(model.cuda(), x.cuda(), backend=backend)
    assert gpu.total == pytest.approx(cpu.total, rel=1e-8)
    gen = torch.Generator(device="cuda").manual_seed(0)
    assert fisher_trace(model, x.cuda(), method="sampled", generator=gen, backend=backend).total > 0
