"""Model-based reconstruction: normal equations, LSQR against SciPy, TV descent and quality."""

import numpy as np
import pytest
from scipy.sparse.linalg import lsqr as scipy_lsqr

from oatomo import Acquisition, Grid, InputError, phantoms, ring_array
from oatomo.evaluation.metrics import psnr
from oatomo.forward import ForwardOperator, simulate
from oatomo.recon.backprojection import backproject
from oatomo.recon.model_based import (
    STALL_MIN_ITERS,
    STALL_WINDOW,
    default_lambda,
    lsqr,
    reconstruct_model_based,
)
from oatomo.recon.operators import (
    lanczos_top_eigenvalue,
    operator_norm_sq,
    tv_norm,
    tv_prox,
)

# a tiny problem whose system matrix can be built explicitly
G24 = Grid(24, 0.0048)
S16 = ring_array(16, 0.006)
A200 = Acquisition(20e6, 200)


@pytest.fixture(scope="module")
def tiny():
    op = ForwardOperator(G24, S16, A200)
    eye = np.eye(G24.n**2, dtype=np.float32)
    matrix = np.stack([op.forward(e.reshape(G24.shape)).ravel() for e in eye], axis=1)
    p0 = phantoms.disks(G24, 1)
    y = simulate(p0, G24, S16, A200, noise_std=0.01, seed=0)
    matrix = matrix.astype(np.float64)
    gram = matrix.T @ matrix
    return matrix, p0, y, gram, float(np.linalg.eigvalsh(gram).max())


def test_tikhonov_solves_the_normal_equations(tiny):
    matrix, _, y, gram, norm_sq = tiny
    lam = 0.02 * norm_sq
    x, rec = reconstruct_model_based(y, G24, S16, A200, method="tikhonov", lam=lam,
                                     n_iter=300, nonneg=False, tol=1e-10)
    rhs = matrix.T @ y.ravel().astype(np.float64)
    lhs = (gram + lam * np.eye(matrix.shape[1])) @ x.ravel().astype(np.float64)
    assert np.linalg.norm(lhs - rhs) / np.linalg.norm(rhs) < 1e-4  # measured 1e-7
    assert x.dtype == np.float32 and x.shape == G24.shape
    assert rec["method"] == "tikhonov" and rec["lam"] == lam and rec["converged"]
    # the recorded residual is the true relative misfit of the final iterate
    true_res = np.linalg.norm(matrix @ x.ravel() - y.ravel()) / np.linalg.norm(y)
    assert abs(rec["residual"][-1] - true_res) < 1e-3 * true_res
    # LSQR minimises over growing Krylov spaces: the objective never increases
    assert np.all(np.diff(rec["objective"]) <= 1e-6 * rec["objective"][0])  # float32 A


def test_lsqr_iterates_match_scipy(tiny):
    matrix, _, y, _, norm_sq = tiny
    damp = 0.1 * np.sqrt(norm_sq)
    for k in (3, 10):
        ours, n = lsqr(lambda v: matrix @ v, lambda v: matrix.T @ v, y.ravel(), damp=damp,
                       n_iter=k, tol=0)
        ref = scipy_lsqr(matrix, y.ravel().astype(np.float64), damp=damp, iter_lim=k,
                         atol=0, btol=0, conlim=0)[0]
        assert n == k
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_operator_norm_matches_largest_singular_value(tiny):
    """The default estimate (10 Lanczos steps) and 30 power steps, from below."""
    for est in (operator_norm_sq(G24, S16, A200),
                operator_norm_sq(G24, S16, A200, method="power")):
        assert 0.98 < est / tiny[4] <= 1 + 1e-5


