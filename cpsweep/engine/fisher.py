"""Trace of the Fisher Information of the weights, the paper's measure of "information in the weights".

What is computed: for a classifier whose `model(x)` returns logits (N, C) with p_w(y|x) = softmax,

    tr F(w) = E_x E_{y ~ p_w(y|x)} ||∇_w log p_w(y|x)||²,

the squared gradient norm over all trainable parameters (requires_grad), with E_x the MEAN over the given
inputs (a sum would scale with the size of the probe set; the mean does not). `per_layer` splits the trace
by the module that owns each parameter.

- method="exact" (default): the expectation over y is done exactly, sum_c p(c|x) ||∇_w log p(c|x)||²
  (C backward passes per chunk, no sampling noise).
- method="sampled": Monte Carlo over y; `samples` labels per input are drawn from p_w(y|x).
- method="empirical": the "empirical Fisher" E_x ||∇_w log p_w(y_x|x)||² with the data's labels y_x. This
  is a DIFFERENT quantity from the (true) Fisher above: it uses the data labels rather than the model's
  own predictive distribution, and it does not generally equal, approximate or bound tr F.
- method="variational": the paper's noise-based estimate (see below): sum_i beta / sigma_i^2 for the
  largest weight noise that does not increase the data-label loss; a DIFFERENT, biased estimator of tr F.

Relation to the paper. Achille, Rovere & Soatto ("Critical Learning Periods in Deep Networks", ICLR 2019)
define the true Fisher, with y sampled from the model. Public re-implementations compute the trace from
per-example gradients on a fixed, class-balanced probe set of 300 clean training images (30 per class),
with the model in eval mode; this module computes the exact trace on such a probe set. For its All-CNN
figures the paper itself used a noise-based (variational) approximation of the Fisher (also Achille,
Paolini & Soatto, "Where is the information in a deep network?"), available as method="variational";
absolute values of the two need not agree (its bias is measured there): compare shapes and trends.

method="variational": the paper's noise-based estimate; its definition, bias, cost and measured accuracy
are in `_fisher_variational.py`.

Evaluation: the model is put in eval mode (BatchNorm uses running statistics, dropout is off) and every
module's training flag is restored afterwards. Parameters' `.grad` are never touched. Inputs are processed
in chunks to bound memory. Two backends give the same numbers:

- "func": per-sample gradients with torch.func (functional_call + vmap + grad); any model.
- "gram": per-layer squared norms from captured activations and output gradients, without materialising
  per-sample gradients (`_fisher_gram.py`); Linear, Conv1d/2d, BatchNorm1d/2d only.
- "auto": "gram" when every parameter-owning module is supported, else "func" (also when gram finds a
  problem at run time, e.g. a module called twice per forward). On benchmarks/bench_fisher.py (CPU, one
  thread) gram took 1/1.6 of func's time for All-CNN-C's exact trace and 1/5 for cnn1d's; with one
  sampled label the two were within 10% on All-CNN-C and gram 1.2-1.4x faster on cnn1d.

method="variational" uses neither backend (no per-sample gradients): it accepts "auto" and "func" and
reports "func".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._fisher_gram import GramEngine, GramUnsupported, check_supported, temp_numel
from ._fisher_variational import check_variational_args, variational
from .numerics import strict_fp32

__all__ = ["FisherTrace", "fisher_trace"]

METHODS = ("exact", "sampled", "empirical", "variational")
BACKENDS = ("auto", "func", "gram")
AUTO_ORDER = ("gram", "func")  # what backend="auto" tries first (from the benchmark)
CHUNK_BUDGET_BYTES = 256 * 2**20  # a chunk's per-sample memory off CUDA (and at least this on CUDA)
CUDA_FREE_FRACTION = 0.25  # on CUDA: of the device's free memory (several trials may share the device)
NEEDS_LABELS = ("empirical", "variational")
NEEDS_GENERATOR = ("sampled", "variational")


@dataclass(frozen=True)
class FisherTrace:
    """Result of `fisher_trace`.

    Attributes:
        total: tr F(w), mean over the inputs.
        per_layer: module name (as in `model.named_modules()`, "" for the root) -> its share of `total`, for
            every module that directly owns trainable parameters; the values sum to `total`.
        method: the method used.
        backend: the backend actually used ("func" or "gram"; never "auto"; "func" for "variational").
        num_inputs: number of inputs averaged over.
    """

    total: float
    per_layer: dict[str, float] = field(default_factory=dict)
    method: str = "exact"
    backend: str = "func"
    num_inputs: int = 0


@strict_fp32  # TF32 off: the Fisher is fp32 whatever engine.tf32 (engine/numerics.py)
def fisher_trace(model: nn.Module, inputs: torch.Tensor, *, method: str = "exact",
                 labels: torch.Tensor | None = None, samples: int = 1, generator: torch.Generator | None = None,
                 backend: str = "auto", chunk_size: int | None = None, beta: float | None = None,
                 steps: int | None = None) -> FisherTrace:
    """Trace of the Fisher Information of the trainable weights, mean over `inputs` (see module docstring).

    Args:
        model: classifier; `model(x)` returns logits (B, C). Evaluated in eval mode, on the inputs' device.
        inputs: (N, ...) probe inputs, N >= 1.
        method: "exact" (sum over classes weighted by p), "sampled" (Monte Carlo over y ~ p),
            "empirical" (the given `labels`; a different quantity, see the module docstring) or
            "variational" (the paper's noise-based estimate with the given `labels`; see the module docstring).
        labels: (N,) integer class labels; required for methods "empirical" and "variational", only allowed
            there.
        samples: labels drawn per input for method="sampled" (>= 1); must be 1 otherwise.
        generator: torch.Generator, required for methods "sampled" and "variational", only allowed there.
            "sampled": the labels are drawn once for all inputs as
            `torch.multinomial(p, samples, replacement=True, generator=generator)` with p (N, C) the float64
            softmax probabilities, on the generator's device; so the result does not depend on `chunk_size`.
            "variational": every noise draw, on the generator's device, then moved to the inputs' device.
        backend: "auto", "func" or "gram" (see the module docstring); "variational" accepts "auto" and
            "func" (it uses functional_call, no per-sample gradients).
        chunk_size: inputs per chunk; None picks one so that a chunk's per-sample gradient memory stays
            under `chunk_budget`: ~256 MB, on CUDA a quarter of the device's free memory (`chunk_size_for`).
        beta: method="variational" only: the weight of the log-variance term, in (0, 1e-6]; None: the
            default 1e-24 (see `_fisher_variational.py`).
        steps: method="variational" only: Adam steps, >= 1; None (default): 300.

    Returns:
        FisherTrace with `total` and `per_layer` as Python floats.

    Raises:
        ValueError: unknown method or backend, missing or superfluous labels/generator/samples, bad shapes
            or label values, non-2-D logits, or backend="gram" with a module it does not support.
    """
    _check_args(model, inputs, method, labels, samples, generator, backend, chunk_size)
    check_variational_args(method, backend, beta, steps)
    modules = _trainable_modules(model)
    if method == "variational":
        flags = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            chunk = chunk_size or _auto_chunk(model, inputs, modules, "variational")
            owner = _owners(dict(model.named_parameters()), modules)
            total, per_layer = variational(model, inputs, labels, modules, owner, generator, beta, steps, chunk)
            return FisherTrace(total, per_layer, "variational", "func", inputs.shape[0])
        finally:
            for m, flag in flags:
                m.training = flag
    if backend == "auto":
        try:
            check_supported(modules)
            order = AUTO_ORDER
        except GramUnsupported:
            order = ("func",)
    else:
        order = (backend,)
    flags = [(m, m.training) for m in model.modules()]
    rng_state = generator.get_state() if method == "sampled" else None
    try:
        model.eval()
        for i, name in enumerate(order):
            try:
                return _run(model, inputs, modules, name, method, labels, samples, generator, chunk_size)
            except GramUnsupported:  # found at run time, e.g. a module called twice per forward
                if i + 1 == len(order):
                    raise
                if rng_state is not None:  # draw the same labels again
                    generator.set_state(rng_state)
    finally:
        for m, flag in flags:
            m.training = flag
    raise AssertionError("unreachable")


def _check_args(model, inputs, method, labels, samples, generator, backend, chunk_size) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError("inputs must be a tensor (N, ...) with N >= 1")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if method in NEEDS_LABELS:
        if labels is None:
            raise ValueError(f"method={method!r} needs labels: a LongTensor (N,) of class indices")
        if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32) \
                or labels.shape != inputs.shape[:1]:
            raise ValueError(f"labels must be an integer tensor of shape ({inputs.shape[0]},), got "
                             f"{getattr(labels, 'dtype', type(labels))} {tuple(getattr(labels, 'shape', ()))}")
    elif labels is not None:
        raise ValueError(f"labels are only used by method='empirical' (the empirical Fisher) and 'variational'; "
                         f"method={method!r} uses labels drawn from the model, so pass labels=None")
    if method in NEEDS_GENERATOR:
        if not isinstance(generator, torch.Generator):
            what = "the labels" if method == "sampled" else "the weight noise"
            raise ValueError(f"method={method!r} needs generator=torch.Generator (seeded) to draw {what}")
    elif generator is not None:
        raise ValueError(f"generator is only used by method='sampled' and 'variational', not method={method!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    if method != "sampled" and samples != 1:
        raise ValueError(f"samples is only used by method='sampled', not method={method!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")


def _trainable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module for every module that directly owns a parameter with requires_grad."""
    return {name: m for name, m in model.named_modules()
            if any(p.requires_grad for p in m.parameters(recurse=False))}


def _owners(named: dict[str, nn.Parameter], modules: dict[str, nn.Module]) -> dict[str, str]:
    """Trainable parameter name -> name of the module that owns it (a tied parameter: its first owner)."""
    owned: dict[int, str] = {}
    for name, m in modules.items():
        for p in m.parameters(recurse=False):
            owned.setdefault(id(p), name)
    return {n: owned[id(p)] for n, p in named.items() if p.requires_grad}


def _run(model, inputs, modules, backend, method, labels, samples, generator, chunk_size) -> FisherTrace:
    """Accumulate sum over inputs and passes of weight·||grad||² per module; return the mean over inputs."""
    N = inputs.shape[0]
    device = inputs.device
    B = chunk_size or _auto_chunk(model, inputs, modules, backend)
    chunks = [(s, min(s + B, N)) for s in range(0, N, B)]
    drawn = None  # (N, samples) labels for method="sampled"
    if method == "sampled":
        with torch.no_grad():
            probs = torch.cat([_probs(model(inputs[s:e])) for s, e in chunks])  # (N, C) float64
        drawn = torch.multinomial(probs.to(generator.device), samples, replacement=True,
                                  generator=generator).to(device)
    engine = GramEngine(model, modules) if backend == "gram" else _FuncEngine(model, modules)
    acc = {name: torch.zeros((), dtype=torch.float64, device=device) for name in modules}
    try:
        for s, e in chunks:
            engine.start(inputs[s:e])
            if method == "exact":
                p = _probs(engine.logits())  # (b, C)
                present = (p.amax(0) > 0).tolist()  # the classes with some probability: one read per chunk
                passes = [(torch.full((e - s,), c, dtype=torch.long, device=device), p[:, c])
                          for c in range(p.shape[1]) if present[c]]
            elif method == "sampled":
                w = torch.full((e - s,), 1.0 / samples, dtype=torch.float64, device=device)
                passes = [(drawn[s:e, j], w) for j in range(samples)]
            else:
                y = labels[s:e].to(device=device, dtype=torch.long)
                C = engine.logits().shape[1]
                if s == 0 and bool(((labels < 0) | (labels >= C)).any()):  # all of them, one read
                    raise ValueError(f"labels must lie in [0, {C}) for a model with {C} classes")
                passes = [(y, torch.ones(e - s, dtype=torch.float64, device=device))]
            for y, w in passes:
                for name, v in engine.run_pass(y, w).items():
                    acc[name] += v
    finally:
        engine.close()
    sums = torch.stack(list(acc.values())).tolist() if acc else []  # read back once
    per_layer = {name: v / N for name, v in zip(acc, sums)}
    total = sum(sums, 0.0) / N  # float64 sums in the same order as on the device: the same number
    return FisherTrace(total, per_layer, method, backend, N)


def _probs(logits: torch.Tensor) -> torch.Tensor:
    """logits (B, C) -> softmax probabilities (B, C) in float64."""
    if logits.dim() != 2:
        raise ValueError(f"model(inputs) must return logits of shape (N, C), got {tuple(logits.shape)}")
    return torch.softmax(logits.detach().double(), dim=1)


class _FuncEngine:
    """The "func" backend: per-sample gradients by vmap(grad(log p(y|x))) over functional_call."""

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module]):
        self.model = model
        named = dict(model.named_parameters())  # tied parameters appear once
        self.params = {n: p.detach() for n, p in named.items() if p.requires_grad}
        frozen = {n: p.detach() for n, p in named.items() if not p.requires_grad}
        buffers = dict(model.named_buffers())
        self.owner = _owners(named, modules)  # param -> module name (a tied parameter: its first owner)

        def log_p(params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = functional_call(model, ({**params, **frozen}, buffers), (x.unsqueeze(0),))  # (1, C)
            return torch.log_softmax(logits.double(), dim=1)[0].gather(0, y.reshape(1)).sum()

        def sq_norms(params: dict, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {n: g.square().sum() for n, g in grad(log_p)(params, x, y).items()}  # one sample

        self._per_sample = vmap(sq_norms, in_dims=(None, 0, 0))  # -> {param: (B,)}
        # functional_call can leave swapped-in tensors behind when one module is registered under two
        # names (torch 2.14): remember every module's own tensors and put them back in close()
        self._saved = [(d, k, t) for m in model.modules() for d in (m._parameters, m._buffers) for k, t in d.items()]

    def start(self, x: torch.Tensor) -> None:
        self.x, self._logits = x, None

    def logits(self) -> torch.Tensor:
        if self._logits is None:
            with torch.no_grad():
                self._logits = self.model(self.x)
        return self._logits

    def run_pass(self, labels: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            sq = self._per_sample(self.params, self.x, labels)
        out: dict[str, torch.Tensor] = {}
        for n, v in sq.items():  # v (B,)
            term = (v.double() * weights).sum()
            out[self.owner[n]] = out[self.owner[n]] + term if self.owner[n] in out else term
        return out

    def close(self) -> None:
        for d, k, t in self._saved:
            if d.get(k) is not t:
                d[k] = t
        self.x, self._logits = None, None


def chunk_budget(device: torch.device | str, free_bytes: int | None = None) -> int:
    """Bytes a Fisher chunk's per-sample tensors may take on `device`: CHUNK_BUDGET_BYTES off CUDA; on CUDA
    CUDA_FREE_FRACTION of the free memory (`free_bytes`, else `torch.cuda.mem_get_info`), at least
    CHUNK_BUDGET_BYTES."""
    device = torch.device(device)
    if device.type != "cuda":
        return CHUNK_BUDGET_BYTES
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return max(CHUNK_BUDGET_BYTES, int(free_bytes * CUDA_FREE_FRACTION))


def chunk_size_for(per_sample_bytes: int, n: int, budget: int) -> int:
    """Inputs per chunk: as many of the `n` as fit in `budget` bytes at `per_sample_bytes` each, at least 1."""
    return int(max(1, min(n, budget // max(1, per_sample_bytes))))


def _auto_chunk(model: nn.Module, inputs: torch.Tensor, modules: dict[str, nn.Module], backend: str) -> int:
    """Largest chunk whose per-sample gradient (and activation) memory stays under `chunk_budget`."""
    shapes: dict[nn.Module, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def hook(m: nn.Module, args: tuple, out) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor) and m not in shapes:
            shapes[m] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(inputs[:1])
    finally:
        for h in handles:
            h.remove()
    act = sum(math.prod(o) for _, o in shapes.values())  # activations per sample
    if backend == "variational":  # one float64 forward + backward of the chunk, no per-sample gradients
        per_sample = 3 * act * max(1, 8 // (inputs.element_size() if inputs.is_floating_point() else 4))
    elif backend == "gram":
        kept, transient = zip(*[temp_numel(m, *shapes[m]) for m in modules.values() if m in shapes] or [(0, 0)])
        per_sample = 3 * act + sum(kept) + max(transient)
    else:
        per_sample = 2 * sum(p.numel() for p in model.parameters() if p.requires_grad) + 3 * act
    size = inputs.element_size() if inputs.is_floating_point() else 4
    return chunk_size_for(per_sample * size, inputs.shape[0], chunk_budget(inputs.device))
