"""The "gram" backend of `cpsweep.engine.fisher`: per-sample squared gradient norms without per-sample gradients.

One forward pass of a chunk builds the autograd graph while forward hooks capture each parameter-owning
module's input `a` and output `z`. For each (labels, weights) pass, `torch.autograd.grad` of
sum_i log p(label_i | x_i) with respect to the captured outputs gives the per-sample output gradients
`g_i = d log p(label_i | x_i) / d z_i` (in eval mode the samples are independent, so summing over the
chunk mixes nothing). The per-sample parameter gradients are then small products of `a_i` and `g_i`,
and only their squared norms are formed (the label-independent parts, e.g. the unfolded inputs, A_iᵀA_i or
BatchNorm's xhat, are computed once per chunk and reused by all passes):

- nn.Linear: weight grad g_i a_iᵀ, norm² ||g_i||²·||a_i||²; bias ||g_i||². With extra dims
  (B, ..., d) the T positions are summed, as for a convolution.
- nn.Conv1d / nn.Conv2d (groups=1): with A_i = unfold(a_i) (D = c_in·k, T) and G_i (d_out, T), the weight
  grad is G_i A_iᵀ; its norm² comes either from the bmm itself (d_out·D·T flops per sample) or from the
  Gram identity sum_{t,t'} (g_t·g_t')(a_t·a_t') (T²·(d_out + D) flops), whichever is cheaper.
  Bias norm² = ||sum_t g_t||².
- nn.BatchNorm1d / nn.BatchNorm2d with running statistics (eval mode): per channel, weight grad
  sum_t g_t·xhat_t with xhat = (a - running_mean) / sqrt(running_var + eps), bias grad sum_t g_t.

Anything else that owns trainable parameters, a parameter shared between modules, or a module called
more than once per forward raises `GramUnsupported` (a ValueError); `fisher_trace(backend="auto")` then
uses the "func" backend.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


class GramUnsupported(ValueError):
    """The model has a parameter-owning module (or a use of one) that the gram backend cannot handle."""


def check_supported(modules: Mapping[str, nn.Module]) -> None:
    """Raise `GramUnsupported` unless every module in `modules` (name -> module) is supported.

    Raises:
        GramUnsupported: naming the first unsupported module and its type.
    """
    owners: dict[int, str] = {}
    for name, m in modules.items():
        label = f"module {name or '<root>'!r} of type {type(m).__name__}"
        if type(m) not in SUPPORTED:
            raise GramUnsupported(f"backend='gram' does not support {label} (supported: "
                                  f"{', '.join(t.__name__ for t in SUPPORTED)}); use backend='func' or 'auto'")
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
            raise GramUnsupported(f"backend='gram' does not support grouped convolutions ({label}, "
                                  f"groups={m.groups}); use backend='func' or 'auto'")
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_mean is None:
            raise GramUnsupported(f"backend='gram' needs running statistics in {label} "
                                  "(track_running_stats=False uses batch statistics); use backend='func'")
        for p in m.parameters(recurse=False):
            if p.requires_grad and owners.setdefault(id(p), name) != name:
                raise GramUnsupported(f"backend='gram' does not support parameters shared between modules "
                                      f"({owners[id(p)]!r} and {name!r}); use backend='func' or 'auto'")


def _sq(X: torch.Tensor) -> torch.Tensor:
    """Per-sample squared Frobenius norms: X (B, ...) -> (B,)."""
    return torch.linalg.vector_norm(X.reshape(X.shape[0], -1), dim=1).square()


def _use_gram(d_out: int, D: int, T: int) -> bool:
    """Whether the Gram identity (T²·(d_out + D) flops) beats the bmm (d_out·D·T flops) for ||G Aᵀ||²."""
    return T > 1 and d_out * D > T * (d_out + D)


def _unfold(m: nn.Conv1d | nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """Input patches of a convolution: a (B, c_in, *spatial) -> (B, c_in·prod(kernel), T)."""
    padding = m.padding
    if isinstance(padding, str) or m.padding_mode != "zeros":  # pad explicitly, as Conv*d itself does
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        a = F.pad(a, m._reversed_padding_repeated_twice, mode=mode)
        padding = (0,) * len(m.kernel_size)
    if isinstance(m, nn.Conv1d):  # (B, c, L) -> (B, c, 1, L) with a (1, k) kernel
        return F.unfold(a.unsqueeze(2), (1, m.kernel_size[0]), dilation=(1, m.dilation[0]),
                        padding=(0, padding[0]), stride=(1, m.stride[0]))
    return F.unfold(a, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride)


def _as_bdt(m: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A module's input or output (B, ...) as (B, channels, T): Linear's features are last, others' dim 1."""
    B = t.shape[0]
    if isinstance(m, nn.Linear):
        return t.reshape(B, -1, t.shape[-1]).transpose(1, 2)
    return t.reshape(B, t.shape[1], -1)


def prepare(m: nn.Module, a: torch.Tensor, out_shape: torch.Size) -> tuple[str, torch.Tensor] | None:
    """The part of m's per-sample weight gradient that does not depend on the labels (computed once per chunk).

    Args:
        m: a supported module.
        a: its input (B, ...), detached.
        out_shape: shape of its output (B, ...).

    Returns:
        None if m's weight is not trainable, else (kind, tensor): ("scale", ||a_i||² (B,)) for a flat Linear
        or a convolution with one position; ("xhat", xhat (B, C, T)) for BatchNorm; ("gram", A_iᵀA_i
        (B, T, T)) or ("direct", A (B, D, T)) for convolutions and Linear layers with extra dims.
    """
    if m.weight is None or not m.weight.requires_grad:
        return None
    if isinstance(m, nn.Linear) and a.dim() == 2:
        return "scale", _sq(a)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        shape = (1, -1, 1)
        return "xhat", (_as_bdt(m, a) - m.running_mean.view(shape)) * torch.rsqrt(m.running_var.view(shape) + m.eps)
    A = _as_bdt(m, a) if isinstance(m, nn.Linear) else _unfold(m, a)  # (B, D, T)
    d_out = out_shape[-1] if isinstance(m, nn.Linear) else out_shape[1]
    if A.shape[2] == 1:
        return "scale", _sq(A)
    if _use_gram(d_out, A.shape[1], A.shape[2]):
        return "gram", torch.bmm(A.transpose(1, 2), A)
    return "direct", A