def test_lanczos_reaches_the_top_eigenvalue_of_a_closed_form_spectrum():
    """A diagonal operator with five distinct eigenvalues: its Krylov space has dimension
    five, so five Lanczos steps give the largest eigenvalue exactly; after k < 5 steps the
    largest Ritz value lies below it and above the Rayleigh quotient of the power iterate
    A^(k-1) q (which lies in the same Krylov space)."""
    rng = np.random.default_rng(3)
    d = rng.choice([0.5, 1.0, 2.0, 7.0, 9.0], size=(12, 12)).astype(np.float32)
    d[0, :5] = [0.5, 1.0, 2.0, 7.0, 9.0]  # every value present
    q = rng.standard_normal(d.shape).astype(np.float32)
    top = lanczos_top_eigenvalue(lambda v: d * v, q, 5)
    assert top == pytest.approx(9.0, rel=1e-6)
    assert lanczos_top_eigenvalue(lambda v: d * v, q, 40) == pytest.approx(9.0, rel=1e-6)
    for k in (1, 2, 3, 4):
        power = q.astype(np.float64)
        for _ in range(k - 1):
            power = d * power
        rayleigh = float(np.sum(d * power * power) / np.sum(power * power))
        ritz = lanczos_top_eigenvalue(lambda v: d * v, q, k)
        assert rayleigh - 1e-5 <= ritz < 9.0 - 1e-3


def test_lanczos_norm_against_the_explicit_matrix(tiny):
    """The forward operator's ||A||^2 by Lanczos steps: 20 steps reach the largest
    eigenvalue of the explicit A^T A; 7 come at least as close as 15 power steps did on
    this operator; an unknown method is refused."""
    exact = tiny[4]
    assert operator_norm_sq(G24, S16, A200, n_iter=20, method="lanczos") == pytest.approx(
        exact, rel=1e-3)
    seven = operator_norm_sq(G24, S16, A200, n_iter=7, method="lanczos")
    power = operator_norm_sq(G24, S16, A200, n_iter=15, method="power")
    assert abs(seven - exact) <= abs(power - exact) and seven <= exact * (1 + 1e-5)
    with pytest.raises(ValueError, match="lanczos"):
        operator_norm_sq(G24, S16, A200, method="arnoldi")


def test_nonneg_tikhonov_and_callback(tiny):
    _, p0, y, _, _ = tiny
    calls = []
    x, rec = reconstruct_model_based(y, G24, S16, A200, method="tikhonov", n_iter=15,
                                     on_iteration=lambda k, img: calls.append((k, img.shape)))
    assert x.min() >= 0
    assert [k for k, _ in calls] == list(range(1, rec["n_iter"] + 1))
    assert all(shape == G24.shape for _, shape in calls)
    assert rec["n_iter"] == rec["n_iter_lsqr"] + rec["n_iter_projected"]
    assert len(rec["residual"]) == len(rec["objective"]) == rec["n_iter"]
    assert np.corrcoef(x.ravel(), p0.ravel())[0, 1] > 0.9


RING32 = ring_array(32, 0.0225)
G64 = Grid(64, 0.0128)
ACQ = Acquisition(20e6, 640)


def test_tv_descends_is_nonnegative_and_beats_tikhonov_and_ubp():
    p0 = phantoms.disks(G64, 7)  # piecewise constant
    y = simulate(p0, G64, RING32, ACQ, noise_std=0.01, seed=3)
    seen = []
    x, rec = reconstruct_model_based(y, G64, RING32, ACQ, method="tv", n_iter=60, tol=0,
                                     on_iteration=lambda k, img: seen.append(k))
    obj = np.array(rec["objective"])
    assert seen == list(range(1, 61)) and rec["n_iter"] == 60
    assert np.all(np.diff(obj) <= 0)  # monotone FISTA
    assert obj[-1] < 0.5 * obj[0]
    assert x.min() >= 0 and x.dtype == np.float32

    def scaled(img):  # least-squares scale to the truth, as in benchmarks/bench_mb.py
        return img * float((img * p0).sum() / (img * img).sum())

    tik = reconstruct_model_based(y, G64, RING32, ACQ, method="tikhonov", n_iter=60)[0]
    ubp = backproject(y, G64, RING32, ACQ, method="ubp")
    p_tv, p_tik, p_ubp = (psnr(scaled(im), p0, data_range=1.0) for im in (x, tik, ubp))
    assert p_tv > p_tik + 5 and p_tv > p_ubp + 15  # measured 55.1, 41.2, 16.7 dB


