"""The registries' names and options, declared once for the whole tool (no torch).

Spec validation reads these tables without importing torch; the engine pairs each name with its builder
(`engine.models.BUILDERS`, `engine.deficits.BUILDERS`, `engine._readers.READERS`) and a test ties the two
sides together: every name here builds, runs or loads there, and nothing is registered there alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ._parse import check_name, parse_options, unknown_name

__all__ = ["DATASETS", "DEFICIT_OPTIONS", "MODEL_INPUT", "MODEL_OPTIONS", "DataSetInfo", "deficit_options",
           "model_options", "unknown_name"]

# Options of every model, with defaults (the type of the default is the option's type).
MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    # The paper's All-CNN: 9 conv-BN-ReLU blocks (96, 96, 192/2, 192, 192, 192/2, 192, 192 1x1, 10 1x1),
    # global average pooling. final_bn_relu: BN+ReLU after the last 1x1 conv too; valid_block7: block 7
    # unpadded ("valid") as in Springenberg et al.'s All-CNN-C. Both unknown in the paper: off by default.
    "all_cnn_c": {"width": 1.0, "final_bn_relu": False, "valid_block7": False},
    # CIFAR pre-activation ResNet-18: 3x3 stem, no max-pool, stages width x (1, 2, 4, 8).
    "resnet18": {"width": 64},
    # Fully connected net (the paper's MNIST net: 1024-2500-2000-1500-1000-500-10, BN + ReLU).
    "mlp": {"hidden": (2500, 2000, 1500, 1000, 500), "bn": True},
    # Small 1-D conv net for MNIST-1D: `depth` conv-BN-ReLU blocks of `channels`, stride 2 every other block.
    "cnn1d": {"channels": 32, "depth": 5, "kernel": 5},
}
# Options added after results folders existed: accepted and typed like the others, but left out of a
# model's completed options while they hold their default, so the sweeps that never name them keep their
# hashes. cnn1d bias: a bias in every conv layer (the robustness twins vary it).
LATER_MODEL_OPTIONS: dict[str, dict[str, Any]] = {"cnn1d": {"bias": False}}
# Which inputs a model accepts: "image" (N, C, H, W), "signal" (N, 1, L) or "any" (flattened).
MODEL_INPUT: dict[str, str] = {"all_cnn_c": "image", "resnet18": "image", "mlp": "any", "cnn1d": "signal"}
# Each input kind's dimensions without the batch, and its name in messages.
INPUT_DIMS: dict[str, tuple[int, str]] = {"image": (3, "image inputs (C, H, W)"),
                                          "signal": (2, "1-D signals (C, L)")}

DEFICIT_OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    # Downsample by `factor` (antialiased bilinear for images, average pooling for 1-D signals), then
    # upsample back to the original size (bilinear / linear): the paper's 32 -> 8 -> 32 is factor 4.
    "blur": {"factor": 4},
    # Every training input upside down (images: rows reversed; 1-D signals: reversed along the length).
    "vflip": {},
    # A fixed permutation of the class names (a high-level deficit), drawn from the trial's seed.
    "label_permutation": {},
    # Labels shuffled across training examples (random labels, fixed for the trial).
    "label_shuffle": {},
    # Inputs replaced by i.i.d. Gaussian noise with this std in normalised units (the data are
    # normalised to unit variance), fresh every batch; augmentation is off while it is active.
    "noise": {"std": 1.0},
}


@dataclass(frozen=True)
class DataSetInfo:
    """What a spec needs to know of a data set (reading its files is `engine.data`'s business)."""
    kind: str               # "image" (N, C, H, W) or "signal" (N, 1, L)
    num_classes: int
    default_augment: bool   # whether the paper's crop + flip applies unless `data.augment` says otherwise


DATASETS: dict[str, DataSetInfo] = {
    "cifar10": DataSetInfo("image", 10, default_augment=True),
    "mnist": DataSetInfo("image", 10, default_augment=False),
    "mnist1d": DataSetInfo("signal", 10, default_augment=False),
}


def model_options(name: Any, options: Mapping[str, Any], path: str = "model") -> dict[str, Any]:
    """A model's options checked and completed with their defaults (`SpecError` naming the field)."""
    check_name(name, MODEL_OPTIONS, f"{path}.name", "model")
    later = LATER_MODEL_OPTIONS.get(name, {})
    out = parse_options(dict(options), {**MODEL_OPTIONS[name], **later}, path)
    return {k: v for k, v in out.items() if k not in later or v != later[k]}


def deficit_options(name: Any, options: Mapping[str, Any], path: str = "deficit") -> dict[str, Any]:
    """A deficit's options checked and completed with their defaults (`SpecError` naming the field)."""
    check_name(name, DEFICIT_OPTIONS, f"{path}.name", "deficit")
    return parse_options(dict(options), DEFICIT_OPTIONS[name], path)
