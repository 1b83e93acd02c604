"""The Ray layer: where a sweep runs. It launches a sweep on Ray Tune (a local Ray or a cluster), hands
each trial to the engine, gives Tune the trials in the order shared prefixes allow, keeps the trials' and
the shared prefixes' checkpoints in the results' storage, shows progress, logs to trackers and runs the
rounds of an adaptive search; it is the only package that imports ray. Each module says what it owns;
docs/layout.md maps them.

May import anything in cpsweep; ray itself only here (`tests/test_layers.py`), and Ray's private modules
only where a comment says why no public API exists.
"""
