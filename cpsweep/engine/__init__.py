"""The training engine: how one trial trains. Data sets on the device, deficits and windows on training
settings, models, a user's metrics, the Fisher trace, and the epoch loop that yields one record per
epoch, with the trial's training state saved and restored exactly. Each module says what it owns;
docs/layout.md maps them.

May import: `cpsweep.errors`, `cpsweep._io`, `cpsweep.config`, `cpsweep.storage.records`, torch and
torchvision; never ray (`tests/test_layers.py`): the Ray layer adapts the engine, not the other way round.
"""
