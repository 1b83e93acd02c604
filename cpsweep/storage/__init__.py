"""Storage: what a trial produced, on disk. The record and row types the engine writes (`records.py`), a
results folder's files and per-trial shards on a local path or any pyarrow file system (`store.py`), its
top-level Parquet tables kept at the same cost per trial at any scale (`tables.py`), and the one interface
that reads a folder back (`folder.py`: `ResultsFolder`, `load_results`). Below the engine, the sweep and the
analysis (`cpsweep.results`), which all read and write through it.

May import: `cpsweep.errors`, `cpsweep._io`, `cpsweep.config`, pandas, pyarrow; never torch, ray or plotly
(`tests/test_layers.py`).
"""
