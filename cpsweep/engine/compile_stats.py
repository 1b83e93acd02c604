"""How much torch.compile compiled in this process: the benchmark reports it and tests bound it.

    before = compiled_frames()
    ...                                    # an epoch of a trial with engine.compile
    recompiles = compiled_frames() - before

A trial under ``engine.compile`` compiles in its first epoch (a graph for training and one for testing;
see `TrialRun._forward_pass`) and nothing after: a later epoch that compiles is a recompile (a guard
failed: a new batch shape, a changed module attribute), which costs compile time and, past torch's
recompile limit, silently falls back to eager.
"""

from __future__ import annotations


def compiled_frames() -> int:
    """Frames torch.compile (TorchDynamo) has compiled in this process so far, recompiles included
    (``torch._dynamo.utils.counters["frames"]["total"]``); 0 before anything was compiled."""
    from torch._dynamo.utils import counters  # imported here: importing dynamo is slow and rarely needed

    return int(counters["frames"]["total"])
