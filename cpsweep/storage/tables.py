"""The top-level tables of a sweep, kept at the same cost per trial at any scale.

A launch never rewrites the per-epoch tables: each flush appends one Parquet file (a *part*) holding the
epoch rows (and per-layer Fisher rows) of the trials that finished since the last flush, read from their
shards, and rewrites `trials.parquet` (one row per trial: small). The folder `epochs.parquet/` is then a
Parquet dataset that pandas, pyarrow and polars read as one table (`pd.read_parquet(".../epochs.parquet")`),
DuckDB as `read_parquet('.../epochs.parquet/*.parquet')`.

    trials.parquet                        one row per trial; its schema metadata `cpsweep` is the manifest
    epochs.parquet/part-<level>-<id>.parquet          (trial, epoch) rows of some finished trials
    fisher_layers.parquet/part-<level>-<id>.parquet   (trial, epoch, layer) rows of the same trials

The manifest names the parts that hold committed rows. A flush writes its new parts first, then
`trials.parquet` with the new manifest (the commit: one atomic write), then deletes the parts the manifest
no longer names. A trial's rows enter a part in the same flush that marks it finished in `trials.parquet`,
so the trials it lists as ok or diverged are exactly the trials whose rows the parts hold, once each.
A flush cut off before its commit leaves parts the manifest does not name; the next launch deletes them
(`Tables.remove_uncommitted`) and indexes those trials again from their shards.

Compaction keeps the number of files small: when `FANIN` parts of one level exist, they are merged into
one part of the next level (streamed, a row group at a time), so every row is rewritten about
log_FANIN(flushes) times over a sweep and the folder holds at most FANIN - 1 parts per level.

`read_table` reads through the manifest, so it never sees a part that a crash left behind or that a
compaction is replacing; a reader that lists the folder itself (pandas, DuckDB) may, for the moment
between a compaction's commit and its deletes, see the merged rows twice.

Results folders from cpsweep 0.2.0 and before (single-file tables, no manifest) are read as they are;
a launch into one indexes its shards again and replaces the single files by part folders.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .records import EPOCH_FIELDS, LAYER_FIELDS, TRIAL_COLUMNS, TRIAL_FIELDS
from .store import TABLE_FILES, Store

FORMAT = 2          # the layout version the manifest records
FANIN = 8           # parts of one level merged into one of the next
ROW_GROUP = 262_144  # rows per row group in the parts (memory of a flush or a compaction: one group)

ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


def arrow_schema(fields: dict[str, str]) -> pa.Schema:
    """The Parquet schema of a table declared in `records.py` (its *_FIELDS)."""
    return pa.schema([(name, ARROW[kind]) for name, kind in fields.items()])


EPOCH_SCHEMA, LAYER_SCHEMA = arrow_schema(EPOCH_FIELDS), arrow_schema(LAYER_FIELDS)
TRIAL_SCHEMA = arrow_schema(TRIAL_FIELDS)  # trials.parquet, written and read with it (older folders' too)
SCHEMAS = {"epochs": EPOCH_SCHEMA, "fisher_layers": LAYER_SCHEMA}


def with_metrics(name: str, metrics: Sequence[str] = ()) -> pa.Schema:
    """Table `name`'s schema, the epochs table with a float64 column per user metric (`metric.<name>`)."""
    schema = SCHEMAS[name]
    return schema if name != "epochs" else pa.schema([*schema, *((m, pa.float64()) for m in metrics)])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order and type (a missing column: nulls)."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def level_of(part: str) -> int:
    return int(part.split("-")[1])


def part_name(level: int) -> str:
    return f"part-{level}-{time.time_ns():x}-{uuid.uuid4().hex[:8]}.parquet"


