"""Trials trained as one vmapped model (`benchmarks/packed_run.py`) give their single runs' records within
floating-point tolerance."""

from __future__ import annotations

import pytest
import torch
from packed_run import PackedRun
from tiny_specs import UNIT, tiny_sweep
from trial_runs import image_data

from cpsweep.config.sharing import check_packable
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.engine.trial import train_trial

SWEEP = tiny_sweep(UNIT)


def close(single, packed, n_test):
    assert [r.trial_id for r in packed] == [r.trial_id for r in single]
    for a, b in zip(single, packed):
        assert (b.epoch, b.lr, b.deficit_active) == (a.epoch, a.lr, a.deficit_active)
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4, nan_ok=True)  # NaN at initialisation
        assert b.test_loss == pytest.approx(a.test_loss, rel=1e-4)
        assert abs(b.test_acc - a.test_acc) <= 2 / n_test  # an argmax may flip on a near-tie
        if a.fisher_layers:
            assert b.fisher_trace == pytest.approx(a.fisher_trace, rel=1e-2)
            assert b.fisher_layers == pytest.approx(a.fisher_layers, rel=1e-2, abs=1e-9)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_packed_members_match_their_single_runs():
    sweep = parse_sweep(SWEEP)
    trials = [sweep.make_trial(0, 0, 0), sweep.make_trial(1, 2, 0), sweep.make_trial(0, 0, 1),
              sweep.make_trial(2, 1, 1)]
    singles = [list(train_trial(t, "cpu")) for t in trials]
    run = PackedRun(trials, "cpu")
    epochs = list(run)
    assert len(epochs) == 5 and all(len(e) == 4 for e in epochs)  # initialisation, 4 epochs
    for i, single in enumerate(singles):
        close(single, [e[i] for e in epochs], len(run.members[0].data.y_test))
    # each member's own model holds its trained weights (for checkpoints and the Fisher)
    alone = train_trial(trials[3], "cpu")
    list(alone)
    for p, q in zip(alone.model.parameters(), run.members[3].model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_packed_images_with_augmentation_batchnorm_and_random_deficit():
    raw = {**SWEEP, "model": {"name": "all_cnn_c", "width": 0.05}, "data": {"name": "cifar10", "augment": True},
           "deficit": {"name": "noise"}, "epochs": 3}
    sweep = parse_sweep(raw)
    trials = [sweep.make_trial(0, 0, 0), sweep.make_trial(1, 1, 0), sweep.make_trial(1, 1, 1)]
    data = image_data()
    singles = [list(train_trial(t, "cpu", data=data)) for t in trials]
    epochs = list(PackedRun(trials, "cpu", data=data))
    for i, single in enumerate(singles):
        close(single, [e[i] for e in epochs], len(data.y_test))


def test_only_same_shape_trials_pack():
    sweep = parse_sweep(SWEEP)
    other = parse_sweep({**SWEEP, "model": {"name": "cnn1d", "channels": 16, "depth": 3}})
    with pytest.raises(ValueError, match="model differ"):
        check_packable([sweep.make_trial(0, 0, 0), other.make_trial(0, 0, 0)])
    restart = parse_sweep({**SWEEP, "schedule": {"name": "exponential", "restart_after_deficit": True}})
    with pytest.raises(ValueError, match="same learning rate"):
        check_packable([restart.make_trial(1, 2, 0), restart.make_trial(0, 0, 0)])
    check_packable([sweep.make_trial(1, 2, 0), sweep.make_trial(0, 0, 3)])  # seeds and windows may differ
