"""Speed-of-sound Gauss-Newton steps after the finest level of self-calibration.

On arrays that do not surround the object the calibration's speed of sound is its
cross-validated 1-D search, which the image's freedom biases (and whose run-off on a short
aperture makes the calibration keep the file's ``c``), while the records themselves hold
``c`` to about 0.1 % (``identifiability_bound.py``). A speed step
(:func:`oatomo.calibration.gauss_newton.joint_gauss_newton_step` with the positions held)
estimates the image change, the sensors' gains and ``delta ln c`` together by LSQR on the
linearised records; the image is then made again at the new ``c`` (warm TV, as a round's).

Settings (``--configs``, comma-separated): ``none`` (the calibration as shipped before),
``c<k>`` (``k`` speed steps, where ``c`` is estimated: not after a short aperture's
fall-back to the file's ``c``), ``j<k>`` (``k`` joint steps with the positions, as on rings),
either followed by ``x<i>``: ``i`` LSQR iterations per step (default 50); ``p<limit>``:
the speed probe at the end of a short aperture's calibration
(:data:`oatomo.calibration.estimate.SPEED_PROBE_LIMIT`, in %; ``p100`` probes and never
falls back, recording what the probe asks for), ``p<limit>x<i>`` with ``i`` LSQR
iterations instead of :data:`oatomo.calibration.joint.SPEED_PROBE_ITERS`.

Tuning set (``--tuning``): a 100 and a 150 degree arc, a 200 degree arc and a 96-element
linear array, arrays no report set of the repository uses, seeds 2000-2001 of
``heldout_default.py``'s generator (its perturbations, the file's ``c`` off by up to 2 %,
noise, band and 2x finer simulation grid).

Run::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/speed_step.py --tuning --seed 2000 \\
        --configs none,c1,c3 --out benchmarks/calibration/speed_step_tuning.json
"""

from __future__ import annotations

import re
import sys
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
import joint_gauss_newton as G  # noqa: E402

import oatomo.calibration.estimate as E  # noqa: E402
import oatomo.calibration.joint as J  # noqa: E402

#: Tuning arrays: counts, radii and spans no benchmark report set uses.
TUNING_GEOMETRIES = {**{k: G.SHORT_APERTURES[k] for k in ("arc100", "arc150")},
                     "arc200": G.TUNING_GEOMETRIES["arc200"],
                     "linear96": G.SHORT_APERTURES["linear96"]}
TUNING_PHANTOMS = G.TUNING_PHANTOMS
H.GEOMETRIES.update(TUNING_GEOMETRIES)

_JOINT = E.joint_calibration
_STEP = J.joint_gauss_newton_step
_PROBE = E.speed_probe
PROBED: list[float] = []
PROBE_KW: dict[str, Any] = {}


def _recorded_probe(*args: Any, **kw: Any) -> float:
    """The speed probe (with the config's iterations), its answer kept for the
    benchmark's row."""
    PROBED.append(_PROBE(*args, **{**kw, **PROBE_KW}))
    return PROBED[-1]



def configure(name: str) -> None:
    """Set the calibration's speed steps (or joint steps) and LSQR iterations for
    ``name``."""
    E.SPEED_PROBE_LIMIT = None
    E.speed_probe = _recorded_probe  # set here, not at import: heldout_margin.py imports us
    PROBE_KW.clear()
    probe = re.fullmatch(r"p([\d.]+)(?:x(\d+))?", name)
    if probe is not None:  # the speed probe's limit, in %, and its LSQR iterations
        E.SPEED_PROBE_LIMIT = float(probe.group(1)) / 100
        if probe.group(2):
            PROBE_KW["n_iter"] = int(probe.group(2))
        name = "none"
    m = re.fullmatch(r"(none|c|j)(\d*)(?:x(\d+))?", name)
    if m is None:
        raise SystemExit(f"unknown config {name!r}")
    k = int(m.group(2) or 0)
    kwargs: dict[str, Any] = {"none": {}, "c": {"speed_steps": k},
                              "j": {"joint_steps": k}}[m.group(1)]

    def with_steps(*args: Any, **kw: Any) -> Any:  # these settings over the caller's
        return _JOINT(*args, **{**kw, **kwargs})

    E.joint_calibration = with_steps
    J.joint_gauss_newton_step = (_STEP if m.group(3) is None
                                 else partial(_STEP, n_iter=int(m.group(3))))


def run(geometry: str, kind: str, seed: int, config: str) -> dict[str, Any]:
    """Calibrate one scan under ``config`` and score TV with the estimate (the rows of
    ``joint_gauss_newton.py`` with the file's ``c`` error and the probe's answer)."""
    configure(config)
    PROBED.clear()
    row, case, cal = G.scored(geometry, kind, seed, config)
    t = {k: row.pop(k) for k in ("t_calibrate", "t_tv")}
    return {**row, "c_err_file_pct": 100 * (case.c_file / case.c_true - 1),
            "speed_probe_pct": 100 * PROBED[0] if PROBED else None,
            "speed_kept": any("speed of sound is not identifiable" in n for n in cal.notes),
            **t}


def main(argv: list[str] | None = None) -> int:
    return G.drive(argv, __doc__.splitlines()[0], run, TUNING_GEOMETRIES, TUNING_PHANTOMS,
                   "none,c1")


if __name__ == "__main__":
    raise SystemExit(main())
