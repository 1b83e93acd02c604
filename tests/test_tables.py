"""The top-level tables (cpsweep/storage/tables.py) fed by the progress board, without Ray: synthetic
shards through the real store, flushes and compactions, checked after every event against a brute-force
concatenation of the shards; flushes cut off at each step; a relaunch's storage requests counted."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.fs as pafs
import pytest
from tiny_specs import tiny_sweep

from cpsweep.config.sweep_file import parse_sweep
from cpsweep.storage import tables as tables_mod
from synthetic_shards import CountingHandler, SyntheticShards
from cpsweep.errors import StorageError
from cpsweep.storage.store import Store
from cpsweep.storage.folder import load_results
from cpsweep.storage.tables import Tables
from cpsweep.sweep.progress import Progress

KEYS = ["trial_id", "epoch"]


def grid(onsets=range(0, 20, 2), seeds=2):
    sweep = parse_sweep(tiny_sweep(replicates=seeds, epochs=max(onsets) + 4,
                                   grid={"onset": list(onsets), "length": [2]}))
    return sweep.trials()


def shards_concat(store: Store, ids, name: str) -> pd.DataFrame:
    """The reference: the shards of `ids`, read one by one and concatenated."""
    frames = [pd.read_parquet(os.path.join(store.root, "shards", t, f"{name}.parquet")) for t in sorted(ids)]
    return tidy(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS))


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("trial_id", "epoch", "layer") if c in df.columns]
    return df.sort_values(cols).reset_index(drop=True)


def check(store: Store, finished) -> None:
    """The tables hold exactly the rows of `finished`, once each, and the folders hold only named parts."""
    res = load_results(store.uri)
    for name, got in (("epochs", res.epochs), ("fisher_layers", res.fisher_layers)):
        want = shards_concat(store, finished, name)
        pd.testing.assert_frame_equal(tidy(got)[list(want.columns)], want, check_dtype=False)
        assert sorted(os.listdir(os.path.join(store.root, f"{name}.parquet"))) == sorted(
            Tables.read(store)[0].parts[name])
    assert set(res.trials[res.trials.status == "ok"].trial_id) == set(finished)


def run(store: Store, trials, writer: SyntheticShards, progress: Progress, each=None):
    for i, t in enumerate(trials):
        progress.started(t.trial_id)
        writer.write(t)
        progress.finished(t.trial_id)
        if each is not None:
            each(i)


def test_every_flush_appends_the_finished_trials_rows_once_and_compaction_keeps_them(tmp_path, monkeypatch):
    monkeypatch.setattr(tables_mod, "FANIN", 3)  # compactions at 3, 6, 9 ... flushes: two levels in 22 trials
    trials = grid()
    store = Store(str(tmp_path / "s"))
    writer = SyntheticShards(store, epochs=64, layers=4)
    progress = Progress(store, trials, "h", flush_every=0)
    progress.flush()
    run(store, trials, writer, progress, lambda i: check(store, [t.trial_id for t in trials[:i + 1]]))
    parts = Tables.read(store)[0].parts["epochs"]
    assert len(parts) < 2 * 3 and max(tables_mod.level_of(p) for p in parts) == 2  # 22 = 2*9 + 1*3 + 1
    # every reader of the folder sees the same table: pandas, pyarrow, polars, DuckDB
    epochs = shards_concat(store, [t.trial_id for t in trials], "epochs")
    folder = os.path.join(store.root, "epochs.parquet")
    polars, duckdb = pytest.importorskip("polars"), pytest.importorskip("duckdb")
    for got in (pd.read_parquet(folder), polars.read_parquet(folder).to_pandas(),
                duckdb.sql(f"select * from read_parquet('{folder}/*.parquet')").df()):
        pd.testing.assert_frame_equal(tidy(got)[list(epochs.columns)], epochs, check_dtype=False)


def test_flushes_are_throttled_and_the_last_one_completes_the_tables(tmp_path):
    trials = grid(onsets=(0, 2, 4), seeds=1)
    store = Store(str(tmp_path / "s"))
    now = [0.0]
    progress = Progress(store, trials, "h", flush_every=10, clock=lambda: now[0])
    progress.flush()
    writer = SyntheticShards(store, epochs=64, layers=2)
    run(store, trials[:2], writer, progress)  # at t = 0: within 10 s of the first flush
    check(store, [])
    now[0] = 10.0
    progress.tick()
    check(store, [t.trial_id for t in trials[:2]])
    run(store, trials[2:], writer, progress)
    progress.finish()
    check(store, [t.trial_id for t in trials])


@pytest.mark.parametrize("cut", ["before_commit", "after_commit"])
def test_a_flush_cut_off_anywhere_leaves_no_row_lost_or_twice_after_the_relaunch(tmp_path, monkeypatch, cut):
    monkeypatch.setattr(tables_mod, "FANIN", 2)
    trials = grid(onsets=(0, 2, 4, 6), seeds=1)
    handler = CountingHandler(pafs.LocalFileSystem())
    store = Store(str(tmp_path / "s"), filesystem=pafs.PyFileSystem(handler))
    writer = SyntheticShards(store, epochs=64, layers=2)
    progress = Progress(store, trials, "h", flush_every=0)
    progress.flush()
    run(store, trials[:2], writer, progress)  # flushes so far: the empty part, then 2 parts merged into one
    if cut == "before_commit":  # the new part and the merged parts written, trials.parquet not
        handler.kill = lambda method, path: method == "move" and path.endswith("trials.parquet")
    else:  # committed, the merged-away parts not deleted yet
        handler.kill = lambda method, path: method == "delete_file"
    with pytest.raises(KeyboardInterrupt):
        run(store, trials[2:3], writer, progress)  # its flush merges two level-0 parts, then two level-1
    handler.kill = None
    names = set(os.listdir(os.path.join(store.root, "epochs.parquet")))
    assert names != set(Tables.read(store)[0].parts["epochs"])  # a part the manifest does not name
    again = Progress(store, trials, "h", flush_every=0)  # the relaunch
    assert again.counts()["ok"] == 3 and again.counts()["pending"] == 2
    again.flush()
    check(store, [t.trial_id for t in trials[:3]])
    run(store, trials[3:], writer, again)
    check(store, [t.trial_id for t in trials])


def test_a_folder_of_single_file_tables_is_read_and_then_converted(tmp_path):
    """Results of cpsweep 0.2.0 (single-file tables, no manifest) read as they are; a launch into the folder
    indexes the shards again."""
    trials = grid(onsets=(0, 2), seeds=1)
    store = Store(str(tmp_path / "s"))
    writer = SyntheticShards(store, epochs=64, layers=2)
    for t in trials:
        writer.write(t)
    ids = [t.trial_id for t in trials]
    old = {name: shards_concat(store, ids, name) for name in ("epochs", "fisher_layers")}
    rows = pd.concat([pd.read_parquet(os.path.join(store.root, "shards", t, "trial.parquet")) for t in ids])
    rows.to_parquet(os.path.join(store.root, "trials.parquet"))
    for name, df in old.items():
        df.to_parquet(os.path.join(store.root, f"{name}.parquet"))
    res = load_results(store.uri)
    pd.testing.assert_frame_equal(tidy(res.epochs), old["epochs"], check_dtype=False)
    progress = Progress(store, trials, "h")
    assert progress.counts()["ok"] == len(trials) and sorted(progress.unflushed) == sorted(ids)
    progress.flush()
    assert os.path.isdir(os.path.join(store.root, "epochs.parquet"))
    check(store, ids)


def test_relaunch_of_a_finished_sweep_costs_the_same_requests_at_any_size(tmp_path):
    """Requests to find what a folder holds: one read of trials.parquet, one listing of shards/, the
    baselines' curves from the parts: the same for 10 trials as for 42."""
    counts = []
    for onsets in (range(0, 8, 2), range(0, 40, 2)):
        trials = grid(onsets=onsets, seeds=2)
        store = Store(str(tmp_path / f"s{len(trials)}"))
        writer = SyntheticShards(store, epochs=64, layers=2)
        progress = Progress(store, trials, "h")
        progress.flush()
        run(store, trials, writer, progress)
        progress.finish()
        handler = CountingHandler(pafs.LocalFileSystem())
        again = Progress(Store(store.root, filesystem=pafs.PyFileSystem(handler)), trials, "h")
        assert again.counts()["ok"] == len(trials) and not again.unflushed
        counts.append(handler.calls)
    print(counts)
    assert counts[0] == counts[1] and counts[0]["list"] == 1, counts


