"""The paper's noise-based (variational) estimate of the Fisher trace: `fisher_trace(method="variational")`.

method="variational": find the largest Gaussian noise on the weights that does not increase the loss. With
L the mean cross-entropy on the probe set (the given data labels; weights w fixed, eval mode) and
s_i = log sigma_i^2 one log-variance per trainable scalar, minimise over s

    J(s) = E_{n ~ N(0, diag(exp s))} [L(w + n)] - (beta / 2) * sum_i s_i.

Under a local quadratic approximation E[L(w + n)] = L(w) + 1/2 sum_i H_ii sigma_i^2, so the optimum is
sigma_i^2 = beta / H_ii; for the cross-entropy the Gauss-Newton part of the Hessian is the true Fisher, so
F_ii ~ beta / sigma_i^2 and tr F ~ sum_i beta / sigma_i^2 (per layer: the sum over the module's parameters).

- Optimisation: `steps` (default 300) Adam steps on s, from sigma^2 = beta (an F_ii estimate of 1: small
  noise); learning rate cosine-annealed from 0.2 to 0.05 over the first 30% of the steps, then 0.05, and s
  averaged over those last 70% (Polyak averaging). Each step draws one antithetic pair of reparameterised
  noises n = +-exp(s/2)·eps, eps ~ N(0, 1) from the `generator` (never the global RNG); the pair cancels the
  first-order term g·n of the loss (and every odd order). The gradient is divided by beta/2, so Adam's
  steps do not depend on the scale of beta. The weights are perturbed through `torch.func.functional_call`
  (the model's own tensors are never modified). Deterministic for a given generator state on CPU.
- beta (default 1e-24): in the quadratic regime the estimate does not depend on beta, only the noise scale
  sigma_i = sqrt(beta / F_ii) does; beta must be small enough that no ReLU pre-activation of the probe
  crosses zero under the noise (a crossing adds a kink term to the curvature that a quadratic model has not:
  on a trained 21k-parameter cnn1d, beta = 1e-12 gave 61x the exact trace, 1e-16 42x, 1e-24 and 1e-28 both
  2.65x). Such noise (sigma ~ 1e-10) is below float32's resolution of the weights, so the noisy forward and
  backward passes run in float64 (parameters, buffers and inputs cast for functional_call), whatever the
  model's dtype: a float32 and a float64 copy of a model give the same estimate.
- Flat or negative curvature: where H_ii <= 0 the gradient pushes s_i up without bound; and a large noise on
  such a direction adds noise to every other direction's gradient through the off-diagonal Hessian. After
  every step s is capped so that each F_ii estimate is >= 1% of the mean estimate (and >= 1e-12, i.e.
  sigma_i <= 1e-6 at the default beta): such directions end at that floor, which adds at most 1% of the
  total in all; s is also kept >= log(beta / 1e8).
- Bias: it estimates the diagonal of the Hessian of the data-label loss under a quadratic approximation,
  not the trace of F. The two agree for softmax regression (Hessian = true Fisher, whatever the labels);
  for deeper nets the Hessian adds a residual term (labels minus predictions times the logits' second
  derivatives), small at a trained point, large at initialisation. The finite number of noisy steps adds a
  positive bias (the log-variance fluctuates and exp is convex; the gradient noise grows with the
  off-diagonal Hessian). Measured (tests/test_fisher.py, 300 steps): softmax regression 1.01-1.06x exact;
  trained one-hidden-layer ReLU MLPs 1.05-1.10x exact (their diag H equals diag F); tanh MLPs 1.01-1.15x
  the Hessian trace (1.30-1.38x exact); cnn1d (21k parameters, 100 random inputs, random labels) 2.65x
  exact when fitted (2.1x after 1000 steps) and 5.9x at initialisation. Read it as the paper's
  quantity (noise-based), comparable across epochs and runs of the same settings, not as a substitute for
  `exact`.
- Cost: 2·steps float64 forward+backward passes of the whole probe set (600 by default), against one
  forward and C (classes) per-sample-gradient passes for `exact`. On one CPU core: 12 s against 0.05-0.07 s
  (gram) for cnn1d on 100 inputs (170-250x); 0.25-0.35 s against 0.002 s for the tiny test nets (~150x).
  Memory: one float64 forward+backward of a chunk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = ["check_variational_args", "variational"]

VARIATIONAL_STEPS = 300          # Adam steps on the log-variances s
VARIATIONAL_BETA = 1e-24         # weight of the log-variance term: sigma_i^2 = beta / F_ii at the optimum
VARIATIONAL_F_MIN = 1e-12        # cap of s: sigma_i^2 <= beta / F_MIN (sigma_i <= 1e-6 at the default beta)
VARIATIONAL_FLOOR = 1e-2         # each F_ii estimate >= this times their mean (s capped accordingly)
VARIATIONAL_F_MAX = 1e8          # floor of s: sigma_i^2 >= beta / F_MAX
VARIATIONAL_F_INIT = 1.0         # initial s = log(beta / F_INIT): sigma^2 = beta, small noise
VARIATIONAL_LR = (0.2, 0.05)     # Adam's learning rate on s: cosine from the first to the second, then constant
VARIATIONAL_AVERAGE_FROM = 0.3   # s is averaged over the steps after this fraction of them (at the low rate)
VARIATIONAL_ADAM_BETAS = (0.9, 0.999)
BETA_MAX = 1e-6                  # larger beta: noise far outside the quadratic region of any net


def check_variational_args(method, backend, beta, steps) -> None:
    if method != "variational":
        for name, value in (("beta", beta), ("steps", steps)):
            if value is not None:
                raise ValueError(f"{name} is only used by method='variational', not method={method!r}")
        return
    if backend == "gram":
        raise ValueError("method='variational' uses functional_call, not per-sample gradients: use backend='auto' "
                         "or 'func'")
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, (int, float))
                             or not 0 < beta <= BETA_MAX):
        raise ValueError(f"beta must be None (default {VARIATIONAL_BETA:g}) or a number in (0, {BETA_MAX:g}], "
                         f"got {beta!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be None (default {VARIATIONAL_STEPS}) or an int >= 1, got {steps!r}")


def _slots(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every (module, attribute) slot holding a parameter or buffer -> the model's own tensor in it.

    One name per slot, even when a module is registered under several names: functional_call (torch 2.14)
    with tie_weights=True, or with one module's slot named twice, leaves swapped-in tensors behind in such
    a module (and computes the wrong outputs); with one name per slot and tie_weights=False it swaps and
    restores each slot exactly once, and a tensor shared by distinct modules is named in each of its slots
    (the caller gives each the same replacement)."""
    slots = {}
    for prefix, m in model.named_modules():  # each module object once
        for table in (m._parameters, m._buffers):
            for key, t in table.items():
                if t is not None:
                    slots[f"{prefix}.{key}" if prefix else key] = t
    return slots


