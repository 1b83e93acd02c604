"""A sweep's results folder as one thing to read: `ResultsFolder(uri)` (local or any pyarrow URI), above
the files (`store.py`) and the tables (`tables.py`).

    folder = ResultsFolder("results/quickstart")
    folder.load()                             Results: the three tables, the spec, an adaptive search
    folder.table("fisher_layers", trial_ids)  one table, only the rows of some trials
    load_results(uri)                         ResultsFolder(uri).load()
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import CpsweepError
from .store import SEARCH_FILE, SPEC_FILE, Store
from .tables import Tables


@dataclass
class Results:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    fisher_layers: pd.DataFrame
    spec: dict[str, Any]
    search: dict[str, Any] = field(default_factory=dict)  # search.json of an adaptive sweep (`sweep/adaptive.py`)


class ResultsFolder:
    """The results folder of one sweep, for reading: its trials, its tables as the manifest has them
    (`tables.py`: never a part a crash left behind), its spec and its search."""

    def __init__(self, uri: str, store: Store | None = None):
        self.uri = uri
        self.store = store or Store(uri)
        if store is None:
            self.store.check_reachable()
        self.tables, self._trials = Tables.read(self.store)

    def trials(self) -> pd.DataFrame:
        """trials.parquet (one row per trial of the grid).

        Raises:
            CpsweepError: the folder holds no cpsweep results.
        """
        if self._trials is None:
            if "://" not in self.uri and not os.path.exists(self.uri):
                raise CpsweepError(f"{self.uri} does not exist; pass the results folder of one sweep, e.g. "
                                   f"results/quickstart")
            raise CpsweepError(f"{self.uri} holds no cpsweep results (no trials.parquet); pass the folder of one "
                               f"sweep, e.g. results/quickstart")
        return self._trials

    def table(self, name: str, trial_ids: Iterable[str] | None = None,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Table `name` (epochs, fisher_layers); only the rows of `trial_ids` and `columns` when given."""
        return self.tables.read_table(name, columns, trial_ids)

    def spec(self) -> dict[str, Any]:
        """spec.yaml: the resolved spec, its hash and the file as written ({} when missing)."""
        return self.store.read_document(SPEC_FILE)

    def search(self) -> dict[str, Any]:
        """search.json of an adaptive sweep ({} otherwise)."""
        return self.store.read_document(SEARCH_FILE)

    def load(self, fisher_layers: bool | Sequence[str] = True) -> Results:
        """Every table, the spec and the search. `fisher_layers`: True reads every per-layer row, False none,
        a list of trial ids only theirs (it is the largest table: 20 rows per epoch of a deep network)."""
        trials = self.trials()
        if fisher_layers is True or fisher_layers is False:
            layers = self.table("fisher_layers", None if fisher_layers else [])
        else:
            layers = self.table("fisher_layers", fisher_layers)
        return Results(trials, self.table("epochs"), layers, self.spec(), self.search())


def load_results(uri: str, fisher_layers: bool | Sequence[str] = True) -> Results:
    """The tables of a sweep's results folder (local or a pyarrow URI): `ResultsFolder(uri).load(...)`.

    Raises:
        CpsweepError: the folder holds no cpsweep results.
    """
    return ResultsFolder(uri).load(fisher_layers)
