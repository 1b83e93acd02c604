"""cpsweep: sweeps of deficit-window trials for critical learning periods in deep networks.

The public Python API (the command line `cpsweep ...` is a thin layer over the same calls):

    import cpsweep

    sweep = cpsweep.load_sweep("sweeps/quickstart.yaml")      # or cpsweep.parse_sweep({...})
    summary = cpsweep.launch(sweep, storage="results")         # a path, a dict or a SweepSpec; Ray Tune
    res = cpsweep.load_results(summary.uri)                    # trials / epochs / fisher_layers DataFrames
    ft = cpsweep.fisher_trace(model, inputs)                   # the true Fisher trace, total and per layer
    n = cpsweep.seeds_needed("effect", 1.0, sd=0.5)            # seeds for 80 % power (`cpsweep seeds`)

The package reads as the pipeline it implements, each floor importing only those below it: `config` (what
to run: spec, registries, per-epoch timeline, sharing) -> `storage` (records, results folders, Parquet
tables) -> `engine` (how one trial trains: data, deficits, models, Fisher, the epoch loop) and `results`
(what the tables show: reducers, statistics, report, claims) -> `sweep` (where it runs: Ray Tune; the
only package that imports ray) -> `cli`. Names are imported on first use, so `import cpsweep` loads
neither torch nor ray.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it
_API = {
    "launch": "cpsweep.sweep.launch",
    "Summary": "cpsweep.sweep.launch",
    "load_sweep": "cpsweep.config.sweep_file",
    "parse_sweep": "cpsweep.config.sweep_file",
    "smoke_sweep": "cpsweep.config.variants",
    "SweepSpec": "cpsweep.config.sweep_file",
    "TrialSpec": "cpsweep.config.spec",
    "train_trial": "cpsweep.engine.trial",
    "fisher_trace": "cpsweep.engine.fisher",
    "FisherTrace": "cpsweep.engine.fisher",
    "load_results": "cpsweep.storage.folder",
    "ResultsFolder": "cpsweep.storage.folder",
    "Results": "cpsweep.storage.folder",
    "write_report": "cpsweep.results.report",
    "seeds_needed": "cpsweep.results.power",
    "CpsweepError": "cpsweep.errors",
    "SpecError": "cpsweep.errors",
    "DataError": "cpsweep.errors",
    "TrialDiverged": "cpsweep.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cpsweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
