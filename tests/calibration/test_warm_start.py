"""The TV of a self-calibrated scan starts at the calibration's last image, with its
operator-norm bound: the start is scaled per frame (a frame half as strong starts half as
high), both are refused by the methods that cannot use them, and the pipeline's image is
exactly the TV started there with the documented iterations and step (an independent call
of the same solver)."""

from __future__ import annotations

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.calibration import calibrate_sinogram
from oatomo.phantoms import disks
from oatomo.pipeline.options import DEFAULT_ITERS, RESPONSE_ITERS
from oatomo.pipeline.policy import WARM_ITERS, WARM_STALL_TOL
from oatomo.recon.model_based import reconstruct_model_based
from oatomo.recon.operators import operator_norm_sq
from oatomo.recon.registry import reconstruct_sinogram
from oatomo.response import DetectorResponse

GRID = Grid(32, 0.008)
ACQ = Acquisition(20e6, 300)
NOMINAL = ring_array(16, 0.01)
RESPONSE = DetectorResponse(centre_frequency=3e6, bandwidth=1.2)


def _scan(response: DetectorResponse | None = RESPONSE) -> oatomo.Scan:
    """16-sensor ring, per-sensor radial errors of 0.15 mm, four disks."""
    true = NOMINAL.perturbed(radial_std=0.15e-3, seed=4)
    y = oatomo.simulate(disks(GRID, seed=2, count=4), GRID, true, ACQ, response=response)
    return oatomo.Scan(y, NOMINAL, ACQ, response=response)


def test_the_start_is_scaled_per_frame() -> None:
    """Two frames, the second half the first, both started at the same mean-frame image:
    the images keep the ratio 0.5 to float precision after a few iterations (TV is
    equivariant under a common scale of data and start; the same unscaled start for both
    frames would not be)."""
    scan = _scan(None)
    y = np.stack([scan.sinogram, 0.5 * scan.sinogram])
    start = reconstruct_model_based(y.mean(axis=0), GRID, NOMINAL, ACQ, method="tv",
                                    n_iter=20)[0]
    img = reconstruct_sinogram(y, GRID, NOMINAL, ACQ, "mb-tv", iters=3, x0=start)
    ratio = float(np.vdot(img[1], img[0]) / np.vdot(img[0], img[0]))
    assert ratio == pytest.approx(0.5, rel=1e-4)
    # the first frame is 4/3 of the mean: it starts at 4/3 of the start image
    one = reconstruct_model_based(y[0], GRID, NOMINAL, ACQ, method="tv", n_iter=3,
                                  x0=np.float32(4 / 3) * start)[0]
    np.testing.assert_allclose(img[0], one, rtol=1e-5, atol=1e-6 * float(one.max()))
    unscaled = reconstruct_model_based(y[1], GRID, NOMINAL, ACQ, method="tv", n_iter=3,
                                       x0=start)[0]
    assert abs(float(np.vdot(unscaled, img[0]) / np.vdot(img[0], img[0])) - 0.5) > 1e-2


@pytest.mark.parametrize("method", ["ubp", "das", "mb-tikhonov"])
def test_a_start_is_only_for_tv(method: str) -> None:
    scan = _scan(None)
    for kw in ({"x0": np.zeros(GRID.shape, np.float32)}, {"norm_sq": 1.0},
               {"stall_tol": 1e-3}, {"stall_from": 100}):
        with pytest.raises(InputError, match="operator-norm bound or stall test is for mb-tv"):
            reconstruct_sinogram(scan.sinogram, GRID, NOMINAL, ACQ, method, **kw)
    with pytest.raises(InputError, match="norm_sq must be a positive number"):
        reconstruct_sinogram(scan.sinogram, GRID, NOMINAL, ACQ, "mb-tv", norm_sq=-1.0)


