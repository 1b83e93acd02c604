"""A metric plug-in: any callable `(model, data, ctx, **options) -> float`, measured at the epochs the
Fisher trace is; its values become the column `metric.<name>` of the epochs table and a plot in the report,
and `cpsweep report --measure metric.<name>` measures the sensitivity by it instead of test accuracy.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def noisy_accuracy(model, data, ctx, std: float = 0.5) -> float:
    """Test accuracy on inputs with Gaussian noise of `std` added (drawn from `ctx.generator`): a held-out
    corruption the network never trained on."""
    x = data.inputs(data.x_test)
    noise = torch.randn(x.shape, generator=ctx.generator, device=ctx.generator.device).to(x.device)
    with ctx.autocast():
        logits = model(x + std * noise)
    return (logits.argmax(1) == data.y_test).float().mean().item()
