"""Numba kernels of the volume model: radial histograms, their transpose, delay-and-sum.

Every kernel is float32, parallel and allocates its per-thread row buffers once per chunk
of work, never inside the voxel loops. A volume is walked row by row (a row is the ``nx``
voxels ``vol[k, i, :]``): per row and sensor, one vectorisable pass computes distances
(bins or sample indices and interpolation weights) into the buffers, a second pass
scatters or gathers. Delay-and-sum takes blocks of rows per sensor, and each sample with
its forward difference as one complex64, so that its gather is one load per voxel.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["radial_histograms", "sample_edges", "spread_edges", "gather_histograms",
           "das_volume", "interpolation_pairs"]


@nb.njit(inline="always", fastmath=True, cache=True)
def _bins(xs, dyz2, sx, r0, inv_delta, m_hi, mbuf, fbuf):  # pragma: no cover - compiled
    """Fine radial bin and linear weight of each voxel of a row for one sensor."""
    z = np.float32(0.0)
    for j in range(xs.shape[0]):
        ddx = xs[j] - sx
        t = min(max((math.sqrt(ddx * ddx + dyz2) - r0) * inv_delta, z), m_hi)
        # integer clamps too: they hold whatever fast-math does with NaN/Inf in ``t``
        m = min(max(np.int32(t), np.int32(0)), np.int32(m_hi))
        mbuf[j] = m
        fbuf[j] = t - np.float32(m)


@nb.njit(parallel=True, fastmath=True, cache=True)
def radial_histograms(vol, rows, xs, ys, zs, sensors, r0, inv_delta, n_chunks, hist):
    """``hist[s, m] += sum`` of the voxels whose distance to sensor ``s`` falls next to
    fine bin ``m`` (linear split between the two bins around it).

    ``rows`` lists the flat row indices ``k * ny + i`` to visit (rows that hold a
    non-zero voxel); sensors are split over ``n_chunks`` parallel chunks.
    """
    n_s = sensors.shape[0]
    ny, nx = vol.shape[1], vol.shape[2]
    m_hi = np.float32(hist.shape[1] - 2)
    for ch in nb.prange(n_chunks):
        mbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        for s in range(ch, n_s, n_chunks):
            sx = sensors[s, 0]
            sy = sensors[s, 1]
            sz = sensors[s, 2]
            h = hist[s]
            for r in rows:
                kz = r // ny
                i = r - kz * ny
                dy = ys[i] - sy
                dz = zs[kz] - sz
                _bins(xs, dy * dy + dz * dz, sx, r0, inv_delta, m_hi, mbuf, fbuf)
                row = vol[kz, i]
                for j in range(nx):
                    v = row[j]
                    f = fbuf[j]
                    m = mbuf[j]
                    h[m] += v - v * f
                    h[m + 1] += v * f


@nb.njit(parallel=True, fastmath=True, cache=True)
def sample_edges(hist, taps, k, P, out):
    """``out[s, e] = sum_q taps[q] hist[s, k e + P - J + q]``: each histogram convolved
    with the radial kernel and read at the edge radii (bin ``k e + P``); ``taps`` is the
    kernel reversed (contiguous: the tap loop runs forward in memory and vectorises)."""
    n_s, n_edges = out.shape
    L = taps.shape[0]
    J = (L - 1) // 2
    for s in nb.prange(n_s):
        h = hist[s]
        o = out[s]
        for e in range(n_edges):
            seg = h[k * e + P - J:k * e + P + J + 1]
            acc = np.float32(0.0)
            for q in range(L):
                acc += taps[q] * seg[q]
            o[e] = acc


@nb.njit(parallel=True, fastmath=True, cache=True)
def spread_edges(h_edges, taps, k, P, back):
    """Transpose of :func:`sample_edges`: ``back[s, k e + P - J + q] += taps[q]
    h_edges[s, e]`` (``back`` zeroed by the caller)."""
    n_s, n_edges = h_edges.shape
    L = taps.shape[0]
    J = (L - 1) // 2
    for s in nb.prange(n_s):
        hs = h_edges[s]
        for e in range(n_edges):
            he = hs[e]
            if he == 0:
                continue
            b = back[s, k * e + P - J:k * e + P + J + 1]
            for q in range(L):
                b[q] += taps[q] * he


@nb.njit(parallel=True, fastmath=True, cache=True)
def gather_histograms(back, xs, ys, zs, sensors, r0, inv_delta, n_chunks, out):
    """Transpose of :func:`radial_histograms`: every voxel of ``out`` (nz, ny, nx) gets
    ``sum_s (1 - f) back[s, m] + f back[s, m + 1]`` at its bin ``m`` and weight ``f``.
    Contiguous blocks of rows in parallel; each row is written by one chunk only."""
    n_s = sensors.shape[0]
    nz, ny, nx = out.shape
    n_rows = nz * ny
    m_hi = np.float32(back.shape[1] - 2)
    per = (n_rows + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        mbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        for r in range(ch * per, min(n_rows, (ch + 1) * per)):
            kz = r // ny
            i = r - kz * ny
            acc = out[kz, i]
            for s in range(n_s):
                dy = ys[i] - sensors[s, 1]
                dz = zs[kz] - sensors[s, 2]
                _bins(xs, dy * dy + dz * dz, sensors[s, 0], r0, inv_delta, m_hi, mbuf, fbuf)
                b = back[s]
                for j in range(nx):
                    m = mbuf[j]
                    a = b[m]
                    acc[j] += a + fbuf[j] * (b[m + 1] - a)


@nb.njit(inline="always", fastmath=True, cache=True)
def _delays(xs, dyz2, sx, off, fs_over_c, hi, kbuf, fbuf):  # pragma: no cover - compiled
    """Sample index and weight of each voxel of a row in the record ``[0, sig, 0, 0]``."""
    z = np.float32(0.0)
    for j in range(xs.shape[0]):
        ddx = xs[j] - sx
        tau = min(max(math.sqrt(ddx * ddx + dyz2) * fs_over_c + off, z), hi)
        k = np.int32(tau)  # in [0, hi]: tau is clamped (the inputs are checked finite)
        kbuf[j] = k
        fbuf[j] = tau - np.float32(k)


@nb.njit(parallel=True, fastmath=True, cache=True)
def interpolation_pairs(signals, pairs):  # pragma: no cover - compiled
    """Each sample of ``[0, signal, 0, 0]`` with its forward difference, as one complex64.

    ``signals`` is (N, T) (float64 values are rounded to float32 first); ``pairs``
    (N, T + 3) complex64 receives
    ``q[k] + 1j * (q[k + 1] - q[k])`` with ``q = [0, signal, 0, 0]`` (0 in the last
    column), so that linear interpolation at ``k + f`` is ``p.real + f * p.imag`` from one
    8-byte load instead of two 4-byte ones (the same float32 operations, so the same
    values), without a padded float copy of the signals.
    """
    n_s, n_t = signals.shape
    z = np.float32(0.0)
    for s in nb.prange(n_s):
        q = signals[s]
        p = pairs[s]
        prev = z
        for k in range(n_t + 3):
            cur = np.float32(q[k - 1]) if 1 <= k <= n_t else z
            if k > 0:
                p[k - 1] = complex(prev, cur - prev)
            prev = cur
        p[n_t + 2] = complex(z, z)


@nb.njit(parallel=True, fastmath=True, cache=True)
def das_volume(pairs, owner, xs, ys, zs, sensors, normals, areas, scale, weighted, t0fs,
               fs_over_c, rows_per_block, num):
    """Delay-and-sum into ``num`` (nz, ny, nx), linear interpolation in time.

    ``pairs`` is (N, T + 3), :func:`interpolation_pairs` of each sensor's signal; point
    ``s`` (of ``sensors``, ``normals``, ``areas``, ``scale``) backprojects the signal
    ``pairs[owner[s]]`` (several points per signal: a finite element's face).
    Without ``weighted`` each term is multiplied by ``scale[s]``; with it, by the
    solid-angle weight ``a_s max(cos theta, 0) / d^2`` of universal backprojection, and
    the sum is divided by the sum of the weights (0 where no sensor faces the voxel).
    Blocks of ``rows_per_block`` rows in parallel; within a block, sensors (two at a time
    without weights), then the block's rows, then the voxels of the row, so that the
    part of a signal one sensor gives a block stays in cache while all its rows read it.
    """
    n_s = sensors.shape[0]
    hi = np.float32(pairs.shape[1] - 2)
    nz, ny, nx = num.shape
    n_rows = nz * ny
    rb = rows_per_block
    off = np.float32(1.0) - t0fs
    n_blocks = (n_rows + rb - 1) // rb
    tiny = np.float32(1e-30)
    for b in nb.prange(n_blocks):
        kbuf = np.empty(nx, np.int32)
        fbuf = np.empty(nx, np.float32)
        kbuf2 = np.empty(nx, np.int32)
        fbuf2 = np.empty(nx, np.float32)
        wbuf = np.empty(nx, np.float32)
        acc = np.zeros((rb, nx), np.float32)
        wacc = np.zeros((rb, nx), np.float32)
        r0 = b * rb
        r1 = min(n_rows, r0 + rb)
        # without weights, two sensors per pass: one update of the row per two terms (an
        # odd count's last pass adds its sensor a second time with weight 0: exact)
        step = 1 if weighted else 2
        for s in range(0, n_s, step):
            sx = sensors[s, 0]
            sig = pairs[owner[s]]
            c_s = scale[s]
            t = min(s + 1, n_s - 1)  # the pass's second sensor (unweighted)
            sig2 = pairs[owner[t]]
            c_t = scale[t] if t > s else np.float32(0.0)
            for r in range(r0, r1):
                kz = r // ny
                i = r - kz * ny
                dy = ys[i] - sensors[s, 1]
                dz = zs[kz] - sensors[s, 2]
                dyz2 = dy * dy + dz * dz
                _delays(xs, dyz2, sx, off, fs_over_c, hi, kbuf, fbuf)
                a_r = acc[r - r0]
                if weighted:
                    w_r = wacc[r - r0]
                    nxs = normals[s, 0]
                    pdot = dy * normals[s, 1] + dz * normals[s, 2]
                    a_s = areas[s]
                    for j in range(nx):
                        ddx = xs[j] - sx
                        inv = np.float32(1.0) / math.sqrt(ddx * ddx + dyz2 + tiny)
                        wbuf[j] = max(ddx * nxs + pdot, np.float32(0.0)) * (a_s * inv * inv * inv)
                    for j in range(nx):
                        v = sig[kbuf[j]]
                        w = wbuf[j]
                        a_r[j] += w * (v.real + fbuf[j] * v.imag)
                        w_r[j] += w
                else:
                    dy = ys[i] - sensors[t, 1]
                    dz = zs[kz] - sensors[t, 2]
                    _delays(xs, dy * dy + dz * dz, sensors[t, 0], off, fs_over_c, hi, kbuf2,
                            fbuf2)
                    for j in range(nx):
                        v = sig[kbuf[j]]
                        u = sig2[kbuf2[j]]
                        a_r[j] += (c_s * (v.real + fbuf[j] * v.imag)
                                   + c_t * (u.real + fbuf2[j] * u.imag))
        for r in range(r0, r1):
            kz = r // ny
            i = r - kz * ny
            o = num[kz, i]
            a_r = acc[r - r0]
            if weighted:
                w_r = wacc[r - r0]
                for j in range(nx):
                    o[j] = a_r[j] / w_r[j] if w_r[j] > 0 else np.float32(0.0)
            else:
                for j in range(nx):
                    o[j] = a_r[j]
