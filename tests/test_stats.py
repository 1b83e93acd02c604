"""The verdicts' statistics against independent references: a t table, the one-sided t-tests that TOST
is made of, and the coverage of the interval in simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from cpsweep.results import stats as S

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262}  # a printed t table (two-sided 95 %)


@pytest.mark.parametrize("dof", sorted(T_975))
def test_interval_is_mean_plus_minus_t_times_the_standard_error(dof):
    x = np.arange(dof + 1, dtype=float) ** 1.5
    est = S.interval(x)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert est.mean == pytest.approx(x.mean()) and est.n == dof + 1
    assert est.high - est.mean == pytest.approx(T_975[dof] * se, rel=1e-3)
    assert est.mean - est.low == pytest.approx(T_975[dof] * se, rel=1e-3)


def test_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws = rng.normal(1.5, 2.0, size=(5000, 3))  # three seeds, as the sweeps
    covered = [est.low < 1.5 < est.high for est in map(S.interval, draws)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.015)  # 4.9 standard errors of the simulation


def test_one_seed_or_none_decides_nothing():
    assert math.isnan(S.interval([2.0]).low) and S.interval([2.0]).n == 1 and not S.interval([2.0]).excludes_zero
    assert S.interval([]).n == 0 and str(S.interval([])) == "no data"
    assert S.interval([1.0, None, 3.0]).n == 2  # missing values are dropped, not zeros


def test_equivalence_is_two_one_sided_t_tests():
    rng = np.random.default_rng(1)
    for _ in range(300):
        x = rng.normal(rng.uniform(-0.8, 0.8), rng.uniform(0.05, 0.6), size=int(rng.integers(3, 8)))
        lower = st.ttest_1samp(x, -S.MARGIN, alternative="greater").pvalue  # H0: mean <= -margin
        upper = st.ttest_1samp(x, S.MARGIN, alternative="less").pvalue     # H0: mean >= +margin
        tost = lower < S.ALPHA_TOST and upper < S.ALPHA_TOST
        assert S.equivalent(x)[0] == tost


def test_paired_differences_align_seeds():
    a = pd.Series({0: 3.0, 1: 2.0, 2: 5.0, 3: np.nan})
    b = pd.Series({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})
    assert S.paired(a, b).to_dict() == {1: 1.0, 2: 4.0}


@pytest.mark.parametrize("values, verdict", [
    ([3.0, 3.4, 2.6], "reproduced"),                 # clearly above zero
    ([-3.0, -3.4, -2.6], "not reproduced"),          # clearly the other way
    ([0.05, -0.05, 0.0, 0.02], "not reproduced"),    # shown to be no effect (within +-0.5)
    ([4.0, -1.0, 2.0], "not shown"),                 # too noisy either way
    ([3.0, 3.2], "not shown"),                       # two seeds are not enough
])
def test_effect_verdicts(values, verdict):
    got, reason = S.effect_verdict(values)
    assert got == verdict and reason
    if verdict == "not shown" and len(values) < S.MIN_SEEDS:
        assert reason == "not shown: 2 paired seeds, at least 3 needed"


@pytest.mark.parametrize("values, verdict", [
    ([0.1, 0.0, 0.2, 0.1], "reproduced"),            # within +-0.5 by both one-sided tests
    ([0.63, 0.56, 0.70], "not reproduced"),          # a small lasting loss, clearly above zero
    ([0.4, -0.3, 0.9], "not shown"),                 # neither
    ([0.0, 0.0], "not shown"),                       # two seeds
])
def test_no_effect_verdicts(values, verdict):
    assert S.no_effect_verdict(values)[0] == verdict
