"""Results: what the trials produced, and what it shows. The record and row types (shared with the engine
and the progress board), the Parquet tables on a local folder or any pyarrow file system, the reducers
behind every figure, the statistics, the HTML report, the checks of the paper's claims and where a
critical period ends. Each module says what it owns; docs/layout.md maps them.

May import: `cpsweep.errors`, `cpsweep._io`, `cpsweep.config`, pandas, pyarrow, plotly; never torch or ray
(`tests/test_layers.py`), so results can be read and reported on a machine without them.
"""