def layer_sq_norms(m: nn.Module, prep: tuple[str, torch.Tensor] | None, g: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm of the gradient of m's trainable parameters.

    Args:
        m: a supported module (see `SUPPORTED`).
        prep: `prepare(m, input, output.shape)`.
        g: per-sample gradient of the objective with respect to m's output (B, ...).

    Returns:
        (B,) tensor in g's dtype: sum over m's trainable parameters of the squared gradient norms.
    """
    G = _as_bdt(m, g)  # (B, d_out, T)
    out = g.new_zeros(g.shape[0])
    if prep is not None:
        kind, P = prep
        if kind == "scale":  # weight grad g aᵀ (one position)
            out = out + _sq(G) * P
        elif kind == "xhat":  # BatchNorm: sum_t g_t xhat_t per channel
            out = out + _sq(torch.linalg.vecdot(G, P))
        elif kind == "gram":  # sum_{t,t'} (g_t·g_t')(a_t·a_t')
            GG = torch.bmm(G.transpose(1, 2), G)  # (B, T, T)
            out = out + torch.linalg.vecdot(GG.flatten(1), P.flatten(1))
        else:  # per-sample weight grads G_i A_iᵀ (B, d_out, D)
            out = out + _sq(torch.bmm(G, P.transpose(1, 2)))
    if m.bias is not None and m.bias.requires_grad:
        out = out + _sq(G.sum(2))
    return out


def temp_numel(m: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
    """Rough per-sample element counts (kept for the chunk, transient per pass) of `prepare` + `layer_sq_norms`.

    Args:
        m: a supported module.
        in_shape, out_shape: shapes of one sample's input and output (no batch dim).
    """
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)) or (isinstance(m, nn.Linear) and len(out_shape) > 1):
        d_out = out_shape[-1] if isinstance(m, nn.Linear) else out_shape[0]
        T, D = n_out // d_out, m.weight[0].numel()
        if _use_gram(d_out, D, T):
            return T * T, n_in + max(D * T, T * T)
        return D * T, n_in + d_out * D
    return n_in, n_out


class GramEngine:
    """Runs the gram backend on successive chunks: `start(x)`, `logits()`, then `run_pass` per pass.

    Args:
        model: the network, already in eval mode; hooks are removed by `close()`.
        modules: name -> module for every module that directly owns trainable parameters.

    Raises:
        GramUnsupported: see `check_supported`.
    """

    def __init__(self, model: nn.Module, modules: Mapping[str, nn.Module]):
        check_supported(modules)
        self.model, self.modules = model, dict(modules)
        self._clone = False  # copy the captured tensors (set once an in-place op has changed one)
        self._captured: dict[str, tuple[torch.Tensor, torch.Tensor, int, int]] = {}  # input, output, versions
        self._prep: dict[str, tuple[str, torch.Tensor] | None] = {}  # see `prepare`, per chunk
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.modules.items()]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor):
            if name in self._captured:
                raise GramUnsupported(f"backend='gram' does not support module {name!r}, which is called more "
                                      "than once per forward; use backend='func' or 'auto'")
            a = args[0].detach()
            self._captured[name] = (a.clone() if self._clone else a, out, a._version, out._version)
            return out.clone() if self._clone else None  # later in-place ops then act on the clone
        return hook

    def start(self, x: torch.Tensor) -> None:
        """Forward the chunk x (B, ...) and keep the graph and the captured activations."""
        for clone in (True,) if self._clone else (False, True):
            self._clone, self._captured, self._prep = clone, {}, {}
            with torch.enable_grad():
                logits = self.model(x)  # (B, C)
            if clone or all(a._version == va and z._version == vz for a, z, va, vz in self._captured.values()):
                break  # otherwise an in-place op changed a captured tensor: redo with copies
        if logits.dim() != 2:
            raise ValueError(f"model(inputs) must return logits of shape (N, C), got {tuple(logits.shape)}")
        self._logits = logits
        self._logp = torch.log_softmax(logits.double(), dim=1)  # (B, C) float64, in the graph

    def logits(self) -> torch.Tensor:
        """The chunk's logits (B, C), detached."""
        return self._logits.detach()

    def run_pass(self, labels: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """sum_i weights_i ||d log p(labels_i | x_i) / d w_layer||² for each module (float64 scalars)."""
        names = list(self._captured)
        objective = self._logp.gather(1, labels[:, None]).sum()
        grads = torch.autograd.grad(objective, [self._captured[n][1] for n in names], retain_graph=True,
                                    allow_unused=True, materialize_grads=True)
        out = {}
        for name, g in zip(names, grads):
            m, (a, z, _, _) = self.modules[name], self._captured[name]
            if name not in self._prep:
                self._prep[name] = prepare(m, a, z.shape)
            sq = layer_sq_norms(m, self._prep[name], g)  # (B,)
            out[name] = (sq.double() * weights).sum()
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._captured, self._prep, self._logits, self._logp = {}, {}, None, None
