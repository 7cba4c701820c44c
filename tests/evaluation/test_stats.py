"""oatomo.evaluation.stats against scipy.stats, stored values and closed forms; the Colored
MNIST uncertainties and the statements they make (oatomo.validation.cmnist.stats)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from oatomo import InputError, stats
from oatomo.validation.cmnist import stats as cmnist_stats
from oatomo.validation.cmnist.metrics import class_histogram, histogram_kl


def test_standard_error_matches_scipy():
    x = np.random.default_rng(1).normal(3.0, 2.0, 17)
    assert stats.standard_error(x) == pytest.approx(sps.sem(x), rel=1e-12)
    assert math.isnan(stats.standard_error([1.0]))


def test_paired_t_test_matches_scipy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=9)
    b = a + rng.normal(0.3, 0.5, 9)
    t, p = stats.paired_t_test(a, b)
    ref = sps.ttest_rel(a, b)
    assert t == pytest.approx(ref.statistic, rel=1e-10)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)
    assert stats.paired_t_test([1, 2], [0, 1]) == (math.inf, 0.0)  # constant difference
    assert stats.paired_t_test([1, 2], [1, 2]) == (0.0, 1.0)
    assert all(math.isnan(v) for v in stats.paired_t_test([1.0], [2.0]))


def test_bootstraps_are_scipy_bootstrap():
    x = np.random.default_rng(4).exponential(1.0, 40)
    y = x + np.random.default_rng(5).normal(0.2, 0.5, 40)
    out = stats.bootstrap_ci(lambda i: float(x[i].mean()), 40, n_boot=200, seed=7)
    ref = sps.bootstrap((x,), np.mean, n_resamples=200, method="percentile",
                        random_state=np.random.default_rng(7))
    assert out["low"] == pytest.approx(ref.confidence_interval.low, rel=1e-14)
    assert out["high"] == pytest.approx(ref.confidence_interval.high, rel=1e-14)
    assert out["se"] == pytest.approx(ref.standard_error, rel=1e-14)
    diff = stats.paired_bootstrap(lambda i: float(y[i].mean()), lambda i: float(x[i].mean()),
                                  40, n_boot=200, seed=7)
    ref = sps.bootstrap((y, x), lambda a, b: np.mean(a - b, axis=-1), paired=True,
                        n_resamples=200, method="percentile",
                        random_state=np.random.default_rng(7))
    assert diff["low"] == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert diff["high"] == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    assert diff["se"] == pytest.approx(ref.standard_error, rel=1e-12)


def test_stored_values():
    x = np.random.default_rng(4).exponential(1.0, 40)
    y = x + np.random.default_rng(5).normal(0.2, 0.5, 40)
    assert stats.standard_error(x) == pytest.approx(0.22420081029390496, rel=1e-14)
    t, p = stats.paired_t_test(x, y)
    assert (t, p) == pytest.approx((-0.5898340519489358, 0.5587039670926139), rel=1e-12)
    out = stats.bootstrap_ci(lambda i: float(x[i].mean()), 40, n_boot=200, seed=7)
    assert out == pytest.approx({"estimate": 1.333649129046535, "low": 0.9409912057639062,
                                 "high": 1.7315729145713556, "se": 0.20371196504992395},
                                rel=1e-14)
    diff = stats.paired_bootstrap(lambda i: float(y[i].mean()), lambda i: float(x[i].mean()),
                                  40, n_boot=200, seed=7)
    assert diff == pytest.approx({"estimate": 0.038907339557736176,
                                  "low": -0.10030014780890795, "high": 0.17827410206431887,
                                  "se": 0.06749844722303286, "p": 0.72}, rel=1e-13)


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=40), rng.normal(0.5, 1.0, 40)
    assert stats.wilcoxon_test(a, b) == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert stats.wilcoxon_test(a, a) == 1.0


def test_bootstrap_of_a_mean_has_the_closed_form_standard_error():
    x = np.random.default_rng(4).exponential(1.0, 400)
    out = stats.bootstrap_ci(lambda i: float(x[i].mean()), len(x), n_boot=2000, seed=7)
    assert out["estimate"] == pytest.approx(x.mean())
    assert out["se"] == pytest.approx(x.std() / math.sqrt(len(x)), rel=0.08)
    assert out["low"] < x.mean() < out["high"]
    half = 1.96 * x.std() / math.sqrt(len(x))
    assert out["high"] - out["low"] == pytest.approx(2 * half, rel=0.15)
    again = stats.bootstrap_ci(lambda i: float(x[i].mean()), len(x), n_boot=2000, seed=7)
    assert again == out  # seeded: the same numbers
    with pytest.raises(InputError):
        stats.bootstrap_ci(lambda i: 0.0, 10, n_boot=1)


def test_paired_bootstrap_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(5)
    base = rng.normal(10.0, 3.0, 500)  # large per-item spread, shared by both "models"
    shifted = base + 0.2 + rng.normal(0, 0.1, 500)
    same = stats.paired_bootstrap(lambda i: base[i].mean(), lambda i: base[i].mean(), 500,
                                  n_boot=500)
    assert same["estimate"] == 0 and same["p"] == 1.0
    shift = stats.paired_bootstrap(lambda i: shifted[i].mean(), lambda i: base[i].mean(), 500,
                                   n_boot=500)
    assert shift["estimate"] == pytest.approx(0.2, abs=0.02)
    assert shift["p"] == pytest.approx(1 / 500) and shift["low"] > 0
    # unpaired, the same shift would drown in the spread of 3 / sqrt(500) = 0.13
    assert shift["se"] < 0.01


def _run(rng, n, *, e_rel, mse=14.0, gen_bias=0.0):
    easy = rng.random(n) < 0.5
    sse = rng.gamma(20.0, mse / 20.0, n) * np.where(easy, 1.0, 1.0 + e_rel)
    digits = rng.integers(0, 10, n)
    return {"sse": sse, "sse_swapped": sse, "easy": easy, "digits": digits,
            "test_pred": digits, "test_color": rng.integers(0, 2, n),
            "gen_pred": np.where(rng.random(n) < gen_bias, 0, rng.integers(0, 10, n)),
            "gen_color": rng.integers(0, 2, n)}


def test_metrics_from_per_image_data():
    rng = np.random.default_rng(6)
    d = _run(rng, 300, e_rel=0.1)
    idx = np.arange(300)
    assert cmnist_stats.metric_mse(d, idx) == pytest.approx(d["sse"].mean())
    m_e, m_h = d["sse"][d["easy"]].mean(), d["sse"][~d["easy"]].mean()
    assert cmnist_stats.metric_e_rel(d, idx) == pytest.approx((m_h - m_e) / m_e)
    ref = histogram_kl(class_histogram(d["gen_pred"], d["gen_color"]),
                       class_histogram(d["test_pred"], d["test_color"]))
    assert cmnist_stats.metric_rkl(d, idx) == pytest.approx(ref)


def _per_image(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    per = {"beta_vae": [], "multi_decoder": [], "multi_encoder": []}
    for _ in range(3):
        per["beta_vae"].append(_run(rng, n, e_rel=0.30))
        per["multi_decoder"].append(_run(rng, n, e_rel=0.30, mse=16.0))
        per["multi_encoder"].append(_run(rng, n, e_rel=0.00, gen_bias=0.5))
    return per


def test_compare_models_finds_the_built_in_differences():
    per = _per_image()
    unc = cmnist_stats.model_uncertainty(per, n_boot=200)
    assert unc["multi_encoder"]["e_rel"]["mean"] == pytest.approx(0.0, abs=0.03)
    assert unc["beta_vae"]["e_rel"]["boot_low"] < 0.3 < unc["beta_vae"]["e_rel"]["boot_high"]
    comps = {(c.a, c.b, c.metric): c for c in cmnist_stats.compare_models(per, n_boot=200)}
    mse = comps["multi_decoder", "multi_encoder", "mse"]
    # 16 * (1 + 0.3 / 2) - 14: half the images are hard
    assert mse.diff == pytest.approx(4.4, abs=0.5) and mse.significant and mse.reproduced
    assert mse.wilcoxon_p < 1e-3
    rkl = comps["multi_decoder", "multi_encoder", "rkl"]  # encoders generate more zeros
    assert rkl.diff < 0 and rkl.reproduced
    erel = comps["multi_encoder", "beta_vae", "e_rel"]
    assert erel.reproduced and cmnist_stats.verdict(erel).startswith("reproduced")
    null = comps["multi_decoder", "beta_vae", "e_rel"]  # the same e_rel built in
    assert not null.significant and not null.reproduced
    assert cmnist_stats.verdict(null).startswith("not reproduced (not significant")
    text = cmnist_stats.format_stats(unc, list(comps.values()), poster={"mse": (14.7, 12.8),
                              "rkl": (1.957, 2.839), "e_rel": (0.1, 0.121)})
    assert "multiple encoders vs β-VAE | E_rel" in text and "reproduced (lower" in text


def test_verdicts():
    def comp(diff, boot_p, seeds_p, sign):
        return cmnist_stats.Comparison("a", "b", "mse", sign, diff, 0, 0, boot_p, 1.0, seeds_p, 3)
    assert cmnist_stats.verdict(comp(-1, 0.001, 0.01, -1)) == "reproduced (lower, significant)"
    assert cmnist_stats.verdict(comp(+1, 0.001, 0.01, -1)).startswith(
        "not reproduced: significantly")
    assert "test images only" in cmnist_stats.verdict(comp(-1, 0.001, 0.2, -1))
    assert cmnist_stats.verdict(comp(-1, 0.3, 0.01, 0)) == "not significant"
    assert comp(-1, 0.3, 0.01, 0).reproduced is None
    assert "one seed" in cmnist_stats.verdict(comp(-1, 0.001, float("nan"), 0))
    # NumPy scalars in, plain JSON out
    for boot_p, seeds_p in ((0.3, 0.01), (0.001, 0.01), (0.001, 0.2)):
        c = comp(np.float64(-1), np.float64(boot_p), np.float64(seeds_p), -1)
        row = json.loads(json.dumps(cmnist_stats.comparisons_json([c])))[0]
        assert type(c.significant) is bool and type(c.reproduced) is bool
        assert row["significant"] == (boot_p < 0.05 and seeds_p < 0.05)


def test_load_per_image_keeps_complete_seeds(tmp_path):
    per = _per_image(n=50)
    (tmp_path / "per_image").mkdir()
    for model, runs in per.items():
        for s, r in enumerate(runs):
            if model == "multi_encoder" and s == 2:
                continue  # seed 2 unfinished
            np.savez_compressed(tmp_path / "per_image" / f"seed{s}_{model}.npz", **r)
    got = cmnist_stats.load_per_image(tmp_path)
    assert [len(v) for v in got.values()] == [2, 2, 2]
    assert np.array_equal(got["beta_vae"][1]["sse"], per["beta_vae"][1]["sse"])
    with pytest.raises(InputError, match="no seed"):
        cmnist_stats.load_per_image(tmp_path / "nothing")
