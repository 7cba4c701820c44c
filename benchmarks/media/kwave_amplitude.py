"""Why k-Wave's amplitudes are 5-7 % below oatomo's two-speed model on the fixture's disc
scan (``tests/data/kwave_2d_ring16.npz``): k-Wave's numerics, refraction, the impedance
step, or the straight-ray model's own amplitudes?

Every k-Wave run is the fixture's (``kwave_fixture.py``: three Gaussian blobs on 128 x 128
at 0.1 mm, a 256 x 256 k-Wave grid, 16 point sensors on a 10 mm ring, 20 MHz, k-Wave's
time step 12.5 ns, 2-D, NumPy backend) with one change each:

``water_far_voxel``
    water, and one voxel at 1545 m/s at (11, 11) mm, outside the ring (k-Wave's reference
    speed becomes 1545 m/s; the voxel's own scattering is far too weak to matter);
``disc_fine_dt``
    the disc scan (radius 3 mm at 1545 m/s around the centre) at half the time step;
``uniform_1545``
    water at 1545 m/s everywhere (no interface);
``disc_matched``
    the disc with density ``1000 * 1500 / 1545`` inside, so its impedance is the water's
    (no reflection; refraction unchanged);
``disc_aside``
    the disc moved to (5.5, 0) mm with radius 2.5 mm: every blob is in the water; the
    rays of the sensors on the +x side cross the disc (refraction; the two impedance
    steps cancel to 0.9998), the others miss it.

``evaluate`` (oatomo's environment; ``amplitude.json``) compares each with oatomo's
line-source model
(``medium="2d"``) with the matching :class:`oatomo.SpeedMap` (straight two-segment rays,
the amplitudes of the homogeneous model at the same time of flight): per sensor, the
least-squares amplitude ``<y, k> / <y, y>`` of k-Wave's signal ``k`` on oatomo's ``y``
and the correlation; plus the model-only check (no k-Wave): oatomo with one speed of
1545 m/s against oatomo's two-speed model with a region of 1545 m/s covering every
blob (9.5 mm disc), i.e. the same medium around the sources; and a prediction per
sensor from Snell ray tracing (:func:`ray_tube`: point sources at the blobs' centres,
ray-tube spreading and the interfaces' transmission) times the model's own gain per blob.

Run (k-Wave about 2.5 minutes on one core)::

    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python benchmarks/media/kwave_amplitude.py simulate
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/media/kwave_amplitude.py evaluate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "kwave" / "amplitude.npz"
FIXTURE = ROOT / "tests" / "data" / "kwave_2d_ring16.npz"
MM = 1e-3
C0, C1, RHO = 1500.0, 1545.0, 1000.0
DISC = (0.0, 0.0, 3 * MM)
ASIDE = (5.5 * MM, 0.0, 2.5 * MM)

#: run -> (speed map (cx, cy, r) or None, k-Wave time-step divisor, matched density,
#: uniform speed, far voxel)
RUNS = {
    "water_far_voxel": (None, 1, False, C0, True),
    "disc_fine_dt": (DISC, 2, False, None, False),
    "uniform_1545": (None, 1, False, C1, False),
    "disc_matched": (DISC, 1, True, None, False),
    "disc_aside": (ASIDE, 1, False, None, False),
}


def simulate() -> None:
    """Every run of the module docstring; ``out/kwave/amplitude.npz``."""
    import urllib.request  # lazy: only the k-Wave stage

    # k-wave-python fetches its C++ binaries on import; the NumPy backend needs none
    urllib.request.urlretrieve = lambda url, filename, *a, **k: (  # type: ignore
        open(filename, "wb").close(), (filename, None))[1]
    from kwave.kgrid import kWaveGrid  # lazy: k-Wave's environment only
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder
    from kwave_check import interval_means  # the same folder
    from kwave_fixture import DX, FS, N_KWAVE, N_SAMPLES, PML, SUB, N, phantom

    fx = np.load(FIXTURE)
    pos = fx["positions"]
    o = (N_KWAVE - N) // 2
    big = np.zeros((N_KWAVE, N_KWAVE))
    big[o:o + N, o:o + N] = phantom().T
    x = (np.arange(N_KWAVE) - N_KWAVE // 2) * DX + DX / 2  # oatomo's frame
    X, Y = np.meshgrid(x, x, indexing="ij")
    source = kSource()
    source.p0 = big
    sensor = kSensor(np.stack([pos[:, 0] - DX / 2, pos[:, 1] - DX / 2]))
    out = {}
    for name, (disc, div, matched, uniform, far) in RUNS.items():
        speed = np.full((N_KWAVE, N_KWAVE), C0 if uniform is None else uniform)
        rho = np.full_like(speed, RHO)
        if disc is not None:
            inside = (X - disc[0]) ** 2 + (Y - disc[1]) ** 2 < disc[2] ** 2
            speed[inside] = C1
            if matched:
                rho[inside] = RHO * C0 / C1
        if far:
            speed[np.argmin(np.abs(x - 11 * MM)), np.argmin(np.abs(x - 11 * MM))] = C1
        kgrid = kWaveGrid((N_KWAVE, N_KWAVE), (DX, DX))
        kgrid.setTime(N_SAMPLES * SUB * div, 1 / (FS * SUB * div))
        t = time.perf_counter()
        res = kspaceFirstOrder(kgrid, kWaveMedium(sound_speed=speed, density=rho), source,
                               sensor, pml_size=PML, smooth_p0=False, backend="python",
                               device="cpu", quiet=True)
        p = np.asarray(res["p"], np.float64)
        out[name] = interval_means(p, FS * SUB * div, 1 / FS)[:, ::SUB * div]
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(OUT)
    print(f"wrote {OUT}")


def _circle_exit(p: np.ndarray, d: np.ndarray, centre: np.ndarray, r: float,
                 inside: bool) -> tuple[np.ndarray, np.ndarray]:
    """Distance along each ray ``p + t d`` to the circle (entry from outside, exit from
    inside; NaN where a ray from outside misses it) and the hit points."""
    q = p - centre
    b = np.einsum("ij,ij->i", q, d)
    disc = b * b - (np.einsum("ij,ij->i", q, q) - r * r)
    root = np.sqrt(np.where(disc >= 0, disc, np.nan))
    t = -b + root if inside else -b - root
    t = np.where(t > 1e-12, t, np.nan)
    return t, p + t[:, None] * d


def _refract(d: np.ndarray, normal: np.ndarray, eta: float, z_ratio: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Snell's law in vector form (``normal`` against ``d``; ``eta`` the ratio of
    refractive indices ``n1 / n2 = c2 / c1``) and the pressure factor ``sqrt(tau Z2 /
    Z1)`` that keeps the ray tube's energy (``tau = 1 - R^2``, ``R`` the oblique-incidence
    reflection; ``z_ratio = Z2 / Z1``); NaN beyond the critical angle."""
    cosi = -np.einsum("ij,ij->i", d, normal)
    k = 1 - eta * eta * (1 - cosi * cosi)
    cost = np.sqrt(np.where(k >= 0, k, np.nan))
    out = eta * d + (eta * cosi - cost)[:, None] * normal
    refl = (z_ratio * cosi - cost) / (z_ratio * cosi + cost)
    return out, np.sqrt((1 - refl * refl) * z_ratio)


