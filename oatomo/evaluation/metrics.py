"""Image quality of reconstructions: RMSE, PSNR, SSIM and Pearson correlation.

The last two axes are the image, leading axes are a batch and the result has their shape
(a float for a single image). Every function takes ``(pred, target)``: the reconstruction
first, the reference second. :func:`psnr` and :func:`ssim` are scikit-image's
``peak_signal_noise_ratio`` and ``structural_similarity``, called per image with the
reference first as scikit-image expects.

:func:`minmax` and :func:`affine_fit` scale linear images before they are scored;
:func:`image_metrics` is the mean of the four over a stack.

NumPy / SciPy / scikit-image only: this module does not import PyTorch.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from oatomo.errors import InputError

__all__ = ["as_pair", "rmse", "psnr", "ssim", "pearson", "minmax", "affine_fit", "image_metrics"]


def as_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``target`` as float64 arrays of one shape (InputError otherwise)."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise InputError(f"shape mismatch: prediction {pred.shape} vs target {target.shape}")
    return pred, target


def _images(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = as_pair(pred, target)
    if pred.ndim < 2:
        raise InputError(f"expected images (..., H, W), got shape {pred.shape}")
    return pred, target


def _reduce(values: np.ndarray) -> float | np.ndarray:
    return float(values) if np.ndim(values) == 0 else values


def _per_image(fn, pred: np.ndarray, target: np.ndarray) -> float | np.ndarray:
    """``fn(target_image, pred_image)`` for every image of a batch, in the batch's shape."""
    lead = pred.shape[:-2]
    out = np.array([fn(target[i], pred[i]) for i in np.ndindex(lead)], np.float64)
    return _reduce(out.reshape(lead))


def _data_range(target: np.ndarray, data_range: float | None) -> float:
    return float(target.max() - target.min()) if data_range is None else float(data_range)


def rmse(pred: np.ndarray, target: np.ndarray) -> float | np.ndarray:
    """Root mean squared error over the last two axes."""
    pred, target = _images(pred, target)
    return _reduce(np.sqrt(np.mean((pred - target) ** 2, axis=(-2, -1))))


def psnr(pred: np.ndarray, target: np.ndarray, *, data_range: float | None = None
         ) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE), over the last two axes.

    ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=data_range)`` per
    image (note the order: scikit-image takes the reference first). ``data_range``
    defaults to ``target.max() - target.min()`` over the whole input (1 for min-max
    normalised images). Identical images give ``inf``.
    """
    pred, target = _images(pred, target)
    dr = _data_range(target, data_range)
    with np.errstate(divide="ignore"):
        return _per_image(lambda t, p: peak_signal_noise_ratio(t, p, data_range=dr),
                          pred, target)


def ssim(pred: np.ndarray, target: np.ndarray, *, data_range: float | None = None,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float | np.ndarray:
    """Structural similarity (Wang et al. 2004) over the last two axes.

    ``skimage.metrics.structural_similarity(target, pred, data_range=data_range,
    gaussian_weights=True, sigma=sigma, use_sample_covariance=False, K1=k1, K2=k2)`` per
    image (the reference first, as scikit-image takes it): Gaussian-weighted local
    statistics truncated at 3.5 sigma and reflected at the border, population covariances,
    the mean over the image less a border of half the window. ``data_range`` as in
    :func:`psnr`.
    """
    pred, target = _images(pred, target)
    dr = _data_range(target, data_range)
    return _per_image(lambda t, p: structural_similarity(
        t, p, data_range=dr, gaussian_weights=True, sigma=sigma,
        use_sample_covariance=False, K1=k1, K2=k2), pred, target)


def pearson(pred: np.ndarray, target: np.ndarray) -> float | np.ndarray:
    """Pearson correlation coefficient of the pixel values, over the last two axes."""
    pred, target = _images(pred, target)
    a = pred - pred.mean(axis=(-2, -1), keepdims=True)
    b = target - target.mean(axis=(-2, -1), keepdims=True)
    num = (a * b).sum(axis=(-2, -1))
    den = np.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))
    return _reduce(num / den)


def minmax(images: np.ndarray) -> np.ndarray:
    """Min–max normalise each image (last two axes) to [0, 1]."""
    a = np.asarray(images, np.float32)
    lo = a.min(axis=(-2, -1), keepdims=True)
    hi = a.max(axis=(-2, -1), keepdims=True)
    return ((a - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)


def affine_fit(images: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image, the least-squares ``a * image + b`` closest to ``truth``."""
    x = np.asarray(images, np.float64)
    t = np.asarray(truth, np.float64)
    xm = x.mean(axis=(-2, -1), keepdims=True)
    tm = t.mean(axis=(-2, -1), keepdims=True)
    cov = ((x - xm) * (t - tm)).sum(axis=(-2, -1), keepdims=True)
    var = ((x - xm) ** 2).sum(axis=(-2, -1), keepdims=True)
    a = cov / np.where(var > 0, var, 1)
    return (a * (x - xm) + tm).astype(np.float32)


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB), SSIM, RMSE and Pearson over a stack of images."""
    return {"psnr": float(np.mean(psnr(pred, truth, data_range=1.0))),
            "ssim": float(np.mean(ssim(pred, truth, data_range=1.0))),
            "rmse": float(np.mean(rmse(pred, truth))),
            "pearson": float(np.mean(pearson(pred, truth)))}
