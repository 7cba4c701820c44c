"""Numba kernels: forward model, its adjoint, delay-and-sum.

Pixel model
-----------
The image is expanded in the bilinear (hat) basis of the grid. A sensor is far from a
pixel compared with the pixel size (the sagitta of a 22 mm circle over 0.1 mm is 0.2 um),
so the integral of one basis function over a circle of radius rho around the sensor is the
Radon projection of the hat, ``dx * K(u, (rho - d) / dx)``, where ``d`` is the pixel-sensor
distance and ``K`` the density of ``a (U1 + U2) + b (U3 + U4)`` with ``Ui ~ U(-1/2, 1/2)``,
``a = |cos theta|``, ``b = |sin theta|`` (theta: direction from sensor to pixel). ``K`` is
tabulated over ``u = min(a, b) / max(a, b)`` and the offset, and interpolated bilinearly.

Forward model (SCIENCE.md section 4)::

    F(t) = h / (4 pi c^2) / t * sum_ij x_ij dx K_ij(c t - d_ij)     (F = integral of p)
    p_k  = (F(t_k + dt/2) - F(t_k - dt/2)) / dt

so the running sum of ``p * dt`` equals ``F`` at the sample's upper edge exactly.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# ---------------------------------------------------------------------------------------
# The projected-hat table K(u, s): u in [0, 1] (N_U rows), s in [-S_MAX, S_MAX] (N_S cols).
N_U = 65
S_MAX = 1.5
N_S = 385  # spacing 1/128 pixel
_S_STEP = 2 * S_MAX / (N_S - 1)


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
            k = np.convolve(tri_m, tri_l, mode="same") * h
        k = k / (k.sum() * h)
        table[iu] = np.interp(s_out, s_fine, k)
    return table.astype(np.float32)


KTABLE = _hat_projection_table()


@nb.njit(inline="always", fastmath=True, cache=True)
def _pair(px, py, sx, sy):
    """Distance, table row position and half-width (pixels) of one pixel-sensor pair."""
    ddx = abs(px - sx)
    ddy = abs(py - sy)
    d = math.sqrt(ddx * ddx + ddy * ddy)
    hi = max(ddx, ddy)
    lo = min(ddx, ddy)
    u = lo / hi if hi > 0 else np.float32(0.0)
    # half-width of the projected hat in pixels: a + b with a^2 + b^2 = 1
    half = (hi + lo) / d if d > 0 else np.float32(1.0)
    return d, u, half


@nb.njit(inline="always", fastmath=True, cache=True)
def _kval(table, uf, s):
    """Bilinear lookup of K(u, s); ``uf`` is the fractional row index u * (N_U - 1)."""
    sf = (s + np.float32(S_MAX)) * np.float32(1.0 / _S_STEP)
    if sf <= 0 or sf >= N_S - 1:
        return np.float32(0.0)
    iu = min(int(uf), N_U - 2)
    fu = uf - iu
    i_s = int(sf)
    fs = sf - i_s
    k0 = table[iu, i_s] + fs * (table[iu, i_s + 1] - table[iu, i_s])
    k1 = table[iu + 1, i_s] + fs * (table[iu + 1, i_s + 1] - table[iu + 1, i_s])
    return k0 + fu * (k1 - k0)


@nb.njit(inline="always", fastmath=True, cache=True)
def _edge_range(d, half, dx, rho0, drho, n_edges):
    """Edges e (rho_e = rho0 + e * drho) whose offset (rho_e - d) / dx lies in the kernel."""
    lo = (d - half * dx - rho0) / drho
    hi = (d + half * dx - rho0) / drho
    e0 = max(int(math.ceil(lo)), 0)
    e1 = min(int(math.floor(hi)), n_edges - 1)
    return e0, e1


@nb.njit(parallel=True, fastmath=True, cache=True)
def forward_edges(image, xs, ys, sensors, rho0, drho, dx, table, out):
    """Accumulate ``G[s, e] = sum_ij x_ij K_ij((rho_e - d_ij) / dx)`` (``out`` zeroed).

    Parallel over sensors: each thread owns whole rows of ``out``.
    """
    n_sens = sensors.shape[0]
    n_edges = out.shape[1]
    ny, nx = image.shape
    inv_dx = np.float32(1.0) / dx
    for s in nb.prange(n_sens):
        sx = sensors[s, 0]
        sy = sensors[s, 1]
        row = out[s]
        for i in range(ny):
            py = ys[i]
            for j in range(nx):
                v = image[i, j]
                if v == 0:
                    continue
                d, u, half = _pair(xs[j], py, sx, sy)
                uf = u * np.float32(N_U - 1)
                e0, e1 = _edge_range(d, half, dx, rho0, drho, n_edges)
                for e in range(e0, e1 + 1):
                    sv = (rho0 + e * drho - d) * inv_dx
                    row[e] += v * _kval(table, uf, sv)


@nb.njit(parallel=True, fastmath=True, cache=True)
def adjoint_edges(h_edges, xs, ys, sensors, rho0, drho, dx, table, out):
    """``out[i, j] = sum_s sum_e H[s, e] K_ij((rho_e - d_ij) / dx)``; parallel over rows."""
    n_sens = sensors.shape[0]
    n_edges = h_edges.shape[1]
    ny, nx = out.shape
    inv_dx = np.float32(1.0) / dx
    for i in nb.prange(ny):
        py = ys[i]
        for j in range(nx):
            px = xs[j]
            acc = np.float32(0.0)
            for s in range(n_sens):
                d, u, half = _pair(px, py, sensors[s, 0], sensors[s, 1])
                uf = u * np.float32(N_U - 1)
                e0, e1 = _edge_range(d, half, dx, rho0, drho, n_edges)
                for e in range(e0, e1 + 1):
                    sv = (rho0 + e * drho - d) * inv_dx
                    acc += h_edges[s, e] * _kval(table, uf, sv)
            out[i, j] = acc


@nb.njit(parallel=True, fastmath=True, cache=True)
def das(sino_padded, xs, ys, sensors, weights_flag, normals, t0fs, fs_over_c, out):
    """Delay-and-sum with linear interpolation in time.

    ``sino_padded`` is (N, T + 2) with two trailing zeros; delays outside the record read
    them. Rows of the image in parallel, then sensors, then pixels innermost. With
    ``weights_flag`` each sensor's term is weighted by ``cos / distance`` (the in-plane
    solid-angle weight of universal backprojection, see :mod:`oatomo.recon`).
    """
    n_sens = sensors.shape[0]
    n_t = sino_padded.shape[1] - 2
    ny, nx = out.shape
    last = np.float32(n_t - 1)
    for i in nb.prange(ny):
        py = ys[i]
        orow = out[i]
        for s in range(n_sens):
            sx = sensors[s, 0]
            dy = py - sensors[s, 1]
            dy2 = dy * dy
            sig = sino_padded[s]
            if weights_flag:
                nxs = normals[s, 0]
                nys = normals[s, 1]
                for j in range(nx):
                    ddx = xs[j] - sx
                    d = math.sqrt(ddx * ddx + dy2)
                    tau = d * fs_over_c - t0fs
                    ok = (tau >= 0) & (tau < last)
                    k = int(tau) if ok else n_t
                    f = tau - k if ok else np.float32(0.0)
                    v = sig[k] + f * (sig[k + 1] - sig[k])
                    cosw = (ddx * nxs + dy * nys) / (d * d + np.float32(1e-30))
                    orow[j] += v * max(cosw, np.float32(0.0))
            else:
                for j in range(nx):
                    ddx = xs[j] - sx
                    d = math.sqrt(ddx * ddx + dy2)
                    tau = d * fs_over_c - t0fs
                    ok = (tau >= 0) & (tau < last)
                    k = int(tau) if ok else n_t
                    f = tau - k if ok else np.float32(0.0)
                    orow[j] += sig[k] + f * (sig[k + 1] - sig[k])


@nb.njit(parallel=True, fastmath=True, cache=True)
def das_frames(sino_tf, xs, ys, sensors, t0fs, fs_over_c, out):
    """Multi-frame delay-and-sum: ``sino_tf`` (N, T + 2, F) with zero padding in time,
    ``out`` (ny, nx, F). Each delay and weight is computed once for all frames."""
    n_sens = sensors.shape[0]
    n_t = sino_tf.shape[1] - 2
    n_f = sino_tf.shape[2]
    ny, nx = out.shape[0], out.shape[1]
    last = np.float32(n_t - 1)
    for i in nb.prange(ny):
        py = ys[i]
        for s in range(n_sens):
            sx = sensors[s, 0]
            dy = py - sensors[s, 1]
            dy2 = dy * dy
            sig = sino_tf[s]
            for j in range(nx):
                ddx = xs[j] - sx
                d = math.sqrt(ddx * ddx + dy2)
                tau = d * fs_over_c - t0fs
                ok = (tau >= 0) & (tau < last)
                k = int(tau) if ok else n_t
                f = tau - k if ok else np.float32(0.0)
                a = sig[k]
                b = sig[k + 1]
                o = out[i, j]
                for fr in range(n_f):
                    o[fr] += a[fr] + f * (b[fr] - a[fr])
