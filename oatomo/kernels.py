"""Numba kernels: forward model, its adjoint, delay-and-sum.

Pixel model
-----------
The image is expanded in the bilinear (hat) basis of the grid. A sensor is far from a
pixel compared with the pixel size (the sagitta of a 22 mm circle over 0.1 mm is 0.2 um),
so the integral of one basis function over a circle of radius rho around the sensor is the
Radon projection of the hat, ``dx * K(u, (rho - d) / dx)``, where ``d`` is the pixel-sensor
distance and ``K`` the density of ``a (U1 + U2) + b (U3 + U4)`` with ``Ui ~ U(-1/2, 1/2)``,
``a = |cos theta|``, ``b = |sin theta|`` (theta: direction from sensor to pixel). ``K`` is
tabulated over ``u = min(a, b) / max(a, b)`` and the offset. The kernels use 9 shapes
(u = 0, 1/8, ..., 1, nearest) on a fine radial grid of at most ``dx / 8``: each pixel is
split linearly between two fine bins of its shape's histogram, which is then convolved
with the shape and sampled at the edges (the adjoint runs the same steps backwards).

Forward model::

    F(t) = h / (4 pi c^2) / t * sum_ij x_ij dx K_ij(c t - d_ij)     (F = integral of p)
    p_k  = (F(t_k + dt/2) - F(t_k - dt/2)) / dt

so the running sum of ``p * dt`` equals ``F`` at the sample's upper edge exactly.
"""

from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np

from oatomo.errors import InputError

# ---------------------------------------------------------------------------------------
# The projected-hat table K(u, s): u in [0, 1] (N_U rows), s in [-S_MAX, S_MAX] (N_S cols).
N_U = 65
S_MAX = 1.5
N_S = 385  # spacing 1/128 pixel
_S_STEP = 2 * S_MAX / (N_S - 1)


