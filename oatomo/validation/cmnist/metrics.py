"""The Colored MNIST metrics: reconstruction MSE, generation RKL and invariance E_rel.

NumPy / SciPy only: this module does not import PyTorch. The digit of a generated image
comes from the classifier of :mod:`oatomo.validation.cmnist.classifier` and is passed in.

* :func:`mse` -- per-image **sum** of squared errors over all channels and pixels (values in
  [0, 1]), averaged over images; the per-pixel mean is reported beside it.
* :func:`histogram_kl` -- D(q || p) between two histograms, with additive smoothing; used as
  RKL = D(q_generated || p_test) over the 20 classes (digit 0-9) x (colour red / green) made
  by :func:`class_histogram`. :func:`knn_kl` is a second, histogram-free estimator.
* :func:`e_rel` -- (MSE_hard - MSE_easy) / MSE_easy, easy = green digits < 5 and red digits
  >= 5 (true digit), hard = the opposite.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from oatomo.errors import InputError
from oatomo.evaluation.metrics import as_pair

__all__ = [
    "sse_per_image",
    "mse",
    "e_rel",
    "color_of",
    "class_histogram",
    "histogram_kl",
    "knn_kl",
    "N_CLASSES",
]

#: Classes of the RKL histogram: index = digit + 10 * colour (colour 0 red, 1 green).
N_CLASSES = 20


def sse_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sum of squared errors of each image over all its channels and pixels: shape (N,)."""
    pred, target = as_pair(pred, target)
    if pred.ndim < 2:
        raise InputError(f"expected a batch of images (N, ...), got shape {pred.shape}")
    return ((pred - target) ** 2).reshape(len(pred), -1).sum(axis=1)


