"""Configuration: what to run. Sweep files, trial specs, the registries' names and options, and what a
trial does at each epoch, all decided before any training.

Owns: `spec.py` (the typed trial spec; each field's role, from which the sweep hash, prefix keys, packing
and checkpoint identity derive), `sweep_file.py` (YAML loading, validation with did-you-mean errors,
grid expansion, the smoke variant), `epoch_rule.py` (`epochs` / `clean_after` / `common_end`: how long
each trial trains), `registry.py` (model, deficit and data-set names and options), `timeline.py`
(learning rate, deficit and Fisher per epoch), `sharing.py` (shared training prefixes, packs),
`_parse.py` (strict typed parsing, plumbing).

May import: `cpsweep.errors`, the standard library and PyYAML; never torch, ray, pandas or pyarrow
(`tests/test_layers.py`), so a spec can be checked on a machine without them.
"""