def test_tv_stall_test_stops_at_the_first_stalled_window():
    """With ``stall_tol`` TV stops at the first iteration ``k >= STALL_MIN_ITERS`` whose
    objective fell by at most ``stall_tol * f_k`` over the last ``STALL_WINDOW``
    iterations -- read off the objective trace of a run without the test -- and returns
    that run's iterate ``k``."""
    p0 = phantoms.disks(G64, 7)
    y = simulate(p0, G64, RING32, ACQ, noise_std=0.01, seed=3)
    images = {}
    full, rec = reconstruct_model_based(y, G64, RING32, ACQ, method="tv", n_iter=120, tol=0,
                                        on_iteration=lambda k, img: images.update({k: img.copy()}))
    obj = np.array(rec["objective"])
    assert rec["stalled"] is False and rec["n_iter"] == 120
    # the relative decrease over the window ending at iteration k (1-based)
    drop = {k: (obj[k - 1 - STALL_WINDOW] - obj[k - 1]) / obj[k - 1]
            for k in range(max(STALL_MIN_ITERS, STALL_WINDOW + 1), 121)}
    # stalls inside the run; halfway between two drops, so that no drop sits on it (the
    # library multiplies by f_k where this divides: at equality their rounding may differ)
    ranked = np.sort(list(drop.values()))
    tol = float(0.5 * (ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]))
    assert ranked[len(ranked) // 2 - 1] < tol < ranked[len(ranked) // 2]
    first = min(k for k, d in drop.items() if d <= tol)
    assert STALL_MIN_ITERS <= first < 120
    x, rec2 = reconstruct_model_based(y, G64, RING32, ACQ, method="tv", n_iter=120, tol=0,
                                      stall_tol=tol)
    assert rec2["stalled"] is True and rec2["n_iter"] == first
    np.testing.assert_array_equal(x, images[first])
    np.testing.assert_array_equal(rec2["objective"], obj[:first])
    # a tolerance no window meets runs every iteration
    never, rec3 = reconstruct_model_based(y, G64, RING32, ACQ, method="tv", n_iter=120,
                                          tol=0, stall_tol=1e-12)
    assert rec3["stalled"] is False and rec3["n_iter"] == 120
    np.testing.assert_array_equal(never, full)
    # stall_from: the test is made from that iteration on only
    later = first + 7
    want = min(k for k, d in drop.items() if d <= tol and k >= later)
    x4, rec4 = reconstruct_model_based(y, G64, RING32, ACQ, method="tv", n_iter=120, tol=0,
                                       stall_tol=tol, stall_from=later)
    assert rec4["stalled"] is True and rec4["n_iter"] == want >= later
    np.testing.assert_array_equal(x4, images[want])


def test_default_lambda_is_scale_equivariant():
    p0 = phantoms.disks(G64, 2)
    y = simulate(p0, G64, RING32, ACQ, noise_std=0.01, seed=1)
    lam = default_lambda("tv", y, G64, RING32, ACQ)
    assert default_lambda("tv", 10 * y, G64, RING32, ACQ) == pytest.approx(10 * lam,
                                                                           rel=1e-5)
    x1 = reconstruct_model_based(y, G64, RING32, ACQ, method="tv", n_iter=10)[0]
    x10 = reconstruct_model_based(10 * y, G64, RING32, ACQ, method="tv", n_iter=10)[0]
    np.testing.assert_allclose(x10, 10 * x1, rtol=1e-3, atol=1e-4 * x10.max())
    # Tikhonov's default depends on the operator only
    assert default_lambda("tikhonov", y, G64, RING32, ACQ) == default_lambda(
        "tikhonov", 5 * y, G64, RING32, ACQ)


def test_tv_prox_properties():
    rng = np.random.default_rng(0)
    b = (np.kron(np.eye(4), np.ones((8, 8))) + 0.2 * rng.standard_normal((32, 32))
         ).astype(np.float32)
    const = np.full((16, 16), 2.5, np.float32)
    np.testing.assert_allclose(tv_prox(const, 0.7), const, rtol=1e-6)
    flat = tv_prox(b, 1e4, nonneg=False, n_inner=400)
    assert np.ptp(flat) < 0.1 and abs(flat.mean() - b.mean()) < 1e-3
    x = tv_prox(b, 0.3, n_inner=100)
    assert x.min() >= 0
    # x minimises 1/2 ||x - b||^2 + mu TV(x): better than b and than small perturbations

    def f(z):
        return 0.5 * float(np.sum((z - b) ** 2)) + 0.3 * tv_norm(z)

    assert f(x) < f(b)
    for _ in range(5):
        assert f(x) <= f(np.maximum(x + 0.01 * rng.standard_normal(x.shape), 0)) + 1e-6


def test_zero_sinogram_gives_zero_image():
    y = np.zeros((16, 200), np.float32)
    for m in ("tikhonov", "tv"):
        x, rec = reconstruct_model_based(y, G24, S16, A200, method=m)
        assert not x.any() and rec["n_iter"] == 0


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "art"}, "unknown model-based method"),
    ({"lam": -1.0}, "lam"),
    ({"lam": float("nan")}, "lam"),
    ({"n_iter": 0}, "n_iter"),
    ({"n_iter": 2.5}, "n_iter"),
    ({"tol": -1.0}, "tol"),
    ({"x0": np.zeros((5, 5))}, "x0"),
    ({"stall_tol": -1e-3}, "stall_tol"),
    ({"stall_tol": float("nan")}, "stall_tol"),
    ({"stall_from": 0}, "stall_from"),
    ({"stall_from": 2.5}, "stall_from"),
])
def test_bad_arguments_raise(kwargs, match):
    y = np.zeros((16, 200), np.float32)
    with pytest.raises(InputError, match=match):
        reconstruct_model_based(y, G24, S16, A200, **kwargs)