class Tables:
    """The top-level tables of one results folder: its manifest, and the flushes that extend them."""

    def __init__(self, store: Store, parts: dict[str, list[str]] | None = None, legacy: bool = False,
                 metrics: Sequence[str] = ()):
        self.store = store
        self.parts = parts if parts is not None else {name: [] for name in SCHEMAS}
        self.legacy = legacy  # single-file tables of cpsweep <= 0.2.0 (no manifest)
        self.metrics = sorted(metrics)  # the epochs table's columns of a user's metrics (in the manifest)

    def schema(self, name: str) -> pa.Schema:
        return with_metrics(name, self.metrics)

    def add_metrics(self, metrics: Sequence[str]) -> None:
        """Columns the next flushes give the epochs table (older parts read them as nulls)."""
        self.metrics = sorted(set(self.metrics) | set(metrics))

    # -- reading -------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, store: Store) -> tuple[Tables, pd.DataFrame | None]:
        """The folder's manifest and its trials table (None when there is none)."""
        if not store.exists("trials.parquet"):
            return cls(store), None
        with store.reading("trials.parquet"), store.fs.open_input_file(store.path("trials.parquet")) as f:
            table = pq.read_table(f)
        meta = json.loads((table.schema.metadata or {}).get(b"cpsweep", b"null"))
        trials = conform(table, TRIAL_SCHEMA).to_pandas()
        trials["round"] = trials["round"].astype("Int64")  # (all null in a plain grid: float64 otherwise)
        if not meta:
            return cls(store, legacy=True), trials
        return cls(store, {name: list(meta["parts"].get(name, [])) for name in SCHEMAS},
                   metrics=meta.get("metrics", [])), trials

    def read_table(self, name: str, columns: Sequence[str] | None = None,
                   trial_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Table `name` (epochs, fisher_layers) as the manifest has it; only `columns` and the rows of
        `trial_ids` when given."""
        schema = self.schema(name)
        ids = None if trial_ids is None else sorted(set(trial_ids))
        if self.legacy:
            files = [self.store.path(TABLE_FILES[name])] if self.store.exists(TABLE_FILES[name]) else []
        else:
            files = [self.store.path(TABLE_FILES[name], p) for p in self.parts[name]]
        if not files or ids == []:
            return schema.empty_table().select(list(columns or schema.names)).to_pandas()
        with self.store.errors(f"read the {name} table ({TABLE_FILES[name]}) in"):
            data = pads.dataset(files, schema=schema, filesystem=self.store.fs, format="parquet")
            where = pads.field("trial_id").isin(pa.array(ids, pa.string())) if ids is not None else None
            return data.to_table(columns=list(columns) if columns else None, filter=where).to_pandas()

    # -- writing -------------------------------------------------------------------------------------------
    def remove_uncommitted(self) -> None:
        """Before a launch extends the tables: delete the parts no manifest names (left by a flush or a
        compaction cut off before its commit); in a legacy folder, drop the single-file tables (the
        launch indexes every shard again)."""
        for name, file in TABLE_FILES.items():
            with self.store.errors("tidy up"):
                info = self.store.fs.get_file_info(self.store.path(file))
                if info.type == pafs.FileType.File:
                    self.store.fs.delete_file(info.path)
                elif info.type == pafs.FileType.Directory:
                    named = set(self.parts[name])
                    for f in self.store.fs.get_file_info(pafs.FileSelector(info.path)):
                        if f.base_name.startswith((".part-", "part-")) and f.base_name not in named:
                            self.store.fs.delete_file(f.path)
        self.legacy = False

    def commit(self, trials: pd.DataFrame, new_ids: Sequence[str]) -> None:
        """One flush: the rows of `new_ids` (finished trials whose rows no part holds yet, read from their
        shards) into new parts, compaction, then `trials` with the new manifest; then the merged-away
        parts deleted."""
        parts = {name: list(files) for name, files in self.parts.items()}
        merged_away: dict[str, list[str]] = {name: [] for name in SCHEMAS}  # including parts of this flush
        for name in SCHEMAS:
            if new_ids or not parts[name]:  # (an empty part, so that a new sweep's tables have their schema)
                parts[name].append(self._write_part(name, 0, self._shard_batches(name, new_ids)))
            while True:
                level = next((lv for lv in sorted({level_of(p) for p in parts[name]})
                              if sum(level_of(p) == lv for p in parts[name]) >= FANIN), None)
                if level is None:
                    break
                merged = [p for p in parts[name] if level_of(p) == level]
                parts[name] = [p for p in parts[name] if p not in merged]
                parts[name].append(self._write_part(name, level + 1, self._part_batches(name, merged)))
                merged_away[name] += merged
        self._replace(trials, parts, merged_away)

    def drop(self, trials: pd.DataFrame, ids: Sequence[str]) -> None:
        """Remove the rows of `ids` from every table (their results no longer hold: the plug-in code they
        ran was edited): each table's parts rewritten as one part without them (`_replace`). A full
        rewrite, so only for such an edit."""
        gone = pa.array(sorted(set(ids)), pa.string())
        parts = {}
        for name, old in self.parts.items():
            kept = (b.filter(pa.compute.invert(pa.compute.is_in(b.column("trial_id"), value_set=gone)))
                    for b in self._part_batches(name, old))
            parts[name] = [self._write_part(name, max((level_of(p) for p in old), default=0), kept)]
        self._replace(trials, parts)

    def write_frames(self, trials: pd.DataFrame, epochs: pd.DataFrame, layers: pd.DataFrame) -> None:
        """Whole tables as one part each (hand-made results, tests), replacing what the folder held."""
        self.remove_uncommitted()
        self.add_metrics([c for c in epochs.columns if c.startswith("metric.")])
        self._replace(trials, {name: [self._write_part(name, 0, [conform(
            pa.Table.from_pandas(df, preserve_index=False), self.schema(name))])]
            for name, df in (("epochs", epochs), ("fisher_layers", layers))})

    def _replace(self, trials: pd.DataFrame, parts: dict[str, list[str]],
                 merged_away: dict[str, list[str]] | None = None) -> None:
        """Commit `trials` with `parts` as the whole tables, then delete the parts they replace: those of
        the old manifest they do not name, and `merged_away` (parts a compaction merged, this flush's too)."""
        old = {name: [*files, *(merged_away or {}).get(name, [])] for name, files in self.parts.items()}
        self._write_trials(trials, parts)
        self.parts = parts
        with self.store.errors("tidy up"):
            for name, files in old.items():
                for p in dict.fromkeys(files):
                    if p not in parts.get(name, ()):
                        self.store.fs.delete_file(self.store.path(TABLE_FILES[name], p))

    def _write_trials(self, trials: pd.DataFrame, parts: dict[str, list[str]]) -> None:
        table = conform(pa.Table.from_pandas(trials.reindex(columns=TRIAL_COLUMNS), preserve_index=False),
                        TRIAL_SCHEMA)
        manifest = json.dumps({"format": FORMAT, "parts": parts,
                               **({"metrics": self.metrics} if self.metrics else {})}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"cpsweep": manifest})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.store.write_bytes(sink.getvalue().to_pybytes(), "trials.parquet")

    def _shard_batches(self, name: str, ids: Sequence[str]) -> Iterable[pa.Table]:
        for tid in ids:
            parts = ("shards", tid, TABLE_FILES[name])
            with self.store.reading(*parts), self.store.fs.open_input_file(self.store.path(*parts)) as f:
                yield conform(pq.read_table(f), self.schema(name))

    def _part_batches(self, name: str, parts: Sequence[str]) -> Iterable[pa.Table]:
        for p in parts:
            with self.store.reading(TABLE_FILES[name], p), self.store.fs.open_input_file(
                    self.store.path(TABLE_FILES[name], p)) as f:
                reader = pq.ParquetFile(f)
                for i in range(reader.num_row_groups):
                    yield conform(reader.read_row_group(i), self.schema(name))

    def _write_part(self, name: str, level: int, tables: Iterable[pa.Table]) -> str:
        """Stream `tables` into one new part (row groups of up to ROW_GROUP rows); returns its name."""
        part = part_name(level)
        path = self.store.path(TABLE_FILES[name], part)
        with self.store.errors("write results to", self.store.fix):
            self.store.fs.create_dir(self.store.path(TABLE_FILES[name]), recursive=True)
            tmp = self.store.path(TABLE_FILES[name], f".{part}.tmp")
            with self.store.fs.open_output_stream(tmp) as out, pq.ParquetWriter(out, self.schema(name)) as writer:
                pending: list[pa.Table] = []
                rows, groups = 0, 0
                for t in tables:
                    pending.append(t)
                    rows += len(t)
                    if rows >= ROW_GROUP:
                        writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
                        pending, rows, groups = [], 0, groups + 1
                if pending or not groups:  # (an empty part still has the schema)
                    writer.write_table(pa.concat_tables(pending) if pending else self.schema(name).empty_table())
            self.store.fs.move(tmp, path)
        return part
