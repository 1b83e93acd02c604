"""The training engine: how one trial trains. Data sets on the device, deficits, models, the Fisher
trace, and the epoch loop that yields one record per epoch, checkpointed and resumed exactly.

Owns: `data.py` (data sets as tensors on the device; `load_data(spec, device)` is the one entry point),
`_readers.py` (the files of CIFAR-10, MNIST and MNIST-1D), `sampling.py` (seeded order, augmentation,
balanced selections), `deficits.py`, `models.py`, `fisher.py` (+ `_fisher_gram.py`), `trial.py`
(`TrialRun`, `train_trial`), `checkpoint.py` (training state on disk, `weights_only` loading),
`packed.py` (several trials as one vmapped model).

May import: `cpsweep.errors`, `cpsweep._io`, `cpsweep.config`, `cpsweep.results.records`, torch and
torchvision; never ray (`tests/test_layers.py`): the Ray layer adapts the engine, not the other way round.
"""
