"""The Ray layer: where a sweep runs. It adapts the engine to Ray Tune and is the only package that
imports ray.

Owns: `launch.py` (a launch from spec to report), `task.py` (the typed `TrialTask` the driver hands each
Tune trial), `trainable.py` (the function trainable), `searcher.py` (the Tune searcher that orders
trials by shared prefixes), `progress.py` (the status board and its Tune callback), `live.py` (epochs
done, ETA, live.json), `checkpoints.py` (trial and prefix checkpoints in storage), `trackers.py` (W&B,
MLflow), `_cluster.py` (connecting and the checks that fail fast).

May import anything in cpsweep; ray itself only here (`tests/test_layers.py`), and Ray's private modules
only where a comment says why no public API exists.
"""
