"""Experiment trackers: Ray's W&B and MLflow logger callbacks, from `--tracker` and the spec's `tracking`
section."""

from __future__ import annotations

from typing import Sequence

from ..config.sweep_file import TRACKERS, SweepSpec
from ..errors import CpsweepError, SpecError


def make_trackers(sweep: SweepSpec, names: Sequence[str]) -> list:
    """Ray's W&B / MLflow logger callbacks, from `--tracker` names and the spec's `tracking` section."""
    settings = dict(sweep.raw.get("tracking") or {})
    wanted = list(dict.fromkeys([*settings, *names]))
    callbacks = []
    for name in wanted:
        if name not in TRACKERS:
            raise SpecError("tracking", f'unknown tracker "{name}"; valid trackers: {", ".join(TRACKERS)}')
        options = dict(settings.get(name) or {})
        try:
            if name == "wandb":
                import wandb  # noqa: F401
                from ray.air.integrations.wandb import WandbLoggerCallback

                callbacks.append(WandbLoggerCallback(project=options.pop("project", sweep.name), **options))
            else:
                import mlflow  # noqa: F401
                from ray.air.integrations.mlflow import MLflowLoggerCallback

                callbacks.append(MLflowLoggerCallback(experiment_name=options.pop("experiment_name", sweep.name),
                                                      **options))
        except ImportError:
            raise CpsweepError(f"the {name} tracker needs its package: pip install 'cpsweep[{name}]' "
                               f"(or pip install {name})") from None
        except TypeError as e:
            raise SpecError(f"tracking.{name}", f"{e}; see Ray's {name} logger callback options") from None
    return callbacks
