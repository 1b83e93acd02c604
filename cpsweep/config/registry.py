"""One registry of components: models, deficits, data sets and metrics, declared once (no torch).

Each component is an `Entry`: its kind, its name, its options with their defaults (the type of a default
is the option's type) and a builder `"module:function"` that is imported only when a trial builds it, so
validating a sweep never imports torch. The built-ins below are entries like any user's plug-in
(`plugins.py` makes an entry from a reference `package.module:function` or an installed entry point),
and `entry(kind, name)` finds either: a built-in by name, else a plug-in. Adding a built-in is one line
here plus its function; the contracts the builders follow are in docs/plugins.md.

| kind    | builder signature                                                   | returns                |
|---------|---------------------------------------------------------------------|------------------------|
| model   | `fn(in_shape, num_classes, **options)`                              | an `nn.Module`         |
| deficit | `fn(x, y, ctx, **options)` during the window (`engine.deficits`)    | `(x, y)`               |
|         | or, on a training setting, `fn(settings, **options)` (`engine.windows`) | nothing (changes it) |
| data    | built-ins: a `Reader` (`engine._readers`); a plug-in: `fn(data_dir, **options)` | 4 tensors  |
| metric  | `fn(model, data, ctx, **options)` at each Fisher epoch              | a number               |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import SpecError
from ._parse import REQUIRED, check_keys, coerce, option_type, unknown_name
from .plugins import GROUPS, entry_point, import_reference, plugin_fields

__all__ = ["BUILTINS", "INPUT_DIMS", "KINDS", "DataSetInfo", "Entry", "entry", "options_of", "unknown_name"]

KINDS = ("model", "deficit", "data", "metric")
# Each input kind's dimensions without the batch, and its name in messages.
INPUT_DIMS: dict[str, tuple[int, str]] = {"image": (3, "image inputs (C, H, W)"),
                                          "signal": (2, "1-D signals (C, L)")}


@dataclass(frozen=True)
class DataSetInfo:
    """What a spec needs to know of a data set (reading its files is `engine.data`'s business)."""
    kind: str               # "image" (N, C, H, W) or "signal" (N, 1, L)
    num_classes: int
    default_augment: bool   # whether the paper's crop + flip applies unless `data.augment` says otherwise
    shape: tuple[int, ...] = ()  # one input without the batch, e.g. (3, 32, 32)


@dataclass(frozen=True)
class Entry:
    """One component: what a sweep file may set, and where its builder lives."""
    kind: str                           # one of KINDS
    name: str                           # its name in a sweep file (a plug-in: its reference)
    builder: str                        # "module:attribute", imported when a trial builds it
    options: Mapping[str, Any] = field(default_factory=dict)  # option -> default (REQUIRED: none)
    types: Mapping[str, Any] = field(default_factory=dict)    # option -> type, where not the default's
    later: Mapping[str, Any] = field(default_factory=dict)    # options left out at their default (hashes)
    input: str = "any"                  # models: "image", "signal" or "any" (flattened)
    data: DataSetInfo | None = None     # data sets
    disables_augment: bool = False      # deficits: augmentation off while the window is on
    acts_on: str = "batch"              # deficits: "batch" (fn(x, y, ctx)) or "training" (fn(settings))
    plugin: str = ""                    # a plug-in's identity: "<reference>@<source hash or version>"

    def load(self) -> Callable[..., Any]:
        """The builder, imported now."""
        return import_reference(self.builder, f"{self.kind}.name", need_callable=self.kind != "data",
                                plugin=bool(self.plugin))

    def complete(self, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        """`options` checked against this entry (unknown, missing or mistyped ones: `SpecError` naming
        the field) and completed with the defaults; options in `later` are left out at their default."""
        check_keys(options, self.options, path)
        missing = [k for k, d in self.options.items() if d is REQUIRED and k not in options]
        if missing:
            raise SpecError(f"{path}.{missing[0]}", f'required by {self.name} (no default in its signature); '
                                                    f"set {', '.join(missing)}")
        out = {k: d for k, d in self.options.items() if d is not REQUIRED}
        out.update({k: coerce(v, self.type_of(k), f"{path}.{k}") for k, v in options.items()})
        return {k: v for k, v in out.items() if k not in self.later or v != self.later[k]}

    def type_of(self, option: str) -> Any:
        """The type `option`'s value is checked against: a plug-in's from its signature (`types`), a
        built-in's its default's (`_parse.option_type`)."""
        return self.types.get(option, Any) if self.types else option_type(self.options[option])


def _builtin(kind: str, name: str, builder: str, options: Mapping[str, Any] | None = None, **kw: Any) -> Entry:
    return Entry(kind, name, builder, dict(options or {}), **kw)


_M, _D, _R, _W = "cpsweep.engine.models", "cpsweep.engine.deficits", "cpsweep.engine._readers", "cpsweep.engine.windows"
BUILTINS: dict[str, dict[str, Entry]] = {kind: {e.name: e for e in entries} for kind, entries in {
    "model": [
        # The paper's All-CNN: 9 conv-BN-ReLU blocks (96, 96, 192/2, 192, 192, 192/2, 192, 192 1x1, 10 1x1),
        # global average pooling. final_bn_relu: BN+ReLU after the last 1x1 conv too; valid_block7: block 7
        # unpadded ("valid") as in Springenberg et al.'s All-CNN-C. Both unknown in the paper: off by default.
        _builtin("model", "all_cnn_c", f"{_M}:all_cnn_c",
                 {"width": 1.0, "final_bn_relu": False, "valid_block7": False}, input="image"),
        # CIFAR pre-activation ResNet-18: 3x3 stem, no max-pool, stages width x (1, 2, 4, 8).
        _builtin("model", "resnet18", f"{_M}:resnet18", {"width": 64}, input="image"),
        # Fully connected net (the paper's MNIST net: 1024-2500-2000-1500-1000-500-10, BN + ReLU).
        _builtin("model", "mlp", f"{_M}:mlp", {"hidden": (2500, 2000, 1500, 1000, 500), "bn": True}),
        # Small 1-D conv net for MNIST-1D: `depth` conv-BN-ReLU blocks of `channels`, stride 2 every other
        # block. bias (added after results folders existed, so left out at its default: old hashes hold):
        # a bias in every conv layer (the robustness twins vary it).
        _builtin("model", "cnn1d", f"{_M}:cnn1d", {"channels": 32, "depth": 5, "kernel": 5, "bias": False},
                 later={"bias": False}, input="signal"),
    ],
    "deficit": [
        _builtin("deficit", "none", f"{_D}:no_deficit"),
        # Downsample by `factor` (antialiased bilinear for images, average pooling for 1-D signals), then
        # upsample back to the original size (bilinear / linear): the paper's 32 -> 8 -> 32 is factor 4.
        _builtin("deficit", "blur", f"{_D}:blur_deficit", {"factor": 4}),
        # Every training input upside down (images: rows reversed; 1-D signals: reversed along the length).
        _builtin("deficit", "vflip", f"{_D}:vflip_deficit"),
        # A fixed permutation of the class names (a high-level deficit), drawn from the trial's seed.
        _builtin("deficit", "label_permutation", f"{_D}:label_permutation"),
        # Labels shuffled across training examples (random labels, fixed for the trial).
        _builtin("deficit", "label_shuffle", f"{_D}:label_shuffle"),
        # Inputs replaced by i.i.d. Gaussian noise with this std in normalised units (the data are
        # normalised to unit variance), fresh every batch; augmentation is off while it is active.
        _builtin("deficit", "noise", f"{_D}:noise", {"std": 1.0}, disables_augment=True),
        # A fixed random `fraction` of the training examples get a uniformly drawn label (from the seed).
        _builtin("deficit", "label_noise", f"{_D}:label_noise", {"fraction": 0.2}),
        # Windows on a training setting (`engine/windows.py`): weight decay times `scale`, augmentation
        # off, learning rate times `scale`, another batch size.
        _builtin("deficit", "weight_decay", f"{_W}:weight_decay", {"scale": 0.0}, acts_on="training"),
        _builtin("deficit", "no_augment", f"{_W}:no_augment", acts_on="training"),
        _builtin("deficit", "lr_scale", f"{_W}:lr_scale", {"scale": 0.1}, acts_on="training"),
        _builtin("deficit", "batch_size", f"{_W}:batch_size", {"size": 32}, acts_on="training"),
    ],
    "data": [
        _builtin("data", "cifar10", f"{_R}:CIFAR10", data=DataSetInfo("image", 10, True, (3, 32, 32))),
        _builtin("data", "mnist", f"{_R}:MNIST", data=DataSetInfo("image", 10, False, (1, 32, 32))),
        _builtin("data", "mnist1d", f"{_R}:MNIST1D", data=DataSetInfo("signal", 10, False, (1, 40))),
    ],
    "metric": [],
}.items()}
WHAT = {"model": "model", "deficit": "deficit", "data": "data set", "metric": "metric"}


def entry(kind: str, name: Any, path: str | None = None) -> Entry:
    """The entry `name` of `kind`: a built-in, else a plug-in (a reference `package.module:function`, or
    a name an installed package registers under the entry-point group `cpsweep.<kind>s`).

    Raises:
        SpecError: naming `path` (default `<kind>.name`): an unknown name, a module that does not import,
            an attribute that does not exist or is not callable.
    """
    path = path or f"{kind}.name"
    table = BUILTINS[kind]
    if isinstance(name, str) and name in table:
        other = entry_point(kind, name)
        if other is not None and other != table[name].builder:  # (the built-in would run, silently)
            raise SpecError(path, f'"{name}" is a built-in {WHAT[kind]}, and an installed package registers '
                                  f'"{name}" too ({other}, entry-point group {GROUPS[kind]}), so which one runs is '
                                  f"ambiguous; rename that package's entry point (until then, name its function "
                                  f'by its reference "{other}")')
        return table[name]
    if not isinstance(name, str) or not name:
        raise SpecError(path, unknown_name(name, table, WHAT[kind]) + _own(kind))
    return Entry(**plugin_fields(kind, name, path, lambda: unknown_name(name, table, WHAT[kind]) + _own(kind)))


def _own(kind: str) -> str:
    return ', or your own as "package.module:function" (docs/plugins.md)'


def options_of(kind: str, name: Any, options: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A component's options checked and completed with their defaults (`SpecError` naming the field)."""
    return entry(kind, name, f"{path}.name").complete(options, path)
