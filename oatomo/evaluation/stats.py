"""Paired tests, standard errors and bootstrap intervals (thin calls to :mod:`scipy.stats`).

* :func:`standard_error` -- :func:`scipy.stats.sem`;
* :func:`paired_t_test` -- :func:`scipy.stats.ttest_rel`;
* :func:`wilcoxon_test` -- :func:`scipy.stats.wilcoxon` of the paired differences;
* :func:`bootstrap_ci` / :func:`paired_bootstrap` -- :func:`scipy.stats.bootstrap`
  (percentile method) over index arrays, so that a statistic of any data (per-image
  errors of several seeds, two models at once) can be resampled.

Everything random comes from ``numpy.random.default_rng(seed)``: the same seed gives the
same intervals, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from oatomo.errors import InputError

__all__ = ["standard_error", "paired_t_test", "wilcoxon_test", "bootstrap_ci",
           "paired_bootstrap"]


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean, ``std(ddof=1) / sqrt(n)``: ``scipy.stats.sem(values)``
    of the flattened values; NaN for fewer than 2 values."""
    v = np.asarray(values, np.float64).ravel()
    if v.size < 2:
        return float("nan")
    return float(sps.sem(v))


def paired_t_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
                  ) -> tuple[float, float]:
    """Two-sided paired t-test of ``mean(a - b) = 0``: ``(t, p)``.

    ``scipy.stats.ttest_rel(a, b)`` (same argument order) of the flattened values. All
    differences equal: ``t = ±inf, p = 0`` if they are not zero, ``t = 0, p = 1`` if they
    are (SciPy would warn and give NaN). Fewer than 2 pairs: NaN.
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    d = a - b
    if d.size < 2:
        return float("nan"), float("nan")
    if np.all(d == d[0]):
        mean = float(d[0])
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    res = sps.ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def wilcoxon_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank test of the paired differences ``a - b``: the p-value
    (``scipy.stats.wilcoxon(a - b)``, zero differences dropped); 1.0 if all differences
    are 0."""
    d = np.asarray(a, np.float64).ravel() - np.asarray(b, np.float64).ravel()
    if not np.any(d):
        return 1.0
    return float(sps.wilcoxon(d).pvalue)


def _p_two_sided(diffs: np.ndarray) -> float:
    n = diffs.size
    p = 2.0 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    return float(min(1.0, max(p, 1.0 / n)))


def _indices(n: int, m: int | None) -> tuple[np.ndarray, ...]:
    return (np.arange(n),) if m is None else (np.arange(n), np.arange(m))


def _bootstrap(statistic: Callable[..., float], n: int, m: int | None, n_boot: int,
               level: float, seed: int) -> dict[str, Any]:
    """``scipy.stats.bootstrap`` (percentile) of ``statistic`` over index arrays."""
    if n < 2 or (m is not None and m < 2) or n_boot < 2 or not 0.0 < level < 1.0:
        raise InputError(f"bootstrap needs n >= 2, m >= 2, n_boot >= 2, 0 < level < 1; got "
                         f"{n}, {m}, {n_boot}, {level}")
    res = sps.bootstrap(_indices(n, m), statistic, n_resamples=n_boot, vectorized=False,
                        confidence_level=level, method="percentile",
                        random_state=np.random.default_rng(seed))
    reps = res.bootstrap_distribution
    return {"estimate": float(statistic(*_indices(n, m))),
            "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high),
            "se": float(res.standard_error), "reps": reps}


def bootstrap_ci(statistic: Callable[..., float], n: int, *, m: int | None = None,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` items.

    ``scipy.stats.bootstrap((arange(n),), statistic, n_resamples=n_boot,
    vectorized=False, confidence_level=level, method="percentile",
    random_state=default_rng(seed))``: each replicate draws ``n`` indices with
    replacement.

    Parameters
    ----------
    statistic
        Called with an int array of ``n`` indices drawn with replacement (and once with
        ``arange(n)`` for the estimate).
    n
        Number of items (test images), at least 2.
    m
        Size of a second, independent sample (generated images): ``statistic`` is then
        called with two index arrays, drawn independently (SciPy's unpaired bootstrap of
        two samples).
    n_boot, level, seed
        Replicates, interval level, seed of ``numpy.random.default_rng``.

    Returns
    -------
    dict
        ``estimate``, ``low``, ``high`` (percentile interval) and ``se`` (std of the
        replicates, ``ddof=1``).
    """
    out = _bootstrap(statistic, n, m, n_boot, level, seed)
    del out["reps"]
    return out


def paired_bootstrap(stat_a: Callable[..., float], stat_b: Callable[..., float], n: int, *,
                     m: int | None = None, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of ``stat_a - stat_b``: the same index draw(s) for both (``n``,
    ``m`` as in :func:`bootstrap_ci`, of which this is the bootstrap of the difference).

    Returns :func:`bootstrap_ci`'s dict for the difference plus ``p``, the two-sided
    bootstrap p-value ``2 * min(P(d <= 0), P(d >= 0))`` (at least ``1 / n_boot``).
    """
    out = _bootstrap(lambda *idx: stat_a(*idx) - stat_b(*idx), n, m, n_boot, level, seed)
    out["p"] = _p_two_sided(out.pop("reps"))
    return out
