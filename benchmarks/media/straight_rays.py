"""When do straight rays stop being adequate? Travel-time error of the straight two-segment
ray against the refracted (Fermat) ray, and Snell bending, for a disc in water.

Disc of radius 9 mm centred in a 30 mm ring, water 1500 m/s, contrast ``c1 / c0`` 1.03 and
1.1: 400 random (source inside the disc, sensor on the ring) pairs per contrast; the
refracted time is the minimum over 20,001 boundary crossing points of
``|s - q| / c0 + |q - p| / c1`` (Fermat's principle; straight-ray time minus it is >= 0).

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/media/straight_rays.py
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


if __name__ == "__main__":
    main()
