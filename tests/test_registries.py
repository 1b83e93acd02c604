"""Every built-in of the one registry works where it is used: each entry's builder imports and has the
options the entry declares, each data set loads through its real reader, each model builds for the
inputs it declares and trains, each deficit runs inside a real trial."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.datasets import CIFAR10

from tiny_data import tiny_cifar_sums, write_cifar10, write_mnist
from tiny_specs import UNIT, tiny_sweep

from cpsweep.config.plugins import CONTRACT
from cpsweep.config.registry import BUILTINS, INPUT_DIMS
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.engine import models
from cpsweep.engine.data import load_dataset, resolve_data_dir
from cpsweep.engine.trial import train_trial
from cpsweep.storage.records import trained
from cpsweep.errors import SpecError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Tiny CIFAR-10 and MNIST files in their real formats."""
    root = tmp_path_factory.mktemp("registry-data")
    write_cifar10(root)
    write_mnist(root)
    return root


@pytest.fixture(scope="module")
def loaded(data_dir):
    """Every registered data set, loaded by its reader (torchvision expecting the tiny files' sums;
    MNIST-1D generated once for the test session, in its data folder)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in tiny_cifar_sums(data_dir).items():
            mp.setattr(CIFAR10, name, value)
        return {name: load_dataset(name, data_dir=data_dir if name != "mnist1d" else resolve_data_dir(None))
                for name in DATASETS}


DATASETS = {name: e.data for name, e in BUILTINS["data"].items()}
MODEL_INPUT = {name: e.input for name, e in BUILTINS["model"].items()}


@pytest.mark.parametrize("kind", ["model", "deficit"])
def test_every_builtin_builder_takes_the_contract_and_the_declared_options(kind):
    """A built-in is registered as a plug-in is: its builder's signature is the contract's positional
    arguments, then exactly the options its entry declares, with the same defaults."""
    import inspect

    for name, e in BUILTINS[kind].items():
        contract = CONTRACT["training" if e.acts_on == "training" else kind]
        params = list(inspect.signature(e.load()).parameters.values())
        assert tuple(p.name for p in params[:len(contract)]) == contract, name
        assert {p.name: p.default for p in params[len(contract):]} == dict(e.options), name


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_data_set_loads_as_declared(name, loaded):
    info, data = DATASETS[name], loaded[name]
    assert data.x_train.dim() - 1 == INPUT_DIMS[info.kind][0]  # (N, C, H, W) or (N, C, L)
    assert data.num_classes == info.num_classes and int(data.y_train.max()) < info.num_classes
    assert data.augment == info.default_augment
    x = data.inputs(data.x_train[:4])
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


SMALL = {"all_cnn_c": {"width": 0.05}, "resnet18": {"width": 4}, "mlp": {"hidden": [16]}, "cnn1d": {"channels": 4}}


@pytest.mark.parametrize("model", list(MODEL_INPUT))
def test_every_model_builds_for_every_data_set_it_accepts(model, loaded):
    kinds = {MODEL_INPUT[model]} if MODEL_INPUT[model] in INPUT_DIMS else set(INPUT_DIMS)
    small = SMALL
    accepted = [n for n, info in DATASETS.items() if info.kind in kinds]
    assert accepted, f"{model} accepts no registered data set"
    for name in accepted:
        data = loaded[name]
        net = models.build_model(model, small[model], data.input_shape, data.num_classes, seed=0).eval()
        logits = net(data.inputs(data.x_train[:3]))
        assert logits.shape == (3, data.num_classes)
    for name in set(DATASETS) - set(accepted):  # and the spec refuses the others with one clear message
        raw = tiny_sweep(UNIT, model={"name": model, **small[model]}, data={"name": name})
        with pytest.raises(SpecError, match=f"model \"{model}\" needs"):
            parse_sweep(raw)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODEL_INPUT))
def test_every_model_trains_in_a_trial(model, loaded):
    """Two epochs of a real trial (blur window, BN refresh, Fisher per layer) on a data set it accepts."""
    data = next(n for n, info in DATASETS.items() if MODEL_INPUT[model] in (info.kind, "any"))
    raw = tiny_sweep(UNIT, epochs=2, model={"name": model, **SMALL[model]}, data={"name": data},
                     grid={"onset": [0], "length": [1]})
    records = list(train_trial(parse_sweep(raw).make_trial(0, 1, 0), "cpu", data=loaded[data]))
    assert [r.epoch for r in records] == [-1, 0, 1] and records[-1].fisher_layers  # -1: at initialisation
    records = trained(records)
    assert all(math.isfinite(v) for r in records for v in (r.train_loss, r.test_loss, r.fisher_trace))


@pytest.mark.slow
@pytest.mark.parametrize("deficit", [d for d in BUILTINS["deficit"] if d != "none"])
@pytest.mark.parametrize("data", ["mnist1d", "cifar10"])
def test_every_deficit_runs_in_a_trial(deficit, data, loaded):
    """One epoch with the deficit on, through the real training loop, on signals and on images."""
    if deficit == "no_augment" and data == "mnist1d":
        pytest.skip("MNIST-1D has no augmentation to turn off (the spec refuses it)")
    model = {"name": "cnn1d", "channels": 4, "depth": 2} if data == "mnist1d" else {"name": "all_cnn_c", "width": 0.05}
    raw = tiny_sweep(UNIT, epochs=2, deficit=deficit, model=model, data={"name": data},
                     grid={"onset": [0], "length": [1]})
    trial = parse_sweep(raw).make_trial(0, 1, 0)
    records = trained(list(train_trial(trial, "cpu", data=loaded[data])))
    assert [r.deficit_active for r in records] == [True, False]
    assert all(torch.isfinite(torch.tensor([r.train_loss, r.test_loss, r.fisher_trace])).all() for r in records)