def _convolve_same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.convolve(a, b, mode="same")`` for equal lengths, through the FFT (the direct
    sum took 0.7 s for the table, most of a short job's first forward projection)."""
    n = len(a)
    m = 1 << int(math.ceil(math.log2(2 * n - 1)))
    full = np.fft.irfft(np.fft.rfft(a, m) * np.fft.rfft(b, m), m)[:2 * n - 1]
    start = (n - 1) // 2
    out = full[start:start + n]
    out[np.abs(out) < 1e-12 * np.abs(out).max()] = 0.0  # the FFT's rounding where it is 0
    return out


@functools.cache
def _hat_projection_table() -> np.ndarray:
    """Tabulate K(u, s) by convolving two triangles on a fine grid (unit integral)."""
    h = 1.0 / 2048
    s_fine = np.arange(-2.0, 2.0 + h / 2, h)
    table = np.zeros((N_U, N_S), np.float64)
    s_out = np.linspace(-S_MAX, S_MAX, N_S)
    for iu, u in enumerate(np.linspace(0.0, 1.0, N_U)):
        m = 1.0 / math.sqrt(1.0 + u * u)
        lo = u * m
        tri_m = np.maximum(0.0, 1.0 - np.abs(s_fine) / m) / m
        if lo < 4 * h:
            k = tri_m
        else:
            tri_l = np.maximum(0.0, 1.0 - np.abs(s_fine) / lo) / lo
            k = _convolve_same(tri_m, tri_l) * h
        k = k / (k.sum() * h)
        table[iu] = np.interp(s_out, s_fine, k)
    return table.astype(np.float32)


def __getattr__(name: str) -> np.ndarray:
    if name == "KTABLE":  # computed on first use (0.7 s): reconstruction never needs it
        return _hat_projection_table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_finite(**values: object) -> None:
    """Raise :class:`InputError` unless every (float32) kernel argument is finite.

    Called by the Python wrappers before each kernel: geometry that passed the physical
    ranges of :mod:`oatomo._limits` always does; this is the last line of defence.
    """
    for name, v in values.items():
        if not np.all(np.isfinite(np.asarray(v, dtype=np.float32))):
            raise InputError(f"{name.replace('_', ' ')} is not finite in float32 (out of the "
                             f"physical range)")


N_CLASSES = 9  # kernel shapes used: table rows u = 0, 1/8, ..., 1


def radial_plan(dx: float, drho: float, n_edges: int) -> tuple[int, int, int, int]:
    """Fine radial binning used by the forward/adjoint kernels.

    Returns ``(k, J, P, M)``: ``k`` fine bins per edge spacing (bin ``delta = drho / k``
    at most ``dx / 8``), kernel half-length ``J`` in bins, padding ``P`` and total bins
    ``M``. Bin ``m`` sits at radius ``rho_0 + (m - P) * delta``; bins ``0`` and ``M - 1``
    collect pixels whose distance falls outside the record and are never read.
    """
    k = max(2, int(math.ceil(8.0 * drho / dx)))
    delta = drho / k
    J = int(math.ceil(math.sqrt(2.0) * dx / delta)) + 1
    P = J + 2
    M = k * (n_edges - 1) + 2 * P + 2
    return k, J, P, M


def radial_weights(dx: float, drho: float, n_edges: int) -> np.ndarray:
    """``W[c, j + J] = K(u_c, j * delta / dx)`` for ``j = -J..J``: the projected hat of
    class ``c`` sampled on the fine radial grid (float32, (N_CLASSES, 2J + 1))."""
    k, J, _, _ = radial_plan(dx, drho, n_edges)
    delta = drho / k
    s = np.arange(-J, J + 1) * delta / dx
    s_grid = np.linspace(-S_MAX, S_MAX, N_S)
    table = _hat_projection_table()
    rows = [table[round(c * (N_U - 1) / (N_CLASSES - 1))] for c in range(N_CLASSES)]
    return np.stack([np.interp(s, s_grid, r, left=0.0, right=0.0) for r in rows]).astype(
        np.float32)


def radial_taps(dx: float, drho: float, n_edges: int) -> np.ndarray:
    """The kernels' taps: :func:`radial_weights` reversed along the bins,
    ``T[c, q] = W[c, 2J - q]`` (contiguous float32, (N_CLASSES, 2J + 1)).

    Edge ``e`` reads (forward) and writes (adjoint) the fine bins ``k e + P - J + q``,
    ``q = 0..2J``, with weight ``T[c, q]``: both run forward in memory, so LLVM vectorises
    the tap loops (the adjoint's spreading was half its time with the weights indexed
    backwards).
    """
    return np.ascontiguousarray(radial_weights(dx, drho, n_edges)[:, ::-1])


@nb.njit(inline="always", fastmath=True, cache=True)
def _bins(xs, py, sx, sy, r0, inv_delta, m_hi, mbuf, fbuf, cbuf):
    """Fine radial bin, interpolation weight and kernel class of every pixel of a row.

    Shared by :func:`forward_edges` and :func:`adjoint_edges` so that they are exact
    transposes of each other. Gather-free, so LLVM vectorises it.
    """
    dy = abs(py - sy)
    z = np.float32(0.0)
    for j in range(xs.shape[0]):
        ddx = abs(xs[j] - sx)
        d = math.sqrt(ddx * ddx + dy * dy)
        hi = max(ddx, dy)
        lo = min(ddx, dy)
        u = lo / (hi + np.float32(1e-30))
        t = min(max((d - r0) * inv_delta, z), m_hi)
        # integer clamps too: they hold whatever fast-math does with NaN/Inf in ``t``
        m = min(max(np.int32(t), np.int32(0)), np.int32(m_hi))
        mbuf[j] = m
        fbuf[j] = t - np.float32(m)
        c = np.int32(u * np.float32(N_CLASSES - 1) + np.float32(0.5))
        cbuf[j] = min(max(c, np.int32(0)), np.int32(N_CLASSES - 1))


@nb.njit(inline="always", fastmath=True, cache=True)
def _sample_edges(hist, taps, k, P, orow):
    """``orow[e] += sum_q taps[c, q] hist[c, k e + P - J + q]`` over the classes ``c``:
    each class's fine radial histogram convolved with its kernel and read at the edges,
    only over the edges whose window meets the bins that class received. Shared by the
    forward kernels; :func:`_spread_edges` is its transpose."""
    n_cls, L = taps.shape
    J = (L - 1) // 2
    M = hist.shape[1]
    n_edges = orow.shape[0]
    for c in range(n_cls):
        h = hist[c]
        lo = 2  # bins 0, 1, M - 2, M - 1 only collect out-of-record pixels
        while lo < M - 2 and h[lo] == 0:
            lo += 1
        if lo == M - 2:
            continue
        hi_m = M - 3
        while h[hi_m] == 0:
            hi_m -= 1
        e_lo = max(0, (lo - P - J) // k)
        e_hi = min(n_edges - 1, (hi_m - P + J) // k + 1)
        w = taps[c]
        for e in range(e_lo, e_hi + 1):
            seg = h[k * e + P - J:k * e + P + J + 1]
            acc = np.float32(0.0)
            for q in range(L):
                acc += w[q] * seg[q]
            orow[e] += acc


@nb.njit(inline="always", fastmath=True, cache=True)
def _spread_edges(hs, taps, k, P, back):
    """``back[c, k e + P - J + q] += taps[c, q] hs[e]`` for every edge ``e`` and class
    ``c`` (``back`` zeroed by the caller): the transpose of :func:`_sample_edges`, shared
    by the adjoint kernels. The taps run forward in memory, so LLVM vectorises the loop."""
    n_cls, L = taps.shape
    J = (L - 1) // 2
    for e in range(hs.shape[0]):
        he = hs[e]
        if he == 0:
            continue
        lo = k * e + P - J
        for c in range(n_cls):
            b = back[c, lo:lo + L]
            w = taps[c]
            for q in range(L):
                b[q] += w[q] * he


@nb.njit(parallel=True, fastmath=True, cache=True)
def forward_edges(image, xs, ys, sensors, r0, inv_delta, k, P, taps, out):
    """``G[s, e] = sum_ij x_ij K_ij((rho_e - d_ij) / dx)`` into ``out`` (N, n_edges).

    Per sensor (in parallel): deposit each pixel into the fine radial histogram of its
    kernel class (linear split between two bins), then convolve each class with its
    kernel and sample at the edges (``taps`` from :func:`radial_taps`).
    """
    n_sens = sensors.shape[0]
    n_edges = out.shape[1]
    ny, nx = image.shape
    n_cls = taps.shape[0]
    M = k * (n_edges - 1) + 2 * P + 2
    m_hi = np.float32(M - 2)
    for s in nb.prange(n_sens):
        sx = sensors[s, 0]
        sy = sensors[s, 1]
        hist = np.zeros((n_cls, M), np.float32)
        mbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        cbuf = np.empty(nx, np.int32)
        for i in range(ny):
            _bins(xs, ys[i], sx, sy, r0, inv_delta, m_hi, mbuf, fbuf, cbuf)
            for j in range(nx):
                v = image[i, j]
                f = fbuf[j]
                h = hist[cbuf[j]]
                m = mbuf[j]
                h[m] += v - v * f
                h[m + 1] += v * f
        _sample_edges(hist, taps, k, P, out[s])


@nb.njit(parallel=True, fastmath=True, cache=True)
def adjoint_edges(h_edges, xs, ys, sensors, r0, inv_delta, k, P, taps, n_chunks, out):
    """Transpose of :func:`forward_edges`: ``out[c]`` (n_chunks, ny, nx) gets the
    contribution of the sensors of chunk ``c`` (in parallel); the caller sums the chunks."""
    n_sens = sensors.shape[0]
    n_edges = h_edges.shape[1]
    ny, nx = out.shape[1], out.shape[2]
    n_cls = taps.shape[0]
    M = k * (n_edges - 1) + 2 * P + 2
    m_hi = np.float32(M - 2)
    for ch in nb.prange(n_chunks):
        img = out[ch]
        back = np.zeros((n_cls, M), np.float32)
        mbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        cbuf = np.empty(nx, np.int32)
        for s in range(ch, n_sens, n_chunks):
            back[:] = 0
            hs = h_edges[s]
            _spread_edges(hs, taps, k, P, back)
            sx = sensors[s, 0]
            sy = sensors[s, 1]
            for i in range(ny):
                _bins(xs, ys[i], sx, sy, r0, inv_delta, m_hi, mbuf, fbuf, cbuf)
                row = img[i]
                for j in range(nx):
                    b = back[cbuf[j]]
                    m = mbuf[j]
                    f = fbuf[j]
                    row[j] += b[m] + f * (b[m + 1] - b[m])


@nb.njit(inline="always", fastmath=True, cache=True)
def _delays(xs, py, sx, sy, off, fs_over_c, hi, kbuf, fbuf):
    """Sample index and interpolation weight of every pixel of one row for one sensor.

    ``tau`` is clamped into the zero-padded record ``[0, sig..., 0, 0]``: delays
    outside the record read zeros. Kept free of gathers so that LLVM vectorises it.
    """
    dy = py - sy
    dy2 = dy * dy
    z = np.float32(0.0)
    for j in range(xs.shape[0]):
        ddx = xs[j] - sx
        tau = min(max(math.sqrt(ddx * ddx + dy2) * fs_over_c + off, z), hi)
        # integer clamp too: it holds whatever fast-math does with NaN/Inf in ``tau``
        k = min(max(np.int32(tau), np.int32(0)), np.int32(hi))
        kbuf[j] = k
        fbuf[j] = tau - np.float32(k)


@nb.njit(parallel=True, fastmath=True, cache=True)
def das(padded, xs, ys, sensors, weighted, normals, t0fs, fs_over_c, out):
    """Delay-and-sum with linear interpolation in time, added into ``out`` (ny, nx).

    ``padded`` is (N, T + 3) = ``[0, signal, 0, 0]`` per sensor. Rows of the image in
    parallel, then sensors, then pixels innermost (delays first, then the gathers). With
    ``weighted`` each sensor's term is multiplied by ``max(cos, 0) / distance`` (the
    in-plane solid-angle weight of universal backprojection).
    """
    n_sens = sensors.shape[0]
    hi = np.float32(padded.shape[1] - 2)
    ny, nx = out.shape
    off = np.float32(1.0) - t0fs
    for i in nb.prange(ny):
        py = ys[i]
        kbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        acc = np.zeros(nx, np.float32)
        for s in range(n_sens):
            sx = sensors[s, 0]
            sy = sensors[s, 1]
            _delays(xs, py, sx, sy, off, fs_over_c, hi, kbuf, fbuf)
            sig = padded[s]
            if weighted:
                nxs = normals[s, 0]
                nys = normals[s, 1]
                dy = py - sy
                for j in range(nx):
                    ddx = xs[j] - sx
                    d2 = ddx * ddx + dy * dy + np.float32(1e-30)
                    w = max((ddx * nxs + dy * nys) / d2, np.float32(0.0))
                    k = kbuf[j]
                    a = sig[k]
                    acc[j] += w * (a + fbuf[j] * (sig[k + 1] - a))
            else:
                for j in range(nx):
                    k = kbuf[j]
                    a = sig[k]
                    acc[j] += a + fbuf[j] * (sig[k + 1] - a)
        for j in range(nx):
            out[i, j] += acc[j]


@nb.njit(parallel=True, fastmath=True, cache=True)
def das_frames(padded_tf, xs, ys, sensors, t0fs, fs_over_c, out):
    """Multi-frame delay-and-sum: ``padded_tf`` (N, T + 3, F) zero-padded in time as in
    :func:`das`, ``out`` (ny, nx, F). Each delay is computed once for all frames."""
    n_sens = sensors.shape[0]
    hi = np.float32(padded_tf.shape[1] - 2)
    n_f = padded_tf.shape[2]
    ny, nx = out.shape[0], out.shape[1]
    off = np.float32(1.0) - t0fs
    for i in nb.prange(ny):
        py = ys[i]
        kbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        for s in range(n_sens):
            _delays(xs, py, sensors[s, 0], sensors[s, 1], off, fs_over_c, hi, kbuf, fbuf)
            sig = padded_tf[s]
            for j in range(nx):
                a = sig[kbuf[j]]
                b = sig[kbuf[j] + 1]
                f = fbuf[j]
                o = out[i, j]
                for fr in range(n_f):
                    o[fr] += a[fr] + f * (b[fr] - a[fr])


# ---------------------------------------------------------------------------------------
# Two speeds of sound (:class:`oatomo.speed_map.SpeedMap`): the same kernels with the
# pixel-sensor distance replaced by the equivalent distance ``c0 tau`` of the straight
# two-segment ray. ``region`` is ``[cx, cy, 1/rx, 1/ry, 1 - c0/c1]`` (float32). Without a
# map the kernels above run, unchanged.


@nb.njit(inline="always", fastmath=True, cache=True)
def _sensor_terms(sx, sy, region):
    """The sensor's position in the region's unit-circle coordinates, ``|a|^2 - 1``."""
    ax = (sx - region[0]) * region[2]
    ay = (sy - region[1]) * region[3]
    return ax, ay, ax * ax + ay * ay - np.float32(1.0)


@nb.njit(inline="always", fastmath=True, cache=True)
def _equivalent(ddx, ddy, d, ax, ay, qc, region):
    """``d - (1 - c0/c1) L_in``: ``(ddx, ddy)`` from the sensor to the pixel, ``d`` its
    length, ``L_in`` the part of that segment inside the ellipse (line-ellipse
    intersection ``|a + t b|^2 = 1``, ``t`` clipped to [0, 1]; branch-free)."""
    bx = ddx * region[2]
    by = ddy * region[3]
    qa = bx * bx + by * by + np.float32(1e-30)
    qb = ax * bx + ay * by
    sq = math.sqrt(max(qb * qb - qa * qc, np.float32(0.0)))
    inv = np.float32(1.0) / qa
    t1 = max((-qb - sq) * inv, np.float32(0.0))
    t2 = min((-qb + sq) * inv, np.float32(1.0))
    return d - region[4] * max(t2 - t1, np.float32(0.0)) * d


@nb.njit(inline="always", fastmath=True, cache=True)
def _bins_region(xs, py, sx, sy, r0, inv_delta, m_hi, region, ax, ay, qc, mbuf, fbuf, cbuf,
                 abuf):
    """:func:`_bins` at the equivalent distance of the two-speed medium, and each pixel's
    amplitude factor ``(de / d)^region[5]``, times ``region[6]`` inside the region (see
    :meth:`oatomo.speed_map.SpeedMap.kernel_params`)."""
    ddy = py - sy
    dy = abs(ddy)
    z = np.float32(0.0)
    one = np.float32(1.0)
    # the pixel's own position in the region's unit-circle coordinates
    ey = (py - region[1]) * region[3]
    ey2 = ey * ey
    for j in range(xs.shape[0]):
        sdx = xs[j] - sx
        ddx = abs(sdx)
        d = math.sqrt(ddx * ddx + dy * dy)
        hi = max(ddx, dy)
        lo = min(ddx, dy)
        u = lo / (hi + np.float32(1e-30))
        de = _equivalent(sdx, ddy, d, ax, ay, qc, region)
        t = min(max((de - r0) * inv_delta, z), m_hi)
        m = min(max(np.int32(t), np.int32(0)), np.int32(m_hi))
        mbuf[j] = m
        fbuf[j] = t - np.float32(m)
        c = np.int32(u * np.float32(N_CLASSES - 1) + np.float32(0.5))
        cbuf[j] = min(max(c, np.int32(0)), np.int32(N_CLASSES - 1))
        ratio = de / (d + np.float32(1e-30)) if d > 0 else one
        a = ratio if region[5] == one else math.sqrt(ratio)
        ex = (xs[j] - region[0]) * region[2]
        abuf[j] = a * region[6] if ex * ex + ey2 < one else a


@nb.njit(parallel=True, fastmath=True, cache=True)
def forward_edges_region(image, xs, ys, sensors, r0, inv_delta, k, P, taps, region, out):
    """:func:`forward_edges` in a two-speed medium (pixels binned by equivalent distance,
    each weighted by its amplitude factor, :func:`_bins_region`)."""
    n_sens = sensors.shape[0]
    n_edges = out.shape[1]
    ny, nx = image.shape
    n_cls = taps.shape[0]
    M = k * (n_edges - 1) + 2 * P + 2
    m_hi = np.float32(M - 2)
    for s in nb.prange(n_sens):
        sx = sensors[s, 0]
        sy = sensors[s, 1]
        ax, ay, qc = _sensor_terms(sx, sy, region)
        hist = np.zeros((n_cls, M), np.float32)
        mbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        cbuf = np.empty(nx, np.int32)
        abuf = np.empty(nx, np.float32)
        for i in range(ny):
            _bins_region(xs, ys[i], sx, sy, r0, inv_delta, m_hi, region, ax, ay, qc,
                         mbuf, fbuf, cbuf, abuf)
            for j in range(nx):
                v = image[i, j] * abuf[j]
                f = fbuf[j]
                h = hist[cbuf[j]]
                m = mbuf[j]
                h[m] += v - v * f
                h[m + 1] += v * f
        _sample_edges(hist, taps, k, P, out[s])


@nb.njit(parallel=True, fastmath=True, cache=True)
def adjoint_edges_region(h_edges, xs, ys, sensors, r0, inv_delta, k, P, taps, region,
                         n_chunks, out):
    """Transpose of :func:`forward_edges_region` (chunks of sensors as in
    :func:`adjoint_edges`)."""
    n_sens = sensors.shape[0]
    n_edges = h_edges.shape[1]
    ny, nx = out.shape[1], out.shape[2]
    n_cls = taps.shape[0]
    M = k * (n_edges - 1) + 2 * P + 2
    m_hi = np.float32(M - 2)
    for ch in nb.prange(n_chunks):
        img = out[ch]
        back = np.zeros((n_cls, M), np.float32)
        mbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        cbuf = np.empty(nx, np.int32)
        abuf = np.empty(nx, np.float32)
        for s in range(ch, n_sens, n_chunks):
            back[:] = 0
            hs = h_edges[s]
            _spread_edges(hs, taps, k, P, back)
            sx = sensors[s, 0]
            sy = sensors[s, 1]
            ax, ay, qc = _sensor_terms(sx, sy, region)
            for i in range(ny):
                _bins_region(xs, ys[i], sx, sy, r0, inv_delta, m_hi, region, ax, ay, qc,
                             mbuf, fbuf, cbuf, abuf)
                row = img[i]
                for j in range(nx):
                    b = back[cbuf[j]]
                    m = mbuf[j]
                    f = fbuf[j]
                    row[j] += abuf[j] * (b[m] + f * (b[m + 1] - b[m]))


@nb.njit(inline="always", fastmath=True, cache=True)
def _delays_region(xs, py, sx, sy, off, fs_over_c, hi, region, ax, ay, qc, kbuf, fbuf):
    """:func:`_delays` at the two-speed time of flight (``fs_over_c`` with ``c0``)."""
    dy = py - sy
    dy2 = dy * dy
    z = np.float32(0.0)
    for j in range(xs.shape[0]):
        ddx = xs[j] - sx
        d = math.sqrt(ddx * ddx + dy2)
        de = _equivalent(ddx, dy, d, ax, ay, qc, region)
        tau = min(max(de * fs_over_c + off, z), hi)
        k = min(max(np.int32(tau), np.int32(0)), np.int32(hi))
        kbuf[j] = k
        fbuf[j] = tau - np.float32(k)


@nb.njit(parallel=True, fastmath=True, cache=True)
def das_region(padded, xs, ys, sensors, weighted, normals, t0fs, fs_over_c, region, out):
    """:func:`das` with the two-speed times of flight (the UBP weight along the straight
    ray, as in the homogeneous medium)."""
    n_sens = sensors.shape[0]
    hi = np.float32(padded.shape[1] - 2)
    ny, nx = out.shape
    off = np.float32(1.0) - t0fs
    for i in nb.prange(ny):
        py = ys[i]
        kbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        acc = np.zeros(nx, np.float32)
        for s in range(n_sens):
            sx = sensors[s, 0]
            sy = sensors[s, 1]
            ax, ay, qc = _sensor_terms(sx, sy, region)
            _delays_region(xs, py, sx, sy, off, fs_over_c, hi, region, ax, ay, qc, kbuf, fbuf)
            sig = padded[s]
            if weighted:
                nxs = normals[s, 0]
                nys = normals[s, 1]
                dy = py - sy
                for j in range(nx):
                    ddx = xs[j] - sx
                    d2 = ddx * ddx + dy * dy + np.float32(1e-30)
                    w = max((ddx * nxs + dy * nys) / d2, np.float32(0.0))
                    k = kbuf[j]
                    a = sig[k]
                    acc[j] += w * (a + fbuf[j] * (sig[k + 1] - a))
            else:
                for j in range(nx):
                    k = kbuf[j]
                    a = sig[k]
                    acc[j] += a + fbuf[j] * (sig[k + 1] - a)
        for j in range(nx):
            out[i, j] += acc[j]


@nb.njit(parallel=True, fastmath=True, cache=True)
def das_frames_region(padded_tf, xs, ys, sensors, t0fs, fs_over_c, region, out):
    """:func:`das_frames` with the two-speed times of flight."""
    n_sens = sensors.shape[0]
    hi = np.float32(padded_tf.shape[1] - 2)
    n_f = padded_tf.shape[2]
    ny, nx = out.shape[0], out.shape[1]
    off = np.float32(1.0) - t0fs
    for i in nb.prange(ny):
        py = ys[i]
        kbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        for s in range(n_sens):
            sx = sensors[s, 0]
            sy = sensors[s, 1]
            ax, ay, qc = _sensor_terms(sx, sy, region)
            _delays_region(xs, py, sx, sy, off, fs_over_c, hi, region, ax, ay, qc, kbuf, fbuf)
            sig = padded_tf[s]
            for j in range(nx):
                a = sig[kbuf[j]]
                b = sig[kbuf[j] + 1]
                f = fbuf[j]
                o = out[i, j]
                for fr in range(n_f):
                    o[fr] += a[fr] + f * (b[fr] - a[fr])


@nb.njit(parallel=True, fastmath=True, cache=True)
def view_harmonics(sx, sy, xs, ys, out):
    """Mean cos/sin of 2 and 4 times the direction from pixel (ys[i], xs[j]) to each
    sensor (sx, sy), into ``out`` (4, ny, nx) (:func:`oatomo.refine.view.view_channels`)."""
    n_sens = sx.shape[0]
    inv = 1.0 / max(n_sens, 1)
    for i in nb.prange(ys.shape[0]):
        py = ys[i]
        for j in range(xs.shape[0]):
            px = xs[j]
            c2 = 0.0
            s2 = 0.0
            c4 = 0.0
            s4 = 0.0
            for s in range(n_sens):
                dx = sx[s] - px
                dy = sy[s] - py
                r2 = dx * dx + dy * dy
                if r2 > 0.0:
                    c = (dx * dx - dy * dy) / r2
                    d = 2.0 * dx * dy / r2
                    c2 += c
                    s2 += d
                    c4 += c * c - d * d
                    s4 += 2.0 * c * d
            out[0, i, j] = c2 * inv
            out[1, i, j] = s2 * inv
            out[2, i, j] = c4 * inv
            out[3, i, j] = s4 * inv
