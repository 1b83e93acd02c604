"""Model registry: the paper's networks and a small 1-D conv net for MNIST-1D.

`build_model(name, options, in_shape, num_classes, seed)` returns a freshly initialised `nn.Module`
whose logits have shape (N, num_classes): a built-in below or a user's plug-in (`package.module:Class`),
each found through its entry in `config.registry` (options typed and defaulted there). `instantiate` builds
a `TrialSpec`'s model, whose options were checked when its sweep was parsed. Initialisation uses torch's default initialisers under a generator
seeded from `seed` (the global RNG state is restored afterwards), so a model is a pure function of its
arguments, on any device.

| name       | inputs          | architecture |
|------------|-----------------|--------------|
| all_cnn_c  | (N, C, H, W)    | 9 conv-BN-ReLU blocks 96, 96, 192/2, 192, 192, 192/2, 192, 192 (1x1), 10 (1x1); GAP |
| resnet18   | (N, C, H, W)    | pre-activation ResNet-18, CIFAR stem (3x3 conv, no max-pool), stages 64/128/256/512 |
| mlp        | any (flattened) | Linear-BN-ReLU per hidden width, then Linear (paper: 2500-2000-1500-1000-500) |
| cnn1d      | (N, 1, L)       | `depth` conv-BN-ReLU blocks, stride 2 on every second block, GAP, Linear |
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..config.registry import INPUT_DIMS, Entry, entry
from ..errors import SpecError
from .numerics import GlobalAvgPool


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


def all_cnn_c(in_shape: Sequence[int], num_classes: int, width: float = 1.0, final_bn_relu: bool = False,
              valid_block7: bool = False) -> nn.Module:
    """The paper's All-CNN (Achille et al. 2019, after Springenberg et al. 2015's All-CNN-C).

    Blocks 1-8 are conv (no bias) + BN + ReLU; block 9 is a 1x1 conv to the classes, with bias and no
    BN/ReLU unless `final_bn_relu`. `valid_block7` leaves block 7 unpadded, as in Springenberg's net.
    """
    c1, c2 = round(96 * width), round(192 * width)
    blocks = [conv_bn_relu(in_shape[0], c1, 3), conv_bn_relu(c1, c1, 3), conv_bn_relu(c1, c2, 3, stride=2),
              conv_bn_relu(c2, c2, 3), conv_bn_relu(c2, c2, 3), conv_bn_relu(c2, c2, 3, stride=2),
              conv_bn_relu(c2, c2, 3, padding=0 if valid_block7 else 1), conv_bn_relu(c2, c2, 1)]
    if final_bn_relu:
        blocks.append(conv_bn_relu(c2, num_classes, 1))
    else:
        blocks.append(nn.Sequential(nn.Conv2d(c2, num_classes, 1)))
    return nn.Sequential(*blocks, GlobalAvgPool(), nn.Flatten())


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016): BN-ReLU-conv, BN-ReLU-conv, identity/1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + short


def resnet18(in_shape: Sequence[int], num_classes: int, width: int = 64) -> nn.Module:
    """CIFAR pre-activation ResNet-18: 3x3 stem, 4 stages of 2 blocks, final BN-ReLU, GAP, Linear."""
    layers: list[nn.Module] = [nn.Conv2d(in_shape[0], width, 3, 1, 1, bias=False)]
    c_in = width
    for stage, mult in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(PreActBlock(c_in, width * mult, stride))
            c_in = width * mult
    layers += [nn.BatchNorm2d(c_in), nn.ReLU(), GlobalAvgPool(), nn.Flatten(),
               nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


def mlp(in_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (2500, 2000, 1500, 1000, 500),
        bn: bool = True) -> nn.Module:
    """Fully connected net on flattened inputs: (Linear, BN, ReLU) per hidden width, then Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 1
    for d in in_shape:
        width *= d
    for h in hidden:
        layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if bn else []), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn1d(in_shape: Sequence[int], num_classes: int, channels: int = 32, depth: int = 5, kernel: int = 5,
          bias: bool = False) -> nn.Module:
    """Small 1-D conv net for MNIST-1D: conv-BN-ReLU blocks (stride 2 on blocks 2, 4, ...), GAP, Linear;
    `bias`: a bias in every conv (redundant before BN, but it changes the optimisation)."""
    layers: list[nn.Module] = []
    c_in = in_shape[0]
    for i in range(depth):
        stride = 2 if i % 2 == 1 else 1
        layers += [nn.Conv1d(c_in, channels, kernel, stride, kernel // 2, bias=bias), nn.BatchNorm1d(channels),
                   nn.ReLU()]
        c_in = channels
    layers += [GlobalAvgPool(), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


def build_model(name: str, options: Mapping[str, Any], in_shape: Sequence[int], num_classes: int,
                seed: int = 0) -> nn.Module:
    """Build and initialise a registered model (or a plug-in) on the CPU.

    Args:
        name: a built-in name (`config.registry.BUILTINS["model"]`) or a reference `package.module:Class`.
        options: model options; missing ones take their defaults.
        in_shape: shape of one input without the batch dimension, e.g. (3, 32, 32) or (1, 40).
        num_classes: number of logits.
        seed: initialisation seed.

    Raises:
        SpecError: unknown name or option, or inputs the model cannot take.
    """
    e = entry("model", name)
    return instantiate(e, e.complete(options, "model"), in_shape, num_classes, seed)


def instantiate(e: Entry, options: Mapping[str, Any], in_shape: Sequence[int], num_classes: int,
                seed: int = 0) -> nn.Module:
    """The model of entry `e` with already checked, complete `options`, initialised from `seed` (torch's
    global RNG restored afterwards)."""
    dims, what = INPUT_DIMS.get(e.input, (len(in_shape), ""))
    if len(in_shape) != dims:
        raise SpecError("model.name", f"{e.name} needs {what}, got shape {tuple(in_shape)}")
    builder = e.load()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(tuple(in_shape), num_classes, **options)
    if not isinstance(model, nn.Module):
        raise SpecError("model.name", f"{e.name} returned a {type(model).__name__}, not a torch.nn.Module; "
                                      f"return the network (docs/plugins.md)")
    return model