def mse(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The poster's reconstruction MSE.

    Returns
    -------
    dict
        ``mse``: per-image sum of squared errors over all channels and pixels, averaged over
        images (the poster's scale: about 12-15 for a 2x28x28 Colored MNIST VAE);
        ``mse_per_pixel``: the same divided by the number of values per image.
    """
    sse = sse_per_image(pred, target)
    per_image = int(np.prod(np.shape(pred)[1:]))
    return {"mse": float(sse.mean()), "mse_per_pixel": float(sse.mean() / per_image)}


def e_rel(pred: np.ndarray, target: np.ndarray, digits: np.ndarray, colors: np.ndarray, *,
          balanced: bool = False) -> dict[str, float]:
    """The poster's invariance metric E_rel = (MSE_hard - MSE_easy) / MSE_easy.

    Parameters
    ----------
    pred, target
        (N, ...) reconstructions and test images.
    digits
        (N,) true digits (not the noisy binary label).
    colors
        (N,) 1 = green, 0 = red.
    balanced
        Diagnostic variant, not the poster's metric: MSE_easy and MSE_hard are the means over
        the digits present of each digit's mean error, so that the different digit mix of the
        two groups (hard test images are mostly small digits) does not enter.

    Returns
    -------
    dict
        ``e_rel``, ``mse_easy``, ``mse_hard``, ``n_easy``, ``n_hard``.
    """
    sse = sse_per_image(pred, target)
    digits, colors = np.asarray(digits), np.asarray(colors)
    if digits.shape != (len(sse),) or colors.shape != (len(sse),):
        raise InputError(f"digits and colors must have shape ({len(sse)},)")
    easy = (colors == 1) == (digits < 5)
    if easy.all() or not easy.any():
        raise InputError("E_rel needs both easy and hard images")

    def group_mse(mask: np.ndarray) -> float:
        if not balanced:
            return float(sse[mask].mean())
        return float(np.mean([sse[mask & (digits == d)].mean()
                              for d in np.unique(digits[mask])]))

    m_easy, m_hard = group_mse(easy), group_mse(~easy)
    return {"e_rel": (m_hard - m_easy) / m_easy, "mse_easy": m_easy, "mse_hard": m_hard,
            "n_easy": int(easy.sum()), "n_hard": int((~easy).sum())}


def color_of(images: np.ndarray) -> np.ndarray:
    """Colour of two-channel images from channel energy: 1 (green) if the sum of squares of
    channel 1 exceeds that of channel 0, else 0 (red). ``images``: (N, 2, H, W)."""
    images = np.asarray(images, np.float64)
    if images.ndim != 4 or images.shape[1] != 2:
        raise InputError(f"expected (N, 2, H, W) red/green images, got shape {images.shape}")
    energy = (images**2).sum(axis=(2, 3))
    return (energy[:, 1] > energy[:, 0]).astype(np.int64)


def class_histogram(digits: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Counts of the 20 (digit, colour) classes, index ``digit + 10 * colour``."""
    digits, colors = np.asarray(digits, np.int64), np.asarray(colors, np.int64)
    if digits.shape != colors.shape or digits.ndim != 1:
        raise InputError("digits and colors must be 1-D arrays of the same length")
    if digits.size and (digits.min() < 0 or digits.max() > 9 or colors.min() < 0
                        or colors.max() > 1):
        raise InputError("digits must lie in 0-9 and colours in {0, 1}")
    return np.bincount(digits + 10 * colors, minlength=N_CLASSES)


def histogram_kl(q_counts: np.ndarray, p_counts: np.ndarray, *, alpha: float = 0.5) -> float:
    """D(q || p) in nats between two histograms given as counts.

    Empty bins: ``alpha`` pseudo-counts are added to every bin of both histograms before
    normalising (additive smoothing; the default 0.5 is the Krichevsky-Trofimov /
    Jeffreys choice). Without it a class the generator produces but the test set lacks
    would give an infinite divergence. Identical histograms give exactly 0.
    """
    q = np.asarray(q_counts, np.float64)
    p = np.asarray(p_counts, np.float64)
    if q.shape != p.shape or q.ndim != 1:
        raise InputError(f"histograms must be 1-D of the same length, got {q.shape}, {p.shape}")
    if (q < 0).any() or (p < 0).any() or alpha < 0:
        raise InputError("counts and alpha must be non-negative")
    q, p = q + alpha, p + alpha
    if q.sum() == 0 or p.sum() == 0:
        raise InputError("empty histogram (and alpha = 0)")
    q, p = q / q.sum(), p / p.sum()
    nz = q > 0
    if (p[nz] == 0).any():
        return float("inf")
    return float(np.sum(q[nz] * np.log(q[nz] / p[nz])))


def knn_kl(x_q: np.ndarray, x_p: np.ndarray, *, k: int = 5) -> float:
    """k-nearest-neighbour estimate of D(q || p) from samples (Wang, Kulkarni, Verdu 2009).

    D ~= d/n * sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)), where ``rho_k(i)`` is the
    distance from the i-th of the n samples of q to its k-th neighbour among the other samples
    of q and ``nu_k(i)`` the distance to its k-th neighbour among the m samples of p; d is the
    dimension. Consistent but biased in high dimension: use a low-dimensional feature space.
    It assumes densities: features with atoms (many identical points, e.g. clipped
    log-probabilities) drive neighbour distances to zero and the estimate to arbitrary,
    even negative, values that depend on the sample size.

    Parameters
    ----------
    x_q, x_p
        (n, d) and (m, d) samples of q and p.
    k
        Neighbour order.
    """
    x_q, x_p = np.asarray(x_q, np.float64), np.asarray(x_p, np.float64)
    if x_q.ndim != 2 or x_p.ndim != 2 or x_q.shape[1] != x_p.shape[1]:
        raise InputError(f"expected (n, d) and (m, d) samples, got {x_q.shape}, {x_p.shape}")
    n, d = x_q.shape
    m = len(x_p)
    if not 1 <= k < min(n, m + 1):
        raise InputError(f"k must satisfy 1 <= k < n and k <= m, got k={k}, n={n}, m={m}")
    rho = cKDTree(x_q).query(x_q, k=k + 1)[0][:, k]
    nu = cKDTree(x_p).query(x_q, k=k)[0]
    nu = nu[:, k - 1] if k > 1 else nu
    tiny = np.finfo(np.float64).tiny
    return float(d * np.mean(np.log(np.maximum(nu, tiny) / np.maximum(rho, tiny)))
                 + np.log(m / (n - 1)))
