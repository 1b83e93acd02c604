"""Results: what the trials produced, and what it shows. The record and row types, the Parquet tables on
a local folder or any pyarrow file system, the reducers behind every figure, the HTML report, and the
checks of the paper's claims.

Owns: `records.py` (EpochRecord, the tables' columns, trial rows: shared with the engine and the progress
board; no pandas), `store.py` (atomic Parquet tables, shards, `load_results`), `reduce.py` (DataFrame in,
DataFrame out), `report.py` (Plotly figures, one standalone HTML page), `stats.py` (paired t-intervals,
equivalence tests), `checks.py` (the verdicts and the paired views the checks share), `claims.py` and
`fisher_claims.py` (the reproduction checks).

May import: `cpsweep.errors`, `cpsweep._io`, `cpsweep.config`, pandas, pyarrow, plotly; never torch or ray
(`tests/test_layers.py`), so results can be read and reported on a machine without them.
"""