def test_bad_sinogram_raises():
    with pytest.raises(InputError, match="samples"):
        reconstruct_model_based(np.zeros((16, 100), np.float32), G24, S16, A200)
    with pytest.raises(InputError, match="shape"):
        reconstruct_model_based(np.zeros((2, 16, 200), np.float32), G24, S16, A200)
    bad = np.zeros((16, 200), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        reconstruct_model_based(bad, G24, S16, A200)


def test_nonneg_tikhonov_against_scipy_lsq_linear(tiny):
    """The constrained Tikhonov image reaches the optimum of the bounded least-squares
    problem [A; sqrt(lam) I] x = [y; 0], x >= 0 (SciPy's lsq_linear) to within 1 %."""
    from scipy.optimize import lsq_linear

    matrix, _, y, _, norm_sq = tiny
    lam = 0.02 * norm_sq
    x, _ = reconstruct_model_based(y, G24, S16, A200, method="tikhonov", lam=lam,
                                   n_iter=300, nonneg=True, tol=1e-10)
    aug = np.vstack([matrix, np.sqrt(lam) * np.eye(matrix.shape[1])])
    rhs = np.concatenate([y.ravel().astype(np.float64), np.zeros(matrix.shape[1])])
    ref = lsq_linear(aug, rhs, bounds=(0, np.inf), tol=1e-12).x

    def objective(v):
        return np.sum((aug @ v - rhs) ** 2)

    assert x.min() >= 0
    assert objective(x.ravel().astype(np.float64)) <= 1.01 * objective(ref)
    assert np.linalg.norm(x.ravel() - ref) <= 0.05 * np.linalg.norm(ref)