def test_the_report_reads_the_per_layer_rows_of_the_trials_it_shows_only(tmp_path, monkeypatch):
    from results_fixture import make_results, write_tables

    from cpsweep.results.report import results_for_report, write_report

    res = make_results(onsets=(0, 10, 20))
    store = Store(str(tmp_path / "hand"))
    write_tables(store.uri, res)
    shown = results_for_report(store.uri)
    assert set(shown.fisher_layers.trial_id) == {"baseline-s0", "blur-o0-l10-s0", "blur-o20-l10-s0"}
    pd.testing.assert_frame_equal(tidy(shown.fisher_layers)[list(res.fisher_layers.columns)],
                                  tidy(res.fisher_layers[res.fisher_layers.trial_id.isin(
                                      set(shown.fisher_layers.trial_id))]), check_dtype=False)
    with open(write_report(store.uri)) as f:
        page = f.read()
    assert "for the baseline (baseline-s0)" in page and "for the most damaging window (blur-o0-l10-s0)" in page


def test_a_window_that_ends_before_its_baseline_gets_its_line_and_the_loss_once_the_baseline_is_in(tmp_path):
    """Tune may finish a window before its baseline (CI saw it): its line says no loss, never raises."""
    import io

    trials = grid(onsets=(0, 2), seeds=1)
    windows = [t for t in trials if not t.is_baseline]
    baselines = [t for t in trials if t.is_baseline]
    store = Store(str(tmp_path / "s"))
    out = io.StringIO()
    progress = Progress(store, trials, "h", out=out, flush_every=0)
    writer = SyntheticShards(store, epochs=64, layers=2)
    run(store, windows[:1] + baselines + windows[1:], writer, progress)
    progress.finish()
    lines = [ln for ln in out.getvalue().splitlines() if " final " in ln]
    assert len(lines) == len(trials)
    assert "pts lost vs baseline" not in lines[0] and windows[0].trial_id in lines[0]
    assert "pts lost vs baseline" in lines[-1] and windows[-1].trial_id in lines[-1]


