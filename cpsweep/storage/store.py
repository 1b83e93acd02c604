"""Results as tidy Parquet tables on a local folder or any pyarrow file system (s3://, gs://, NFS).

Layout of one sweep (docs/results.md lists every column, its type, unit and meaning):

    <storage>/<sweep>/spec.yaml               the resolved spec and its hash
    <storage>/<sweep>/trials.parquet          one row per trial of the grid (status pending ... ok)
    <storage>/<sweep>/epochs.parquet/         one row per (trial, epoch): a folder of parts (`tables.py`)
    <storage>/<sweep>/fisher_layers.parquet/  one row per (trial, epoch, layer): a folder of parts
    <storage>/<sweep>/shards/<trial>/...      the same three tables for one finished trial: the source of
                                              truth, written by the trial itself when it ends
    <storage>/<sweep>/tune/...                Ray Tune's experiment state and checkpoints

Every file is written atomically (a temporary name, then a rename), so a reader never sees half a file.
A trial's shard is replaced, never appended to; the top-level tables take each finished trial's rows from
its shard once (`tables.py` says how), so a row can neither be lost nor duplicated.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from .._io import atomic_write
from ..config.spec import TrialSpec
from ..errors import StorageError
from .records import EPOCH_COLUMNS, EPOCH_FIELDS, LAYER_COLUMNS, LAYER_FIELDS, EpochRecord, numeric_types, trial_row

TABLES = ("trials", "epochs", "fisher_layers")
TABLE_FILES = {"epochs": "epochs.parquet", "fisher_layers": "fisher_layers.parquet"}  # in a shard and at the top
SHARD_TRIAL = "trial.parquet"  # a shard's row of trials.parquet, written last: its completion marker
SEARCH_FILE = "search.json"    # an adaptive sweep's rounds and boundaries (`sweep/adaptive.py`)
SPEC_FILE = "spec.yaml"        # the resolved spec, its hash, the file as read and the design (`sweep/launch.py`)
KINDS = {dict: "mapping", list: "list"}
# seconds a gs:// store's first look may retry: pyarrow's GCS client otherwise retries for minutes (over 100 s
# measured offline) before it says that it has no credentials or no network (`Store.check_reachable`)
PROBE_S = 10
DOCUMENT_PARTS = {SPEC_FILE: {"fixed": dict, "spec": dict, "design": list}}  # entries of a known type


def epochs_frame(trial_id: str, records: Sequence[EpochRecord]) -> pd.DataFrame:
    """epochs.parquet rows of one trial (its records may come from a prefix another trial trained)."""
    extra = sorted({k for r in records for k in r.metrics})  # a user's metrics, `metric.<name>`
    return pd.DataFrame([{**r.to_row(), "trial_id": trial_id} for r in records],
                        columns=EPOCH_COLUMNS + extra).astype({**numeric_types(EPOCH_FIELDS),
                                                               **{c: "float64" for c in extra}})


def layers_frame(trial_id: str, records: Sequence[EpochRecord]) -> pd.DataFrame:
    """fisher_layers.parquet rows of one trial."""
    rows = [{**row, "trial_id": trial_id} for r in records for row in r.layer_rows()]
    return pd.DataFrame(rows, columns=LAYER_COLUMNS).astype(numeric_types(LAYER_FIELDS))


def join_uri(uri: str, *parts: str) -> str:
    """Append path parts to a local path or a URI, keeping a URI's query (s3://b/p?endpoint_override=...)."""
    base, sep, query = uri.partition("?")
    if "://" not in base:
        base = os.path.abspath(base)
    return "/".join([base.rstrip("/"), *parts]) + (sep + query if sep else "")


