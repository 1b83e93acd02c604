"""Results: what the trials' tables show. The reducers behind every figure, the statistics (and the seeds a
design needs for them), the HTML report and its faceted figures, the checks of the paper's claims and where
a critical period ends; it reads results folders through `cpsweep.storage`. Each module says what it owns;
docs/layout.md maps them.

May import: `cpsweep.errors`, `cpsweep._io`, `cpsweep.config`, `cpsweep.storage`, pandas, pyarrow,
plotly; never torch or ray (`tests/test_layers.py`), so results can be read and reported on a machine
without them.
"""
