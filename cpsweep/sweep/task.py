"""What the driver hands one Tune trial: a typed `TrialTask` instead of a nested dict of string keys.

Tune carries a trial's configuration as a plain dict; `TrialTask.to_config()` packs a task into one
JSON-able entry of it, and the trainable, the prefix order and the progress callback unpack it once with
`TrialTask.from_config(config)` (or read just its id with `TrialTask.id_of(config)`). Plain data only:
no ray, no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..config.sharing import Start
from ..config.spec import TrialSpec

KEY = "task"  # the one key of a Tune config that cpsweep owns


@dataclass(frozen=True)
class TrialTask:
    """One trial of a launch, as the trainable runs it."""
    trial: TrialSpec
    store: str                              # the sweep's results URI (a local folder or s3://...)
    cpus: float                             # one trial's resources
    gpus: float
    spec_hash: str                          # provenance, written into the trial's row
    git_commit: str
    resume_from: str | None = None          # this trial's newest checkpoint left by an earlier launch
    branch_key: str | None = None           # a prefix checkpoint to start from (`config.sharing.plan`)
    branch_epoch: int | None = None         # the epoch that prefix ends at
    save: tuple[tuple[int, str], ...] = ()  # (epoch, key): prefix checkpoints other trials branch from

    @property
    def id(self) -> str:
        return self.trial.trial_id

    @classmethod
    def plan(cls, trial: TrialSpec, start: Start, *, resume_from: str | None = None, **launch: Any) -> TrialTask:
        """A task from the trial's planned start; `launch`: store, cpus, gpus, spec_hash, git_commit."""
        branch = start.branch_key is not None
        return cls(trial=trial, resume_from=resume_from, branch_key=start.branch_key,
                   branch_epoch=start.epoch if branch else None, save=tuple(sorted(start.save.items())), **launch)

    def without_branch(self) -> TrialTask:
        """The same task training its prefix again (the trial it would branch from never got there)."""
        return dataclasses.replace(self, branch_key=None, branch_epoch=None)

    def to_config(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["trial"] = self.trial.to_dict()
        d["save"] = [list(s) for s in self.save]
        return {KEY: {"id": self.id, **d}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrialTask:
        d = dict(config[KEY])
        d.pop("id")
        d["trial"] = TrialSpec.from_dict(d["trial"])
        d["save"] = tuple((int(e), str(k)) for e, k in d["save"])
        return cls(**d)

    @staticmethod
    def id_of(config: Mapping[str, Any]) -> str:
        return config[KEY]["id"]
