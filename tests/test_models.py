"""Models: parameter counts against the published architectures, shapes, deterministic initialisation."""

from __future__ import annotations

import pytest
import torch

from cpsweep.config.registry import BUILTINS
from cpsweep.engine.models import build_model
from cpsweep.errors import SpecError

SHAPES = {"image": (3, 32, 32), "signal": (1, 40), "any": (1, 32, 32)}


def conv(c_in, c_out, k, bias=False):
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn(c):
    return 2 * c


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_all_cnn_c_parameter_count():
    # The paper's layout: 96, 96, 192/2, 192, 192, 192/2, 192, 192 (1x1), 10 (1x1); conv-BN (no conv bias)
    # on blocks 1-8, a biased 1x1 conv to the classes.
    chans = [(3, 96, 3), (96, 96, 3), (96, 192, 3), (192, 192, 3), (192, 192, 3), (192, 192, 3), (192, 192, 3),
             (192, 192, 1)]
    expected = sum(conv(i, o, k) + bn(o) for i, o, k in chans) + conv(192, 10, 1, bias=True)
    assert count_parameters(build_model("all_cnn_c", {}, (3, 32, 32), 10)) == expected == 1_620_010
    # Springenberg et al.'s All-CNN-C (their Table 2: 1.3 M) has 1,369,738 parameters, with conv biases and no
    # BN: blocks of 96, 96, 96 (stride 2), 192, 192, 192 (stride 2), 192, 192 (1x1), 10 (1x1). Ours differs by
    # exactly these terms: one 96 -> 96 conv of theirs is a 192 -> 192 conv here (block 3 widens at once), and
    # blocks 1-8 trade their conv biases for BN.
    springenberg, theirs = 1_369_738, [96, 96, 96, 192, 192, 192, 192, 192]
    ours = count_parameters(build_model("all_cnn_c", {}, (3, 32, 32), 10))
    assert ours - springenberg == (conv(192, 192, 3) - conv(96, 96, 3)) - sum(theirs) + sum(bn(o) for _, o, _ in chans)


def test_resnet18_parameter_count():
    # The widely used CIFAR PreActResNet18 (no final BN) has 11,171,146 parameters; ours adds the final
    # BN-ReLU of He et al.'s pre-activation design (2 x 512 parameters).
    model = build_model("resnet18", {}, (3, 32, 32), 10)
    assert count_parameters(model) == 11_171_146 + bn(512)


def test_mlp_parameter_count():
    widths = [1024, 2500, 2000, 1500, 1000, 500]
    expected = sum(a * b + b + bn(b) for a, b in zip(widths, widths[1:])) + 500 * 10 + 10
    assert count_parameters(build_model("mlp", {}, (1, 32, 32), 10)) == expected
    shallow = build_model("mlp", {"hidden": [100], "bn": False}, (1, 32, 32), 10)
    assert count_parameters(shallow) == 1024 * 100 + 100 + 100 * 10 + 10


def test_cnn1d_parameter_count():
    expected = 1 * 32 * 5 + 4 * (32 * 32 * 5) + 5 * bn(32) + 32 * 10 + 10  # kernel-5 convs, BN, Linear
    assert count_parameters(build_model("cnn1d", {}, (1, 40), 10)) == expected


@pytest.mark.parametrize("name", list(BUILTINS["model"]))
def test_every_model_runs_and_initialises_deterministically(name):
    shape = SHAPES[BUILTINS["model"][name].input]
    opts = {"width": 8} if name == "resnet18" else {"hidden": [64, 32]} if name == "mlp" else {}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = build_model(name, opts, shape, 10, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    b = build_model(name, opts, shape, 10, seed=5)
    c = build_model(name, opts, shape, 10, seed=6)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()) if pa.dim() > 1)
    a.eval()
    assert a(torch.randn(4, *shape)).shape == (4, 10)


def test_unknown_models_options_and_inputs_are_refused():
    with pytest.raises(SpecError, match='unknown model "vgg"'):
        build_model("vgg", {}, (3, 32, 32), 10)
    with pytest.raises(SpecError, match='unknown key "depht" \\(did you mean "depth"\\?\\)'):
        build_model("cnn1d", {"depht": 3}, (1, 40), 10)
    with pytest.raises(SpecError, match="cnn1d needs 1-D signals"):
        build_model("cnn1d", {}, (3, 32, 32), 10)
    with pytest.raises(SpecError, match="model.hidden\\[1\\]: expected an integer"):
        build_model("mlp", {"hidden": [3, "x"]}, (40,), 10)


def test_cnn1d_conv_bias_option():
    from cpsweep.engine.models import build_model

    plain = build_model("cnn1d", {"channels": 4, "depth": 2, "kernel": 3}, (1, 40), 10)
    biased = build_model("cnn1d", {"channels": 4, "depth": 2, "kernel": 3, "bias": True}, (1, 40), 10)
    convs = lambda m: [c for c in m.modules() if isinstance(c, torch.nn.Conv1d)]  # noqa: E731
    assert all(c.bias is None for c in convs(plain)) and all(c.bias is not None for c in convs(biased))
    assert sum(p.numel() for p in biased.parameters()) == sum(p.numel() for p in plain.parameters()) + 2 * 4
