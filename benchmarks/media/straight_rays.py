"""When do straight rays stop being adequate? Travel-time error of the straight two-segment
ray against the refracted (Fermat) ray, and Snell bending, for a disc in water.

Disc of radius 9 mm centred in a 30 mm ring, water 1500 m/s, contrast ``c1 / c0`` 1.03 and
1.1: 400 random (source inside the disc, sensor on the ring) pairs per contrast; the
refracted time is the minimum over 20,001 boundary crossing points of
``|s - q| / c0 + |q - p| / c1`` (Fermat's principle; straight-ray time minus it is >= 0).

With ``--fit``: how far refraction alone biases a straight-ray estimate of the disc's
speed on the k-Wave two-speed scans of ``kwave_check.py`` (64-sensor ring r 21 mm, disc r
9 mm at 1540 or 1580 m/s, the vessel tree seed 3100 of ``out/kwave/phantoms.npz``): the
refracted times from 400 tree pixels inside the disc (weighted by p0) to the 64 sensors,
and the straight-ray ``(c1, R)`` (and ``c1`` with ``R`` fixed) that fits them best in
least squares.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/media/straight_rays.py
    PYTHONPATH=. .venv/bin/python benchmarks/media/straight_rays.py --fit
"""

from __future__ import annotations

import math

import numpy as np

from oatomo.speed_map import SpeedMap, ray_bending

R, C0, RING = 9e-3, 1500.0, 30e-3


def main() -> None:
    phi = np.linspace(0, 2 * np.pi, 20001)
    q = R * np.stack([np.cos(phi), np.sin(phi)], -1)
    rng = np.random.default_rng(0)
    for ratio in (1.03, 1.1):
        m = SpeedMap(C0, C0 * ratio, R)
        errs = []
        for _ in range(400):
            r, a = R * math.sqrt(rng.uniform(0, 0.98)), rng.uniform(0, 2 * np.pi)
            p = np.array([r * math.cos(a), r * math.sin(a)])
            th = rng.uniform(0, 2 * np.pi)
            s = RING * np.array([math.cos(th), math.sin(th)])
            t_fermat = (np.linalg.norm(q - s, axis=1) / C0
                        + np.linalg.norm(q - p, axis=1) / m.c1).min()
            errs.append(m.travel_time(p, s) - t_fermat)
        e = 1e9 * np.percentile(errs, [50, 95, 100])
        bend = [round(math.degrees(ray_bending(ratio, b)), 2) for b in (0.5, 0.8, 0.9)]
        print(f"c1/c0 = {ratio}: straight-ray time error median {e[0]:.2f} ns, 95 % "
              f"{e[1]:.2f} ns, max {e[2]:.2f} ns (x c0: {e[2] * 1e-9 * C0 * 1e6:.0f} um); "
              f"bending at b/R = 0.5, 0.8, 0.9: {bend} deg; total reflection beyond "
              f"b/R = {1 / ratio:.3f}")


def fit_to_refracted(phantom: str = "out/kwave/phantoms.npz") -> None:
    """The straight-ray disc that best fits refracted times (see the module docstring)."""
    from scipy.optimize import least_squares  # lazy: only this mode

    p0 = np.load(phantom)["vessels_3100"]
    n, dx, radius, ring = p0.shape[0], 0.075e-3, 9e-3, 21e-3
    x = (np.arange(n) - (n - 1) / 2) * dx
    X, Y = np.meshgrid(x, x)  # oatomo's [row = y, column = x]
    idx = np.flatnonzero((p0 > 0.1 * p0.max()) & (X ** 2 + Y ** 2 < (0.97 * radius) ** 2))
    idx = np.random.default_rng(0).choice(idx, min(400, len(idx)), replace=False)
    P, w = np.stack([X.ravel()[idx], Y.ravel()[idx]], 1), np.sqrt(p0.ravel()[idx])[:, None]
    th = np.arange(64) * 2 * np.pi / 64
    S = ring * np.stack([np.cos(th), np.sin(th)], 1)
    phi = np.linspace(0, 2 * np.pi, 8001)
    Q = radius * np.stack([np.cos(phi), np.sin(phi)], 1)
    to_sensor = np.linalg.norm(Q[None] - S[:, None], axis=2) / C0  # (sensors, crossings)
    for c1 in (1540.0, 1580.0):
        fermat = np.stack([(to_sensor + np.linalg.norm(Q - p, axis=1)[None] / c1).min(1)
                           for p in P])

        def straight(c: float, r: float) -> np.ndarray:
            m = SpeedMap(C0, c, r)
            return np.stack([m.travel_time(P, s) for s in S], 1)

        err = 1e9 * (straight(c1, radius) - fermat)
        def residual(v: np.ndarray, fermat: np.ndarray = fermat) -> np.ndarray:
            r = v[1] * 1e-3 if len(v) > 1 else radius
            return (1e9 * w * (straight(v[0], r) - fermat)).ravel()

        both = least_squares(residual, [c1, radius * 1e3], x_scale=[10, 0.5]).x
        one = least_squares(residual, [c1], x_scale=[10]).x
        print(f"c1 = {c1:g} m/s: straight-ray time error median {np.median(err):.2f} ns, "
              f"95 % {np.percentile(err, 95):.2f} ns, max {err.max():.2f} ns; best straight "
              f"ray: c1 {both[0]:.2f} m/s ({100 * (both[0] / c1 - 1):+.3f} %), R "
              f"{both[1]:.3f} mm; R fixed: c1 {one[0]:.2f} m/s "
              f"({100 * (one[0] / c1 - 1):+.3f} %)")


if __name__ == "__main__":
    import sys

    fit_to_refracted() if "--fit" in sys.argv[1:] else main()
