"""Self-calibration of a scan whose sensors are not where the file says.

Simulates a 32-sensor ring with per-sensor radial (0.25 mm) and angular (0.6 deg) errors, a
fixed 0.4 deg rotation and a speed of sound 1.3 % above the file's, calibrates it with
``oatomo.calibrate`` and draws TV reconstructions with the nominal, calibrated and true
positions beside the sensor errors before and after (after the best rigid alignment, what
the data can see).

Run: ``.venv/bin/python examples/optoacoustic/calibration.py [out.png]``
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numpy as np

import oatomo
from oatomo import phantoms
from oatomo.calibration import rigid_error, similarity_transform
from oatomo.evaluation.metrics import affine_fit, psnr


def main(out: str = "calibration.png") -> None:
    setup = oatomo.Setup.from_dict({
        "name": "ring32_example",
        "array": {"kind": "ring", "n_sensors": 32, "radius": 0.0225},
        "acquisition": {"fs": 40e6, "n_samples": 1024, "speed_of_sound": 1500.0},
        "grid": {"n": 128, "fov": 0.0128},
        "perturbation": {"radial_std": 0.25e-3, "angular_std": math.radians(0.6),
                         "rotation": math.radians(0.4)},
        "noise": {"relative_std": 0.01},
    })
    p0 = phantoms.make("vessel-tree", setup.grid, 11)
    true = setup.draw(12)
    acq_true = replace(setup.acquisition, speed_of_sound=1520.0)
    sino = oatomo.simulate(p0, setup.grid, true, acq_true, noise_std=setup.noise, seed=13)
    scan = oatomo.Scan(sinogram=sino, sensors=setup.array, acquisition=setup.acquisition,
                       p0=p0, grid=setup.grid, setup_toml=setup.to_toml_string())
    cal = oatomo.calibrate(scan)
    images = {}
    for name, sc in (("nominal", scan), ("calibrated", oatomo.apply_calibration(scan, cal)),
                     ("true", replace(scan, sensors=true, acquisition=acq_true))):
        x = oatomo.reconstruct(sc, "mb-tv", refine=False, calibrate=False).image
        fit = affine_fit(x[None], p0[None])[0]
        images[name] = (fit, float(psnr(fit, p0, data_range=1.0)))

    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4), layout="constrained")
    axes = fig.subplots(1, 5)
    ext = np.array([-1, 1, -1, 1]) * setup.grid.fov / 2 * 1e3
    for ax, (name, (img, db)) in zip(axes[:3], images.items(), strict=True):
        ax.imshow(img, origin="lower", extent=ext, cmap="inferno", vmin=0, vmax=1)
        ax.set_title(f"TV, {name} positions\n{db:.1f} dB")
        ax.set_xlabel("x (mm)")
    axes[3].imshow(p0, origin="lower", extent=ext, cmap="inferno")
    axes[3].set_title("truth p0")
    ax = axes[4]
    for label, est, colour in (("nominal", setup.array, "tab:red"),
                               ("calibrated", cal.sensors, "tab:blue")):
        _, R, t = similarity_transform(est.positions, true.positions, scale=False)
        d = (est.positions @ R.T + t - true.positions) * 1e6
        err = np.sqrt(np.mean(rigid_error(est, true) ** 2)) * 1e6
        angle = np.degrees(np.arctan2(true.positions[:, 1], true.positions[:, 0]))
        order = np.argsort(angle)
        ax.plot(angle[order], np.hypot(*d.T)[order], "o-", color=colour, ms=3,
                label=f"{label}: rms {err:.0f} um")
    ax.set_xlabel("sensor angle (deg)")
    ax.set_ylabel("position error after rigid alignment (um)")
    ax.set_title(f"sensor errors; c: file 1500,\nestimated {cal.speed_of_sound:.1f}, "
                 "true 1520 m/s")
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
