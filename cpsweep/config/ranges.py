"""The ranges of a sweep file's numbers, declared once: the parser checks them (`sweep_file._check_ranges`,
the resources) and `schema.py` publishes the same bounds (no torch, no ray)."""

from __future__ import annotations

from ._parse import Range

# The fixed settings' numbers, the built-in deficits' and models' options (checked when that component is the
# sweep's) and a trial's resources (gpu: also a fraction below 1 or a whole number, `sweep_file`).
RANGES = {"optim.lr": Range(0, None, "must be > 0", open_low=True),
          "optim.momentum": Range(0, 1, "must be in [0, 1)", open_high=True),
          "optim.beta1": Range(0, 1, "must be in [0, 1) (Adam's decay of the mean)", open_high=True),
          "optim.beta2": Range(0, 1, "must be in [0, 1) (Adam's decay of the squared gradients)", open_high=True),
          "optim.weight_decay": Range(0, None, "must be >= 0"),
          "optim.batch_size": Range(1, None, "must be >= 1"),
          "schedule.gamma": Range(0, 1, "must be in (0, 1]", open_low=True),
          "schedule.step_size": Range(1, None, "must be >= 1"),
          "fisher.every": Range(0, None, "must be >= 0 (0 turns the Fisher off)"),
          "fisher.probe_per_class": Range(1, None, "must be >= 1"),
          "fisher.samples": Range(1, None, "must be >= 1"),
          "fisher.beta": Range(0, 1e-6, "must be in (0, 1e-6]: larger noise leaves the loss's quadratic region; the "
                               "default 1e-24 suits any net (the estimate does not depend on beta there)",
                               open_low=True),
          "fisher.steps": Range(1, None, "must be >= 1 (Adam steps of method: variational; default 300)"),
          "bn_refresh": Range(-1, None, "must be -1 (full pass), 0 (off) or a number of batches"),
          "checkpoint_every": Range(1, None, "must be >= 1"),
          "data.subset": Range(1, None, "must be >= 1 or null")}
DEFICIT_RANGES = {("blur", "factor"): Range(2, None, "must be >= 2"),
                  ("noise", "std"): Range(0, None, "must be > 0", open_low=True),
                  ("label_noise", "fraction"): Range(0, 1, "must be in (0, 1]", open_low=True),
                  ("weight_decay", "scale"): Range(0, None, "must be >= 0"),
                  ("lr_scale", "scale"): Range(0, None, "must be > 0", open_low=True),
                  ("batch_size", "size"): Range(2, None, "must be >= 2 (BatchNorm trains on batches of at least 2)")}
MODEL_RANGES = {("all_cnn_c", "width"): Range(0, None, "must be > 0 (a multiple of the paper's widths)", open_low=True),
                ("resnet18", "width"): Range(1, None, "must be >= 1 (channels of the first stage)"),
                ("cnn1d", "channels"): Range(1, None, "must be >= 1"),
                ("cnn1d", "depth"): Range(1, None, "must be >= 1 (conv blocks)"),
                ("cnn1d", "kernel"): Range(1, None, "must be >= 1"),
                ("mlp", "hidden"): Range(1, None, "every width must be >= 1", each=True)}
# (gpu: also a fraction below 1 or a whole number, checked beside this range)
RESOURCE_RANGES = {"cpu": Range(0, None, "must be > 0 (CPUs per trial)", open_low=True),
                   "gpu": Range(0, None, "must be 0, a fraction below 1 (trials sharing a GPU) or a whole number")}