def test_every_table_is_written_and_read_with_the_columns_records_declares(tmp_path):
    """The three tables' columns and types are declared once (records.py *_FIELDS): the files a folder
    holds carry exactly them, and a trials table of an older layout (round as float, reason all null, no
    plugins column: the committed run of the blur grid's twin) reads back with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from results_fixture import make_results, write_tables

    from cpsweep.storage.folder import ResultsFolder
    from cpsweep.storage.records import EPOCH_FIELDS, LAYER_FIELDS, TRIAL_FIELDS

    arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    write_tables(str(tmp_path / "hand"), make_results())
    folder = ResultsFolder(str(tmp_path / "hand"))
    for fields, path in ((TRIAL_FIELDS, "trials.parquet"),
                         (EPOCH_FIELDS, f"epochs.parquet/{folder.tables.parts['epochs'][0]}"),
                         (LAYER_FIELDS, f"fisher_layers.parquet/{folder.tables.parts['fisher_layers'][0]}")):
        schema = pq.read_schema(tmp_path / "hand" / path)
        assert [(f.name, f.type) for f in schema] == [(n, arrow[t]) for n, t in fields.items()], path
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    old = os.path.join(root, "docs", "reproduction", "data", "mini_blur_grid")
    assert "plugins" not in pq.read_schema(os.path.join(old, "trials.parquet")).names
    assert pq.read_schema(os.path.join(old, "trials.parquet")).field("reason").type == pa.float64()
    trials = ResultsFolder(old).trials()
    assert list(trials.columns) == list(TRIAL_FIELDS) and trials.plugins.isna().all()
    assert trials.reason.isna().all() and trials.onset.dtype == "int64"
    # the one int column that may be all null (a plain grid has no rounds) keeps its integers: Int64
    assert trials["round"].dtype == "Int64" and trials["round"].isna().all()
    assert ResultsFolder(os.path.join(root, "docs", "reproduction", "data", "mini_blur_boundary")
                         ).trials()["round"].dtype == "Int64"


@pytest.mark.parametrize("name, text, problem", [
    ("spec.yaml", "{{{ not yaml", "it cannot be parsed (while parsing a flow mapping)"),
    ("spec.yaml", "- a", "it holds a list, not a mapping"),
    ("spec.yaml", "spec: [1]", "it has spec: [1], not a mapping"),
    ("spec.yaml", "fixed: 3", "it has fixed: 3, not a mapping"),
    ("spec.yaml", "design: {seeds: 1}", "it has design: {'seeds': 1}, not a list"),
    ("search.json", '{"rounds": ', "it cannot be parsed (Expecting value: line 1 column 12 (char 11))"),
    ("search.json", "[1]", "it holds a list, not a mapping"),
])
def test_a_damaged_spec_or_search_file_is_one_error_naming_it(tmp_path, name, text, problem):
    store = Store(str(tmp_path))
    assert store.read_document(name) == {}  # missing: nothing recorded yet
    (tmp_path / name).write_text(text)
    with pytest.raises(StorageError) as info:
        store.read_document(name)
    assert str(info.value) == (f"{tmp_path / name} is damaged: {problem}; restore it from a copy, or start the "
                               f"sweep again under a new name or in an empty folder")
    (tmp_path / name).write_text("" if name.endswith("yaml") else "{}")
    assert store.read_document(name) == {}


def test_a_block_that_fails_leaves_no_folder_it_made(tmp_path):
    store = Store(str(tmp_path / "a" / "b" / "sweep"))
    with pytest.raises(RuntimeError), store.kept_only_if_used():
        store.check_writable()
        raise RuntimeError("refused")
    assert os.listdir(tmp_path) == []  # every folder the block made, removed
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep").write_text("x")
    with pytest.raises(RuntimeError), store.kept_only_if_used():
        store.check_writable()
        raise RuntimeError("refused")
    assert sorted(os.listdir(tmp_path / "a")) == ["keep"]  # an existing folder stays
    with store.kept_only_if_used():
        store.check_writable()
    assert os.path.isdir(store.root)  # kept when the block succeeds
    store.write_bytes(b"x", "spec.yaml")
    with pytest.raises(RuntimeError), store.kept_only_if_used():
        raise RuntimeError("refused")
    assert os.path.exists(store.path("spec.yaml"))  # a folder with results is never touched


def test_a_table_whose_files_were_deleted_is_named_missing(tmp_path):
    import shutil

    from results_fixture import make_results, write_tables

    write_tables(str(tmp_path), make_results())
    shutil.rmtree(tmp_path / "epochs.parquet")
    with pytest.raises(StorageError, match=rf"cannot read the epochs table \(epochs.parquet\) in {tmp_path}: missing: "
                                           f"{tmp_path}/epochs.parquet/part-"):
        load_results(str(tmp_path))


def test_a_damaged_shard_file_is_named_with_how_to_train_its_trial_again(tmp_path):
    from cpsweep.config.sweep_file import parse_sweep
    from cpsweep.storage.store import Store
    from tiny_specs import tiny_sweep

    trial = parse_sweep(tiny_sweep()).trials()[0]
    store = Store(str(tmp_path))
    store.write_shard(trial, [], "ok")
    (tmp_path / "shards" / trial.trial_id / "epochs.parquet").write_bytes(b"PAR1 cut short")
    with pytest.raises(StorageError, match=f"cannot read shards/{trial.trial_id}/epochs.parquet in {tmp_path}: .*; "
                                           f"delete shards/{trial.trial_id}/ and launch again: that trial is "
                                           "trained again"):
        store.read_shard(trial.trial_id)
