"""Every cpsweep exception survives pickling: a Ray worker sends the exceptions it raises to the driver, and
one that cannot be rebuilt there turns into a generic RayTaskError (and its message is lost)."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import pytest

import cpsweep
from cpsweep.errors import CpsweepError, SpecError, TrialDiverged


def _every_error_class() -> list[type]:
    """CpsweepError's subclasses in every module of the package (each module imported), and TrialDiverged."""
    for mod in pkgutil.walk_packages(cpsweep.__path__, "cpsweep."):
        try:
            importlib.import_module(mod.name)
        except ImportError:  # an optional extra (a tracker) that is not installed
            continue
    seen, todo = [], [CpsweepError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen + [TrialDiverged]


def _instance(cls: type) -> Exception:
    if issubclass(cls, SpecError):
        return cls("optim.lr", "must be > 0, got -1; write e.g. lr: 0.05", "sweep.yaml")
    if cls is TrialDiverged:
        return cls(3, float("nan"))
    return cls("what went wrong and how to fix it")


@pytest.mark.parametrize("cls", _every_error_class(), ids=lambda c: c.__name__)
def test_every_error_class_pickles_with_its_message(cls):
    e = _instance(cls)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls and str(back) == str(e) and back.args == e.args
    assert vars(back).keys() == vars(e).keys()


def test_a_spec_error_listing_several_mistakes_pickles_whole():
    e = SpecError.of([SpecError("optim.lr", "must be > 0"), SpecError("grid.onset", "must be a list")], "s.yaml")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and "2 problems" in str(back)
    listed = [(p.field, p.message) for p in back.problems]
    assert listed == [("optim.lr", "must be > 0"), ("grid.onset", "must be a list")]
    assert (back.field, back.source) == ("optim.lr", "s.yaml")