def variational(model, inputs, labels, modules, owner, generator, beta, steps, chunk) -> tuple[float, dict[str, float]]:
    """(total, per_layer) by Adam on the log-variances s of Gaussian weight noise (see the module docstring);
    `owner`: trainable parameter name -> its module's name (a key of `modules`); `chunk`: inputs per pass.
    The caller checked the arguments and put the model in eval mode."""
    N, device, work = inputs.shape[0], inputs.device, torch.float64
    steps = VARIATIONAL_STEPS if steps is None else steps
    beta = VARIATIONAL_BETA if beta is None else float(beta)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}  # tied parameters appear once
    params = {n: p.detach().to(work) for n, p in named.items()}  # w, in float64
    name_of = {id(p): n for n, p in named.items()}
    # every other slot (frozen parameters, buffers) gets a float64 copy of its tensor, shared ones one copy
    copies: dict[int, torch.Tensor] = {}
    fixed = {k: copies.setdefault(id(t), t.detach().to(work) if t.is_floating_point() else t)
             for k, t in _slots(model).items() if id(t) not in name_of}
    trainable = {k: name_of[id(t)] for k, t in _slots(model).items() if id(t) in name_of}
    x = inputs.to(work) if inputs.is_floating_point() else inputs
    P = sum(w.numel() for w in params.values())
    log_beta = math.log(beta)
    s_lo, s_hi = log_beta - math.log(VARIATIONAL_F_MAX), log_beta - math.log(VARIATIONAL_F_MIN)
    s_init = min(max(log_beta - math.log(VARIATIONAL_F_INIT), s_lo), s_hi)
    chunks = [(a, min(a + chunk, N)) for a in range(0, N, chunk)]
    with torch.no_grad():
        C = model(inputs[:1]).shape[1]
    y = labels.to(device=device, dtype=torch.long)
    if bool((y < 0).any() or (y >= C).any()):
        raise ValueError(f"labels must lie in [0, {C}) for a model with {C} classes")

    def objective_grad(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """dJ/ds divided by beta/2, from one antithetic pair n = +-exp(s/2)·eps (eps from the generator):
        d/ds (L(w + n) + L(w - n)) / 2 is an unbiased estimate of d/ds E[L(w + n)] (H_ii sigma_i^2 / 2 under
        the quadratic approximation), and d/ds of -(beta/2) sum s is -beta/2. Scaled by 2/beta so that Adam
        (whose epsilon is absolute) sees values of order 1 whatever beta is."""
        eps = {n: torch.randn(w.shape, generator=generator, device=generator.device, dtype=work).to(device)
               for n, w in params.items()}
        leaf = {n: v.clone().requires_grad_() for n, v in s.items()}
        out = {n: torch.full_like(v, -1.0) for n, v in s.items()}
        with torch.enable_grad():
            for sign in (1.0, -1.0):
                for a, b in chunks:
                    noisy = {n: params[n] + sign * torch.exp(leaf[n] / 2) * eps[n] for n in params}
                    logits = functional_call(model, {**fixed, **{k: noisy[n] for k, n in trainable.items()}},
                                             (x[a:b],), tie_weights=False)
                    loss = F.cross_entropy(logits, y[a:b], reduction="sum") / (N * beta)  # (2/beta)·(1/2)·mean
                    grads = torch.autograd.grad(loss, list(leaf.values()), allow_unused=True)
                    for n, gn in zip(leaf, grads):
                        if gn is not None:  # (None: a parameter the forward does not use)
                            out[n] += gn
        return out

    s = {n: torch.full_like(w, s_init) for n, w in params.items()}
    m1 = {n: torch.zeros_like(w) for n, w in params.items()}  # Adam's moments
    m2 = {n: torch.zeros_like(w) for n, w in params.items()}
    (b1, b2), adam_eps = VARIATIONAL_ADAM_BETAS, 1e-8
    first_avg = min(int(steps * VARIATIONAL_AVERAGE_FROM), steps - 1)
    avg = {n: torch.zeros_like(w) for n, w in params.items()}
    for t in range(steps):
        g = objective_grad(s)
        lr = variational_lr(t, first_avg)
        with torch.no_grad():
            for n in s:
                m1[n].mul_(b1).add_(g[n], alpha=1 - b1)
                m2[n].mul_(b2).addcmul_(g[n], g[n], value=1 - b2)
                step = (m1[n] / (1 - b1 ** (t + 1))) / ((m2[n] / (1 - b2 ** (t + 1))).sqrt() + adam_eps)
                s[n] = (s[n] - lr * step).clamp_(s_lo, s_hi)
            # floor every F_ii estimate at VARIATIONAL_FLOOR times their mean (see the module docstring)
            mean_f = beta * float(sum(torch.exp(-v).sum() for v in s.values())) / P
            top = min(s_hi, log_beta - math.log(VARIATIONAL_FLOOR * mean_f))
            for n in s:
                s[n].clamp_(max=top)
                if t >= first_avg:
                    avg[n] += s[n]
    acc: dict[str, torch.Tensor] = {}
    for n in params:  # F_ii ~ beta / sigma_i^2 with log sigma_i^2 the averaged s
        v = (beta * torch.exp(-avg[n] / (steps - first_avg))).sum()
        acc[owner[n]] = acc[owner[n]] + v if owner[n] in acc else v
    per_layer = {name: float(acc[name]) if name in acc else 0.0 for name in modules}
    total = float(sum(acc.values(), torch.zeros((), dtype=work, device=device)))
    return total, per_layer


def variational_lr(t: int, first_avg: int) -> float:
    """Adam's learning rate at step t: cosine from VARIATIONAL_LR[0] to [1] until the averaging starts, then
    constant at [1]."""
    hi, lo = VARIATIONAL_LR
    return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t / first_avg)) if t < first_avg else lo
