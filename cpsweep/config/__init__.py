"""Configuration: what to run, all decided before any training. Sweep files (YAML, validation with
did-you-mean errors, grid expansion, the adaptive `search:` section, smoke and full-grid variants), the
typed trial spec (each field declares its role, from which the sweep hash, prefix keys, packing and
checkpoint identity derive), the one registry of components with their options (built-ins and a user's
plug-ins alike), what a trial does at each epoch, and which trials share training prefixes. Each module
says what it owns; docs/layout.md maps them.

May import: `cpsweep.errors`, the standard library and PyYAML; never torch, ray, pandas or pyarrow
(`tests/test_layers.py`), so a spec can be checked on a machine without them.
"""
