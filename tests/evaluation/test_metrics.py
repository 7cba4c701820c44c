"""Metrics: the Colored MNIST MSE / E_rel on planted errors, histogram and k-NN
divergences; image quality against scikit-image and stored values."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import entropy
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from oatomo import InputError, metrics
from oatomo.validation.cmnist import metrics as cmnist_metrics


def test_metrics_modules_do_not_import_torch():
    code = ("import sys, oatomo.evaluation.metrics, oatomo.validation.cmnist.metrics; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mse_is_per_image_sum_and_per_pixel_mean():
    target = np.random.default_rng(0).random((5, 2, 4, 4))
    pred = target + 0.1  # every one of the 32 values off by 0.1
    out = cmnist_metrics.mse(pred, target)
    assert out["mse"] == pytest.approx(32 * 0.01)
    assert out["mse_per_pixel"] == pytest.approx(0.01)
    np.testing.assert_allclose(cmnist_metrics.sse_per_image(pred, target), 0.32)
    with pytest.raises(InputError, match="shape mismatch"):
        cmnist_metrics.mse(pred[:, :1], target)


def test_e_rel_on_planted_errors():
    # digits 0..9 twice; colour green for the first ten, red for the rest
    digits = np.tile(np.arange(10), 2)
    colors = np.repeat([1, 0], 10)
    easy = (colors == 1) == (digits < 5)
    target = np.zeros((20, 2, 3, 3))
    pred = target.copy()
    pred[easy] += 0.1   # easy images: SSE 18 * 0.01 = 0.18
    pred[~easy] += 0.2  # hard images: SSE 18 * 0.04 = 0.72 -> E_rel = 3
    out = cmnist_metrics.e_rel(pred, target, digits, colors)
    assert out["e_rel"] == pytest.approx(3.0)
    assert out["mse_easy"] == pytest.approx(0.18) and out["mse_hard"] == pytest.approx(0.72)
    assert out["n_easy"] == 10 and out["n_hard"] == 10
    # errors that depend only on the digit: equal mix -> 0 in both variants
    pred2 = target + (digits / 20.0)[:, None, None, None]
    assert cmnist_metrics.e_rel(pred2, target, digits, colors)["e_rel"] == pytest.approx(
        0.0, abs=1e-12)
    # unequal digit mix (easy: 1 1 1 2, hard: 1 2 2 2), error set by the digit alone:
    # plain E_rel sees the mix, the digit-balanced variant does not
    d = np.array([1, 1, 1, 2, 1, 2, 2, 2])
    c = np.repeat([1, 0], 4)  # green small = easy, red small = hard
    t = np.zeros((8, 2, 3, 3))
    p = t + (d / 10.0)[:, None, None, None]
    # SSE is proportional to d^2: easy (1 + 1 + 1 + 4) / 4, hard (1 + 4 + 4 + 4) / 4
    assert cmnist_metrics.e_rel(p, t, d, c)["e_rel"] == pytest.approx((13 - 7) / 7)
    assert cmnist_metrics.e_rel(p, t, d, c, balanced=True)["e_rel"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="both easy and hard"):
        cmnist_metrics.e_rel(pred[easy], target[easy], digits[easy], colors[easy])


def test_color_and_class_histogram():
    imgs = np.zeros((3, 2, 4, 4))
    imgs[0, 0] = 1.0          # red
    imgs[1, 1] = 0.5          # green
    imgs[2, 0], imgs[2, 1] = 0.2, 0.3  # mixed, more green energy
    np.testing.assert_array_equal(cmnist_metrics.color_of(imgs), [0, 1, 1])
    hist = cmnist_metrics.class_histogram(np.array([3, 3, 9]), np.array([0, 1, 1]))
    assert hist.shape == (20,) and hist[3] == 1 and hist[13] == 1 and hist[19] == 1
    with pytest.raises(InputError):
        cmnist_metrics.class_histogram(np.array([10]), np.array([0]))
    with pytest.raises(InputError):
        cmnist_metrics.color_of(np.zeros((2, 3, 4, 4)))


def test_histogram_kl():
    p = np.array([10, 0, 30, 60])
    assert cmnist_metrics.histogram_kl(p, p) == 0.0
    q = np.array([40, 20, 20, 20])
    a = 0.5
    expected = entropy((q + a) / (q + a).sum(), (p + a) / (p + a).sum())
    assert cmnist_metrics.histogram_kl(q, p) == pytest.approx(expected)
    assert cmnist_metrics.histogram_kl(q, p, alpha=0) == np.inf  # q has mass where p has none
    assert cmnist_metrics.histogram_kl(p, q, alpha=0) == pytest.approx(entropy(p / 100, q / 100))


def test_knn_kl_recovers_gaussian_divergence():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 1))
    y = rng.standard_normal((3000, 1)) + 1.0  # KL(N(0,1) || N(1,1)) = 0.5
    assert cmnist_metrics.knn_kl(x, y, k=5) == pytest.approx(0.5, abs=0.08)
    z = rng.standard_normal((3000, 1))
    assert abs(cmnist_metrics.knn_kl(x, z, k=5)) < 0.05
    with pytest.raises(InputError):
        cmnist_metrics.knn_kl(x, y[:, :0])


def test_image_quality_against_skimage():
    rng = np.random.default_rng(1)
    target = rng.random((3, 32, 32))
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
    for i in range(3):
        # scikit-image takes the reference first, oatomo the prediction first
        assert metrics.psnr(pred[i], target[i], data_range=1.0) == peak_signal_noise_ratio(
            target[i], pred[i], data_range=1.0)
        assert metrics.ssim(pred[i], target[i], data_range=1.0) == structural_similarity(
            target[i], pred[i], data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False)
        assert metrics.pearson(pred[i], target[i]) == pytest.approx(
            np.corrcoef(pred[i].ravel(), target[i].ravel())[0, 1])
    batch = metrics.ssim(pred, target, data_range=1.0)
    assert batch.shape == (3,)
    assert batch[1] == metrics.ssim(pred[1], target[1], data_range=1.0)
    assert metrics.psnr(pred[None], target[None]).shape == (1, 3)
    assert metrics.rmse(pred, target).shape == (3,)
    assert metrics.rmse(target[0] + 0.25, target[0]) == pytest.approx(0.25)
    assert metrics.ssim(target[0], target[0]) == pytest.approx(1.0)
    assert metrics.psnr(target[0], target[0]) == np.inf
    with pytest.raises(InputError, match="shape mismatch"):
        metrics.psnr(pred[0], target)


def test_image_quality_stored_values():
    rng = np.random.default_rng(11)
    target = rng.random((2, 24, 24))
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
    np.testing.assert_allclose(metrics.psnr(pred, target, data_range=1.0),
                               [20.59471138871027, 20.35754073523353], rtol=1e-13)
    np.testing.assert_allclose(metrics.ssim(pred, target, data_range=1.0),
                               [0.9432168507455198, 0.9380939435984041], rtol=1e-13)
    # data range from the target: max - min over the whole batch
    np.testing.assert_allclose(metrics.psnr(pred, target),
                               [20.579208137244134, 20.342037483767395], rtol=1e-13)
    np.testing.assert_allclose(metrics.ssim(pred, target),
                               [0.9432156339510315, 0.938092483331014], rtol=1e-13)