def missing_slashes(uri: str) -> str | None:
    """Why `uri` is neither a folder nor a URI, or None: a scheme without its '//' (s3:/bucket would be read
    as a local folder named "s3:"), with the URI it meant."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):/*", uri)
    if scheme and not uri.startswith(f"{scheme.group(1)}://"):
        return f"{uri!r} looks like a URI without its '//': write {scheme.group(1)}://{uri[scheme.end():]}"
    return None


def shard_fix(parts: Sequence[str]) -> str | None:
    """The fix for a damaged file of a trial's shard (`shards/<trial id>/...`): delete the shard, and the next
    launch trains that trial again; None for other files (`Store.errors`' default fix)."""
    if len(parts) >= 2 and parts[0] == "shards":
        return f"delete shards/{parts[1]}/ and launch again: that trial is trained again"
    return None


class Store:
    """The results folder of one sweep, on a local path or a pyarrow file-system URI."""

    def __init__(self, uri: str, filesystem: pafs.FileSystem | None = None,
                 fix: str = "check --storage and its permissions"):
        if missing_slashes(uri):
            raise StorageError(missing_slashes(uri))
        self.uri = uri
        self.fix = fix  # what a write failure tells the user to do
        if filesystem is not None:  # (a wrapper of the file system `uri` names: its path inside)
            self.fs, self.root = filesystem, pafs.FileSystem.from_uri(uri)[1] if "://" in uri else uri
        elif "://" in uri:
            with self.errors("open", "use a local folder or s3://bucket/prefix (gs://, hdfs:// as pyarrow knows them)"):
                self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri)
        self.root = self.root.rstrip("/")

    @contextlib.contextmanager
    def errors(self, doing: str, fix: str | None = None):
        """Turn a file-system failure (unreachable endpoint, missing bucket, no permission, a corrupt file)
        into one `StorageError` line naming the results folder, what was being done and the fix."""
        try:
            yield
        except (OSError, pa.ArrowException) as e:
            detail = " ".join(str(e).split())
            if isinstance(e, FileNotFoundError) and "no such file" not in detail.lower():  # (pyarrow's says
                detail = f"missing: {detail}"                                             # only the path)
            default = ("check the path or URI, the endpoint, your credentials and permissions" if "://" in self.uri
                       else "check the path and its permissions; a table that does not read is damaged (each "
                            "finished trial's own records are also in the folder's shards/)")
            raise StorageError(f"cannot {doing} {self.uri}: {detail}; {fix or default}") from None

    def path(self, *parts: str) -> str:
        """A path inside the store's file system."""
        return "/".join([self.root, *parts])

    def uri_of(self, *parts: str) -> str:
        """A URI (or local path) that another process can open, e.g. a checkpoint for Tune."""
        return join_uri(self.uri, *parts)

    # -- raw files -----------------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        with self.errors("read"):
            return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_bytes(self, data: bytes, *parts: str, doing: str = "write results to") -> None:
        """Write atomically (`_io.atomic_write`: a temporary sibling, then a rename)."""
        with self.errors(doing, self.fix):
            atomic_write(self.path(*parts), data, self.fs)

    def reading(self, *parts: str):
        """`errors` for reading the file at `parts`, naming it (and, for a shard's file, the fix)."""
        return self.errors(f"read {'/'.join(parts)} in", shard_fix(parts))

    def read_bytes(self, *parts: str) -> bytes:
        with self.reading(*parts), self.fs.open_input_stream(self.path(*parts)) as f:
            return f.read()

    def read_document(self, name: str) -> dict[str, Any]:
        """spec.yaml or search.json as a mapping ({} when missing); a damaged one (not YAML / JSON, not a
        mapping, a known entry of the wrong type) is one `StorageError` naming it and the fix."""
        if not self.exists(name):
            return {}
        try:
            text = self.read_bytes(name)
            doc = (json.loads(text) if name.endswith(".json") else yaml.safe_load(text)) or {}
            problem = None if isinstance(doc, dict) else f"holds a {type(doc).__name__}, not a mapping"
        except (ValueError, yaml.YAMLError) as e:  # (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
            problem = f"cannot be parsed ({str(e).splitlines()[0]})"
        if problem is None:
            problem = next((f"has {key}: {doc[key]!r}, not a {KINDS[want]}" for key, want in
                            DOCUMENT_PARTS.get(name, {}).items() if doc.get(key) is not None
                            and not isinstance(doc[key], want)), None)
        if problem:
            raise StorageError(f"{self.uri_of(name)} is damaged: it {problem}; restore it from a copy, or "
                               f"start the sweep again under a new name or in an empty folder")
        return doc

    def write_table(self, df: pd.DataFrame, *parts: str) -> None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.write_bytes(buf.getvalue(), *parts)

    def read_table(self, *parts: str) -> pd.DataFrame:
        with self.reading(*parts), self.fs.open_input_file(self.path(*parts)) as f:
            return pq.read_table(f).to_pandas()

    def check_reachable(self) -> None:
        """Fail in seconds, not minutes, when a gs:// store cannot be reached (no credentials, no network): one
        look at the folder that retries for at most `PROBE_S` seconds, unless the URI sets its own
        `retry_limit_seconds`. Later reads and writes keep pyarrow's patient default. Other stores: nothing."""
        if not self.uri.startswith("gs://") or "retry_limit_seconds=" in self.uri:
            return
        probe = self.uri + ("&" if "?" in self.uri else "?") + f"retry_limit_seconds={PROBE_S}"
        try:
            fs, root = pafs.FileSystem.from_uri(probe)
            fs.get_file_info(root)
        except (OSError, pa.ArrowException) as e:
            detail = " ".join(str(e).split()).split(" error_info=")[0]  # google-cloud's status, without its echo:
            cause = detail.partition("The underlying error message was: ")[2]  # its first sentence, and the cause
            detail = detail.split(". ")[0] + (f" ({cause})" if cause else "")
            raise StorageError(f"cannot reach {self.uri} (retried for {PROBE_S} s): {detail}; check your "
                               "Google Cloud credentials (gcloud auth application-default login), the network and "
                               "the bucket's name, or add ?retry_limit_seconds=N to wait longer") from None

    def check_writable(self) -> None:
        """Fail before any work if the results folder cannot be written (`CpsweepError` with `fix`)."""
        self.write_bytes(b"", ".write-test")
        with self.errors("write results to", self.fix):
            self.fs.delete_file(self.path(".write-test"))

    def check_folders(self) -> None:
        """Fail before any work if a file sits where a results folder keeps one of its folders (shards/,
        tune/, prefixes/, logs/): a launch would fail there only after writing spec.yaml. (A table may be one
        file: folders of cpsweep <= 0.2.0.)"""
        names = ["shards", "tune", "prefixes", "logs"]
        with self.errors("read"):
            infos = self.fs.get_file_info([self.path(n) for n in names])
        for name, info in zip(names, infos):
            if info.type == pafs.FileType.File:
                raise StorageError(f"{self.uri}/{name} is a file where cpsweep keeps a folder; move it away, or "
                                   f"use another sweep name or --storage")

    @contextlib.contextmanager
    def kept_only_if_used(self, release=None):
        """Remove the results folder if the block fails and the folder, made by it, is still empty: a launch
        refused after `check_writable` (an unreachable cluster, trials that do not fit) leaves nothing behind.
        `release`: called first when the block fails (the launch's lock, whose file would keep the folder)."""
        made = [self.root]  # the folders the block may make: locally, every missing parent too
        if isinstance(self.fs, pafs.LocalFileSystem):
            while not os.path.exists(os.path.dirname(made[-1])) and os.path.dirname(made[-1]) != made[-1]:
                made.append(os.path.dirname(made[-1]))
        existed = self.exists()
        try:
            yield
        except BaseException:
            if release is not None:
                release()
            with contextlib.suppress(OSError, StorageError):
                for folder in [] if existed else made:  # innermost first; each only if empty
                    if self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
                        break
                    self.fs.delete_dir(folder)
            raise

    # -- shards: one finished trial each -------------------------------------------------------------
    def write_shard(self, trial: TrialSpec, records: Sequence[EpochRecord], status: str, error: str = "",
                    spec_hash: str = "", git_commit: str = "", node: str = "", shared: int = 0,
                    numerics: str = "") -> None:
        """A finished trial's three tables; `trial.parquet` last, as the completion marker."""
        self.write_trial(trial, records, status, error, spec_hash, git_commit, node, shared,
                         folder=("shards", trial.trial_id), table=SHARD_TRIAL, numerics=numerics)

    def write_trial(self, trial: TrialSpec, records: Sequence[EpochRecord], status: str, error: str = "",
                    spec_hash: str = "", git_commit: str = "", node: str = "", shared: int = 0,
                    folder: tuple[str, ...] = (), table: str = "trials.parquet", numerics: str = "") -> None:
        """One trial's three tables in `folder` (the store's top by default, as `cpsweep trial` writes them),
        the trial's row (`table`) last."""
        self.write_table(epochs_frame(trial.trial_id, records), *folder, TABLE_FILES["epochs"])
        self.write_table(layers_frame(trial.trial_id, records), *folder, TABLE_FILES["fisher_layers"])
        row = trial_row(trial, records, status, error, spec_hash, git_commit, node, shared, numerics)
        self.write_table(pd.DataFrame([row]), *folder, table)

    def read_shard(self, trial_id: str, tables: Sequence[str] = TABLES) -> dict[str, pd.DataFrame] | None:
        """`tables` of one trial's shard, read by path (no listing); None if the shard is not complete."""
        if not self.exists("shards", trial_id, SHARD_TRIAL):
            return None  # not finished, or died while writing its shard: it will be rerun
        files = {"trials": SHARD_TRIAL, **TABLE_FILES}
        return {t: self.read_table("shards", trial_id, files[t]) for t in tables}

    def shard_ids(self) -> set[str]:
        """The trial ids that have a shard folder, complete or not (one listing of `shards/`)."""
        with self.errors("list"):
            infos = self.fs.get_file_info(pafs.FileSelector(self.path("shards"), allow_not_found=True))
        return {i.base_name for i in infos if i.type == pafs.FileType.Directory}

    def complete_shards(self, ids: Sequence[str]) -> set[str]:
        """Those of `ids` whose shard is complete (its `trial.parquet`, written last, exists)."""
        with self.errors("read"):
            infos = self.fs.get_file_info([self.path("shards", tid, SHARD_TRIAL) for tid in ids])
        return {tid for tid, info in zip(ids, infos) if info.type == pafs.FileType.File}

    def remove_shards(self, ids: Sequence[str]) -> None:
        """Delete the shards of `ids` (trials whose results no longer hold, to be trained again); the
        trial.parquet that marks a shard complete goes first, so a cut-off removal leaves incomplete shards."""
        with self.errors("remove results from", self.fix):
            for tid in ids:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.delete_file(self.path("shards", tid, SHARD_TRIAL))
                self.fs.delete_dir(self.path("shards", tid))