def _dphi(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """d phi / d theta over a full fan of rays (central differences, angles wrapped;
    a NaN spoils only its neighbours)."""
    step = np.angle(np.exp(1j * (np.roll(phi, -1) - np.roll(phi, 1))))
    return step / (2 * (theta[1] - theta[0]))


def ray_tube(source: tuple[float, float], disc: tuple[float, float, float], ring: float,
             c0: float = C0, c1: float = C1, n_rays: int = 200001
             ) -> tuple[np.ndarray, np.ndarray]:
    """Snell ray tracing from a point source through a disc of speed ``c1`` (density
    unchanged) to a ring of radius ``ring`` around the origin: for a fan of rays, the
    arrival angle on the ring and the pressure amplitude relative to straight rays in a
    medium of the source's own speed (2-D ray tube: ``1 / sqrt(width)``, times the
    transmission factors of the interfaces crossed).

    Returns
    -------
    phi, gain
        Sorted arrival angles (rad) and the amplitude factor there.
    """
    centre = np.array(disc[:2])
    src = np.array(source, np.float64)
    inside = np.hypot(*(src - centre)) < disc[2]
    theta = np.linspace(-np.pi, np.pi, n_rays, endpoint=False)
    d = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    p = np.repeat(src[None], n_rays, axis=0)
    factor = np.ones(n_rays)
    z = c1 / c0  # density unchanged: Z1 / Z0
    if not inside:  # entry: water -> disc
        t, hit = _circle_exit(p, d, centre, disc[2], inside=False)
        crosses = np.isfinite(t)
        n = (hit[crosses] - centre) / disc[2]
        d_in, f = _refract(d[crosses], n, c1 / c0, z)
        p, d = p.copy(), d.copy()
        p[crosses], d[crosses] = hit[crosses], d_in
        factor[crosses] *= f
    else:
        crosses = np.ones(n_rays, bool)
    # exit: disc -> water
    t, hit = _circle_exit(p[crosses], d[crosses], centre, disc[2], inside=True)
    n = -(hit - centre) / disc[2]
    d_out, f = _refract(d[crosses], n, c0 / c1, 1 / z)
    p[crosses], d[crosses] = hit, d_out
    factor[crosses] *= f
    # to the ring
    q = p
    b = np.einsum("ij,ij->i", q, d)
    t = -b + np.sqrt(b * b - (np.einsum("ij,ij->i", q, q) - ring * ring))
    end = q + t[:, None] * d
    phi = np.arctan2(end[:, 1], end[:, 0])
    # the tube's width across the ray at the ring: ring dphi / dtheta * cos(incidence)
    radial = end / ring
    cos_inc = np.abs(np.einsum("ij,ij->i", d, radial))
    width = ring * np.abs(_dphi(phi, theta)) * cos_inc
    ok = np.isfinite(width) & np.isfinite(factor)
    # straight rays from the source (the reference): width from the same formula
    q0 = np.repeat(src[None], n_rays, axis=0)
    d0 = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    b0 = np.einsum("ij,ij->i", q0, d0)
    t0 = -b0 + np.sqrt(b0 * b0 - (np.einsum("ij,ij->i", q0, q0) - ring * ring))
    end0 = q0 + t0[:, None] * d0
    phi0 = np.arctan2(end0[:, 1], end0[:, 0])
    width0 = ring * np.abs(_dphi(phi0, theta)) * np.abs(
        np.einsum("ij,ij->i", d0, end0 / ring))
    order0 = np.argsort(phi0)
    gain = factor * np.sqrt(np.interp(phi, phi0[order0], width0[order0], period=2 * np.pi)
                            / width)
    order = np.argsort(np.mod(phi[ok], 2 * np.pi))
    return np.mod(phi[ok], 2 * np.pi)[order], gain[ok][order]


def _amp_corr(y: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    amp = np.einsum("nt,nt->n", y, k) / np.einsum("nt,nt->n", y, y)
    corr = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(y, k, strict=True)])
    return amp, corr


