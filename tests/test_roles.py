"""Each field's role is declared once, on the spec, and every view of a trial follows it: the sweep hash,
the prefix keys, which trials may pack, and what a checkpoint must match. A field of each role added to a
copy of the spec class must change exactly the views its role says."""

from __future__ import annotations

import dataclasses

import pytest

from tiny_specs import UNIT, tiny_sweep

from cpsweep.config import spec as S
from cpsweep.config import views as V
from cpsweep.config.sharing import check_packable, prefix_keys
from cpsweep.config.sweep_file import parse_sweep

SWEEP = parse_sweep(tiny_sweep(UNIT))
TRIAL = SWEEP.make_trial(1, 2, 0)


def extended(cls, metadata, name="extra"):
    """A copy of the dataclass `cls` with one more int field (default 0) declared with `metadata`."""
    extra = (name, int, dataclasses.field(default=0, metadata=metadata))
    return dataclasses.make_dataclass(f"{cls.__name__}Plus", [extra], bases=(cls,), frozen=True)


def with_extra(trial, cls, value):
    return cls(**{f.name: getattr(trial, f.name) for f in dataclasses.fields(trial)}, extra=value)


def views(trial):
    """What each consumer derives from a trial: the sweep's hash, the first and last prefix keys, the pack
    settings and the checkpoint identity."""
    sweep = dataclasses.replace(SWEEP, base=trial)
    return {"hash": sweep.hash(), "prefix": (prefix_keys(trial)[0], prefix_keys(trial)[-1]),
            "pack": V.shared_settings(trial), "checkpoint": V.checkpoint_identity(trial)}


def packable(a, b) -> bool:
    try:
        check_packable([a, b])
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("role", S.ROLES, ids=lambda r: r.name)
def test_a_new_trial_field_follows_its_role(role):
    cls = extended(S.TrialSpec, S.role(role))
    a, b = with_extra(TRIAL, cls, 0), with_extra(TRIAL, cls, 1)
    va, vb = views(a), views(b)
    assert (va["hash"] != vb["hash"]) == role.hashed
    assert (va["prefix"] != vb["prefix"]) == role.computed
    assert packable(a, b) == role.per_member
    assert (va["checkpoint"] != vb["checkpoint"]) == role.identity
    # the dict form carries the new field, and reading it back keeps its value
    assert cls.from_dict(b.to_dict()) == b


@pytest.mark.parametrize("role", [None, S.PLACE], ids=["inherited", "place"])
def test_a_new_section_field_takes_its_sections_role_unless_it_declares_one(role):
    """A field added to the data section is a setting like the section (or, declared PLACE, nothing but
    where the files are)."""
    data_cls = extended(S.DataSpec, S.role(role) if role else {})
    a = dataclasses.replace(TRIAL, data=data_cls(**dataclasses.asdict(TRIAL.data), extra=0))
    b = dataclasses.replace(TRIAL, data=data_cls(**dataclasses.asdict(TRIAL.data), extra=1))
    expected = S.SETTING if role is None else role
    va, vb = views(a), views(b)
    assert (va["hash"] != vb["hash"]) == expected.hashed
    assert (va["prefix"] != vb["prefix"]) == expected.computed
    assert (va["pack"] != vb["pack"]) == (not expected.per_member)
    assert (va["checkpoint"] != vb["checkpoint"]) == expected.identity


def test_a_setting_added_later_keeps_old_hashes_at_its_default():
    """`hashed_at_default=False` (the engine section): older results folders keep their hash while the new
    setting has its default; changing it changes the hash."""
    cls = extended(S.TrialSpec, S.role(S.SETTING, hashed_at_default=False))
    old = views(TRIAL)["hash"]
    assert views(with_extra(TRIAL, cls, 0))["hash"] == old
    assert views(with_extra(TRIAL, cls, 1))["hash"] != old
    engine = dataclasses.replace(TRIAL, engine=S.EngineSpec(channels_last=True))
    assert views(engine)["hash"] != old and "engine" not in V.hashed_settings(TRIAL)


def test_every_field_declares_its_role():
    """A field added without a role would silently be left out of every view: refuse it here."""
    assert all("role" in f.metadata for f in dataclasses.fields(S.TrialSpec))


def test_the_roles_of_todays_fields():
    """The table in cpsweep/config/spec.py, checked against the declarations."""
    roles = {f.name: f.metadata["role"].name for f in dataclasses.fields(S.TrialSpec)}
    assert roles == {"sweep": "setting", "data": "setting", "model": "setting", "optim": "setting",
                     "schedule": "schedule", "deficit": "deficit", "fisher": "setting", "onset": "window",
                     "length": "window", "epochs": "duration", "seed": "seed", "bn_refresh": "setting",
                     "checkpoint_every": "place", "tags": "label", "engine": "setting", "metrics": "setting"}
    assert dataclasses.fields(S.DataSpec)[1].name == "data_dir"
    assert dataclasses.fields(S.DataSpec)[1].metadata["role"] is S.PLACE
