"""A model plug-in: any callable `(in_shape, num_classes, **options) -> torch.nn.Module`.

The sweep file names it `my_models:TinyConv`; its keyword arguments are the options a sweep may set
(`model: {name: my_models:TinyConv, channels: 8}`), checked against this signature before anything runs.
"""

from __future__ import annotations

from torch import nn


class TinyConv(nn.Module):
    """A small 1-D conv net for MNIST-1D's (1, 40) signals: `depth` conv-ReLU blocks, global pooling, linear."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, channels: int = 16, depth: int = 3):
        super().__init__()
        layers, c_in = [], in_shape[0]
        for i in range(depth):
            layers += [nn.Conv1d(c_in, channels, 5, stride=2 if i % 2 else 1, padding=2), nn.ReLU()]
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))
