"""Deficits against independent references: PIL's resize, brute-force loops, closed-form properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from cpsweep.config.registry import BUILTINS
from cpsweep.engine.deficits import blur, derangement, make_deficit, vflip
from cpsweep.errors import SpecError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def pil_resize(img: np.ndarray, size: int) -> np.ndarray:
    """PIL's bilinear resize of a float image (antialiased when shrinking): the reference."""
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def blur_1d_reference(signal: list[float], factor: int) -> list[float]:
    """Average groups of `factor` samples, then linear interpolation at half-pixel centres, clamped."""
    n = len(signal)
    small = [sum(signal[i:i + factor]) / len(signal[i:i + factor]) for i in range(0, n, factor)]
    m, out = len(small), []
    for i in range(n):
        src = max((i + 0.5) * m / n - 0.5, 0.0)
        i0 = min(int(math.floor(src)), m - 1)
        i1 = min(i0 + 1, m - 1)
        w = src - i0
        out.append((1 - w) * small[i0] + w * small[i1])
    return out


def test_image_blur_matches_pil_down_then_up():
    x = torch.rand(2, 3, 32, 32, generator=gen())
    out = blur(x, 4)
    for b in range(2):
        for c in range(3):
            ref = pil_resize(pil_resize(x[b, c].numpy(), 8), 32)
            np.testing.assert_allclose(out[b, c].numpy(), ref, atol=1e-5)


def test_signal_blur_matches_loop():
    x = torch.randn(3, 1, 40, generator=gen(), dtype=torch.float64)
    out = blur(x, 4)
    for b in range(3):
        np.testing.assert_allclose(out[b, 0].numpy(), blur_1d_reference(x[b, 0].tolist(), 4), atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (8, 1, 40)])
def test_blur_removes_high_frequencies_and_keeps_the_mean(shape):
    x = torch.randn(*shape, generator=gen(), dtype=torch.float64)
    y = blur(x, 4)
    dims = tuple(range(2, x.dim()))
    fx, fy = torch.fft.fftn(x, dim=dims).abs() ** 2, torch.fft.fftn(y, dim=dims).abs() ** 2
    n = shape[-1]
    freq = torch.fft.fftfreq(n).abs()
    high = freq > 1 / 8  # above the Nyquist frequency of the 4x-downsampled grid
    mask = high if x.dim() == 3 else (high[:, None] | high[None, :])
    assert fy[..., mask].sum() < 0.05 * fx[..., mask].sum()
    assert torch.allclose(y.mean(dim=dims), x.mean(dim=dims), atol=0.03)
    # a constant input passes unchanged
    c = torch.full(shape, 0.7, dtype=torch.float64)
    assert torch.allclose(blur(c, 4), c)


def test_vflip_is_an_involution_and_flips_rows():
    img = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    flipped = vflip(img)
    for r in range(4):
        assert torch.equal(flipped[:, :, r], img[:, :, 3 - r])
    assert torch.equal(vflip(flipped), img)
    sig = torch.arange(10.0).reshape(1, 1, 10)
    assert vflip(sig)[0, 0].tolist() == list(range(9, -1, -1))
    assert torch.equal(vflip(vflip(sig)), sig)


def test_label_permutation_is_fixed_and_renames_every_class():
    y_train = torch.arange(100) % 10
    d = make_deficit("label_permutation", {}, y_train=y_train, num_classes=10, seed=3)
    x = torch.zeros(10, 1, 4)
    _, y1 = d(x, torch.arange(10), torch.arange(10), gen(1))
    _, y2 = d(x, torch.arange(10), torch.arange(10), gen(2))
    assert torch.equal(y1, y2) and sorted(y1.tolist()) == list(range(10))
    assert not bool((y1 == torch.arange(10)).any())
    assert torch.equal(derangement(10, gen(5)), derangement(10, gen(5)))


def test_label_shuffle_fixes_a_random_label_per_example():
    y_train = torch.arange(200) % 10
    d = make_deficit("label_shuffle", {}, y_train=y_train, num_classes=10, seed=3)
    idx = torch.tensor([5, 17, 123])
    _, a = d(torch.zeros(3, 1, 4), y_train[idx], idx, gen(1))
    _, b = d(torch.zeros(3, 1, 4), y_train[idx], idx, gen(2))
    assert torch.equal(a, b)
    _, all_labels = d(torch.zeros(200, 1, 4), y_train, torch.arange(200), gen(0))
    assert torch.equal(torch.bincount(all_labels), torch.bincount(y_train))
    assert (all_labels != y_train).float().mean() > 0.8


def test_noise_replaces_inputs_reproducibly():
    d = make_deficit("noise", {"std": 2.0}, y_train=torch.zeros(1, dtype=torch.long), num_classes=10, seed=0)
    x = torch.ones(500, 1, 40)
    a, _ = d(x, torch.zeros(500, dtype=torch.long), torch.arange(500), gen(7))
    b, _ = d(x * 5, torch.zeros(500, dtype=torch.long), torch.arange(500), gen(7))
    assert torch.equal(a, b) and d.disables_augment
    assert abs(a.mean().item()) < 0.05 and abs(a.std().item() - 2.0) < 0.05


@pytest.mark.parametrize("name", [n for n, e in BUILTINS["deficit"].items() if e.acts_on == "batch"])
def test_every_deficit_is_a_pure_transform(name):
    y_train = torch.arange(64) % 10
    d = make_deficit(name, {}, y_train=y_train, num_classes=10, seed=1)
    x = torch.randn(8, 3, 32, 32, generator=gen())
    x0 = x.clone()
    idx = torch.arange(8)
    a = d(x, y_train[idx], idx, gen(4))
    b = d(x, y_train[idx], idx, gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(x, x0)  # inputs are not modified in place
    assert a[0].shape == x.shape and a[1].shape == (8,)
    if name == "none":
        assert torch.equal(a[0], x) and torch.equal(a[1], y_train[idx])


def test_unknown_deficits_and_options_are_refused():
    with pytest.raises(SpecError, match='unknown deficit "blurr"'):
        make_deficit("blurr", {}, y_train=torch.zeros(1), num_classes=10, seed=0)
    with pytest.raises(SpecError, match='unknown key "size"'):
        make_deficit("blur", {"size": 8}, y_train=torch.zeros(1), num_classes=10, seed=0)


def test_each_fixed_key_has_its_own_stream_and_the_built_ins_keep_theirs():
    """ctx.fixed: two keys of a plug-in draw independent values; the built-in label deficits keep the
    values they drew before keys had their own streams (the trial's fixed seed itself)."""
    from cpsweep.engine.deficits import DeficitContext
    from cpsweep.engine.sampling import derive_seed

    ctx = DeficitContext(torch.arange(4), gen(0), 0, 10, torch.arange(40) % 10, 7, {})
    a = ctx.fixed("a", lambda g: torch.rand(5, generator=g))
    b = ctx.fixed("b", lambda g: torch.rand(5, generator=g))
    assert not torch.equal(a, b) and torch.equal(ctx.fixed("a", lambda g: None), a)  # made once, kept
    assert torch.equal(a, torch.rand(5, generator=torch.Generator().manual_seed(derive_seed(7, "fixed", "a"))))
    d = make_deficit("label_permutation", {}, y_train=torch.arange(40) % 10, num_classes=10, seed=7)
    _, y = d(torch.zeros(10, 1, 4), torch.arange(10), torch.arange(10), gen(1))
    assert torch.equal(y, derangement(10, torch.Generator().manual_seed(d.seed)))