def test_the_calibrated_tv_starts_at_the_calibration_image() -> None:
    """``oatomo.reconstruct(..., calibrate=True)`` with TV and the response in the operator
    equals TV at the calibrated geometry started at :attr:`Calibration.image` with at most
    :data:`WARM_ITERS` iterations and the stall test :data:`WARM_STALL_TOL` (without the
    response in the operator, its own count); iterations asked for are kept, without the
    stall test; the provenance says how many ran."""
    scan = _scan()
    cal = oatomo.calibrate(scan, GRID)
    assert cal.image is not None and cal.image.shape == GRID.shape
    assert np.all(np.isfinite(cal.image)) and float(cal.image.max()) > 0
    rec = oatomo.reconstruct(scan, "mb-tv", GRID, calibrate=True, refine=False)
    prov = rec.provenance
    assert WARM_ITERS != RESPONSE_ITERS  # the warm TV's own cap, not the cold count
    assert prov["iters"] == WARM_ITERS and prov["model_response"] is True
    assert prov["calibration"]["tv_started_at_calibration_image"] is True
    assert prov["calibration"]["tv_step_from_calibration"] is True
    assert prov["calibration"]["tv_stall_tol"] == WARM_STALL_TOL > 0
    assert cal.operator_norm_sq is not None and cal.operator_norm_sq > 0
    # the bound is ||A||^2 at the calibrated geometry (40 Lanczos steps: converged here),
    # without the margin of the calibration's own steps for moving sensors (1.1 of it)
    top = operator_norm_sq(GRID, cal.sensors, cal.acquisition(ACQ), n_iter=40,
                           response=RESPONSE)
    assert 0.98 * top <= cal.operator_norm_sq <= 1.05 * top
    runs: list[dict] = []
    ref = reconstruct_sinogram(scan.sinogram, GRID, cal.sensors, cal.acquisition(ACQ),
                               "mb-tv", iters=WARM_ITERS, response=RESPONSE, x0=cal.image,
                               norm_sq=cal.operator_norm_sq, stall_tol=WARM_STALL_TOL,
                               records=runs)
    np.testing.assert_array_equal(rec.image, ref)
    # the provenance says how many iterations ran and whether the stall test ended them
    assert len(runs) == 1 and runs[0]["n_iter"] <= WARM_ITERS
    assert prov["calibration"]["tv_iterations_run"] == [runs[0]["n_iter"]]
    assert prov["calibration"]["tv_stalled"] == [runs[0]["stalled"]]
    assert runs[0]["stalled"] == (runs[0]["n_iter"] < WARM_ITERS)
    asked = oatomo.reconstruct(scan, "mb-tv", GRID, calibrate=True, refine=False,
                               iters=WARM_ITERS)
    assert asked.provenance["iters"] == WARM_ITERS
    assert asked.provenance["calibration"]["tv_stall_tol"] == 0.0
    runs = []
    every = reconstruct_sinogram(scan.sinogram, GRID, cal.sensors, cal.acquisition(ACQ),
                                 "mb-tv", iters=WARM_ITERS, response=RESPONSE, x0=cal.image,
                                 norm_sq=cal.operator_norm_sq, records=runs)
    np.testing.assert_array_equal(asked.image, every)
    # no stall test: the iterations end at the count or the solver's own convergence test
    assert asked.provenance["calibration"]["tv_iterations_run"] == [runs[0]["n_iter"]]
    assert asked.provenance["calibration"]["tv_stalled"] == [False]
    assert runs[0]["n_iter"] == WARM_ITERS or runs[0]["converged"]
    # a model other than the calibration's (no response) keeps its own power iteration
    plain = oatomo.reconstruct(scan, "mb-tv", GRID, calibrate=True, refine=False,
                               model_response=False)
    assert plain.provenance["calibration"]["tv_step_from_calibration"] is False
    # ... and, without the response in the operator, the cold count of iterations
    assert plain.provenance["iters"] == DEFAULT_ITERS
    assert plain.provenance["calibration"]["tv_stall_tol"] == WARM_STALL_TOL
    # UBP after calibration has no start
    ubp = oatomo.reconstruct(scan, "ubp", GRID, calibrate=True, refine=False,
                             model_response=False)
    assert "tv_started_at_calibration_image" not in ubp.provenance["calibration"]
    assert "tv_iterations_run" not in ubp.provenance["calibration"]
    # a non-iterative method leaves the list of solver records as it is
    untouched: list[dict] = []
    reconstruct_sinogram(scan.sinogram, GRID, NOMINAL, ACQ, "ubp", records=untouched)
    assert untouched == []


def test_the_search_method_keeps_no_image() -> None:
    scan = _scan(None)
    cal = calibrate_sinogram(scan.sinogram, NOMINAL, ACQ, GRID, method="search", n_iter=3,
                             n_levels=1, n_folds=2)
    assert cal.image is None


def test_a_scan_the_calibration_cannot_use_keeps_its_geometry_and_says_why(
        monkeypatch, capsys, tmp_path) -> None:
    """When the position check asks for calibration and the calibration refuses the scan
    (too little structure), the default reconstructs with the file's geometry, exactly as
    TV without calibration, and the provenance and the CLI say why; ``calibrate=True``
    keeps the error."""
    import oatomo.pipeline.policy as policy
    from oatomo.cli import main
    from oatomo.io import save_scan

    def refuse(*args, **kwargs):
        raise InputError("the scan's signals carry too little structure to calibrate on")

    scan = _scan()
    monkeypatch.setattr(policy, "calibrate_scan", refuse)
    rec = oatomo.reconstruct(scan, grid=GRID)
    check = rec.provenance["position_check"]
    assert check["needs_calibration"] is True  # the check asked and check["calibrated"] is False
    assert "too little structure" in check["why_not"]
    assert rec.provenance["calibration"] is None and rec.provenance["method"] == "mb-tv"
    plain = oatomo.reconstruct(scan, "mb-tv", GRID, calibrate=False, refine=False)
    np.testing.assert_array_equal(rec.image, plain.image)
    with pytest.raises(InputError, match="too little structure"):
        oatomo.reconstruct(scan, "mb-tv", GRID, calibrate=True)
    path = tmp_path / "scan.h5"
    save_scan(path, scan)
    assert main(["reconstruct", str(path), "--n", "32", "--fov", "0.008",
                 "-o", str(tmp_path / "out.h5")]) == 0
    assert "not calibrated: self-calibration was not possible" in capsys.readouterr().out