def evaluate() -> dict:
    """The comparisons of the module docstring, printed and returned."""
    from oatomo import Acquisition, Grid, SensorArray, SpeedMap  # lazy: oatomo's env
    from oatomo.forward import ForwardOperator

    fx = dict(np.load(FIXTURE))
    kw = dict(np.load(OUT))
    grid, sensors = Grid(128, 128 * 1e-4), SensorArray(fx["positions"])
    p0 = fx["p0"].astype(np.float64)

    def model(c: float = C0, disc: tuple | None = None, image: np.ndarray = p0) -> np.ndarray:
        acq = Acquisition(float(fx["fs"]), fx["signals"].shape[1], speed_of_sound=c, t0=0.0)
        sm = None if disc is None else SpeedMap(C0, C1, disc[2], (disc[0], disc[1]))
        return ForwardOperator(grid, sensors, acq, medium="2d",
                               speed_map=sm).forward(image).astype(np.float64)

    def row(y: np.ndarray, k: np.ndarray) -> dict:
        amp, corr = _amp_corr(y, k)
        return {"amp": [round(float(a), 4) for a in amp], "amp_min": float(amp.min()),
                "amp_max": float(amp.max()), "corr_min": float(corr.min())}

    res: dict = {}
    two = model(disc=DISC)
    res["stored_disc"] = row(two, fx["signals_disc"])
    res["stored_water"] = row(model(), fx["signals"])
    res["water_far_voxel"] = row(model(), kw["water_far_voxel"])
    res["far_voxel_vs_water"] = row(fx["signals"], kw["water_far_voxel"])
    res["disc_fine_dt"] = row(two, kw["disc_fine_dt"])
    res["fine_dt_vs_stored"] = row(fx["signals_disc"], kw["disc_fine_dt"])
    res["uniform_1545"] = row(model(C1), kw["uniform_1545"])
    res["disc_matched"] = row(two, kw["disc_matched"])
    res["matched_vs_stored"] = row(fx["signals_disc"], kw["disc_matched"])
    res["disc_aside"] = row(model(disc=ASIDE), kw["disc_aside"])
    # the model alone: the same medium (1545 m/s) around the sources, with and without the
    # equivalent-distance construction
    res["model_only"] = row(model(disc=(0.0, 0.0, 9.5 * MM)), model(C1))
    # which sensors' straight rays from the blobs cross the aside disc
    ang = np.arctan2(fx["positions"][:, 1], fx["positions"][:, 0])
    res["aside_sensor_angles_deg"] = [round(float(a), 1) for a in np.degrees(ang)]
    # the straight-ray model with the region's p0 scaled by (c0 / c1)^1.5 * T (transmission
    # 2 Z0 / (Z0 + Z1)): the model's amplitude for sources inside the region undone
    x = (np.arange(128) - 63.5) * 1e-4
    X, Y = np.meshgrid(x, x)
    gain = (C0 / C1) ** 1.5 * 2 * C0 / (C0 + C1)
    weighted = np.where(X ** 2 + Y ** 2 < DISC[2] ** 2, gain, 1.0) * p0
    res["weighted_gain"] = gain
    res["stored_disc_weighted"] = row(model(disc=DISC, image=weighted), fx["signals_disc"])
    # prediction per sensor: each blob's signal scaled by (ray-traced gain of k-Wave's
    # physics) / (the model's own amplitude factor), combined as the least-squares
    # amplitude would see it: sum_b g_b <y_b, y> / <y, y>
    from kwave_fixture import BLOBS  # lazy: the same folder

    ring = float(np.hypot(*fx["positions"][0]))
    sensor_phi = np.mod(np.arctan2(fx["positions"][:, 1], fx["positions"][:, 0]), 2 * np.pi)
    for name, disc in (("stored_disc", DISC), ("disc_aside", ASIDE)):
        ys, gs = [], []
        for cx, cy, sig, a in BLOBS:
            blob = a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * sig ** 2))
            inside = np.hypot(cx - disc[0], cy - disc[1]) < disc[2]
            y_two = model(disc=disc, image=blob)
            y_ref = model(C1 if inside else C0, image=blob)
            model_factor = np.linalg.norm(y_two, axis=1) / np.linalg.norm(y_ref, axis=1)
            phi, gain = ray_tube((cx, cy), disc, ring)
            ray = np.interp(sensor_phi, phi, gain, period=2 * np.pi)
            ys.append(y_two)
            gs.append(ray / model_factor)
            res[f"{name}_blob_{cx / MM:+.1f}_{cy / MM:+.1f}"] = {
                "inside": bool(inside), "ray_gain": [round(float(g), 4) for g in ray],
                "model_factor": [round(float(m), 4) for m in model_factor]}
        y = sum(ys)
        pred = sum(g * np.einsum("nt,nt->n", yb, y) for g, yb in zip(gs, ys, strict=True))
        pred = pred / np.einsum("nt,nt->n", y, y)
        meas = np.array(res[name]["amp"])
        res[f"{name}_predicted"] = {
            "amp": [round(float(v), 4) for v in pred], "amp_min": float(pred.min()),
            "amp_max": float(pred.max()),
            "max_abs_diff_to_kwave": float(np.abs(pred - meas).max())}
    for k, v in res.items():
        print(k, json.dumps(v))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("simulate", "evaluate"))
    args = ap.parse_args()
    if args.stage == "simulate":
        simulate()
    else:
        res = evaluate()
        path = OUT.with_name("amplitude.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(path)


if __name__ == "__main__":
    main()
