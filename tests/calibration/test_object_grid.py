"""Calibration on an image grid that cuts the object: the grid is widened to the object
seen in the data (oatomo.calibration.calibration_grid)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from calibration_case import ACQ, GRID, NOMINAL, P0, signals

import oatomo
from oatomo import Grid, Scan
from oatomo.calibration import (
    OBJECT_COVER,
    calibrate,
    calibration_grid,
    check_positions,
    rigid_error,
)
from oatomo.calibration.estimate import OBJECT_GRID_MAX
from oatomo.io import object_fov
from oatomo.recon.operators import operator_norm_sq

FAST = {"n_levels": 2, "n_folds": 4, "n_iter": 15}


@pytest.fixture(scope="module")
def scan() -> tuple[Scan, oatomo.SensorArray]:
    """Six disks over most of the 12.8 mm grid, sensors off radially by 0.3 mm rms and the
    file's speed of sound 1.2 % off."""
    true = NOMINAL.perturbed(radial_std=0.3e-3, seed=1)
    return Scan(signals(true, 1500.0 * 1.012), NOMINAL, ACQ), true


def _rms_um(est: np.ndarray, true: oatomo.SensorArray) -> float:
    return float(np.sqrt(np.mean(rigid_error(est, true.positions) ** 2))) * 1e6


def test_a_grid_that_cuts_the_object_is_widened_to_it(scan) -> None:
    data, _ = scan
    extent = object_fov(data)
    # the disks span columns 6-62 of the 64-pixel grid: the extent holds them
    cols = np.nonzero(P0.max(axis=0) > 0)[0]
    assert (cols[-1] - cols[0] + 1) * GRID.dx < extent < 2 * 0.0225
    small = Grid(32, 0.5 * extent)
    wide, note = calibration_grid(data, small)
    assert wide.fov == pytest.approx(extent)
    assert wide.dx == pytest.approx(small.dx, rel=0.02)  # the same pitch
    assert note is not None and "cuts the object" in note
    # at OBJECT_COVER of the extent and above, the grid is kept as it is
    for fov in (OBJECT_COVER * extent * 1.001, GRID.fov):
        same = Grid(48, fov)
        assert calibration_grid(data, same) == (same, None)
    # a very fine pitch is capped at OBJECT_GRID_MAX pixels (but never below the grid's)
    fine = Grid(64, 0.2 * extent)
    assert calibration_grid(data, fine)[0].n == OBJECT_GRID_MAX
    assert calibration_grid(data, Grid(300, 0.2 * extent))[0].n == 300
    # an early artefact on every sensor (signal from the first samples on): the first
    # arrivals no longer bound the object, the extent is unknown and the grid is kept
    early = data.sinogram.copy()
    early[:, :3] += np.abs(early).max()
    blind = Scan(early, NOMINAL, ACQ)
    assert object_fov(blind) == pytest.approx(2 * 0.0225)  # the inscribed circle
    assert calibration_grid(blind, small) == (small, None)


def test_calibration_on_a_cutting_grid_finds_the_positions(scan) -> None:
    """On a 6.4 mm grid (the disks reach 12 mm) the calibration on the grid itself barely
    moves the sensors (about 250 of 270 um rms); widened to the object it finds them as on
    the full grid."""
    data, true = scan
    file_um = _rms_um(NOMINAL.positions, true)
    cut = Grid(32, 0.0064)
    kept = calibrate(data, cut, prior_std=0.3e-3, object_grid=False, **FAST)
    wide = calibrate(data, cut, prior_std=0.3e-3, **FAST)
    full = calibrate(data, GRID, prior_std=0.3e-3, **FAST)
    assert _rms_um(kept.sensors.positions, true) > 0.8 * file_um
    assert _rms_um(wide.sensors.positions, true) < 0.35 * file_um
    assert _rms_um(wide.sensors.positions, true) < 1.5 * _rms_um(full.sensors.positions,
                                                                  true)
    assert any("cuts the object" in note for note in wide.notes)
    assert not any("cuts the object" in note for note in full.notes + kept.notes)
    # the last image, resampled onto the cut grid, with a bound on ||A||^2 of the cut grid
    # (not the widened grid's, about (extent / fov)^2 times too large): above a long
    # Lanczos run's value, by no more than its 1.1x margin and the short run's shortfall
    assert wide.image.shape == kept.image.shape == cut.shape
    long_run = operator_norm_sq(cut, wide.sensors, wide.acquisition(ACQ), n_iter=100,
                                response=data.response)
    assert 1.0 <= wide.operator_norm_sq / long_run <= 1.1
    assert np.corrcoef(wide.image.ravel(), kept.image.ravel())[0, 1] > 0.5
    assert abs(wide.speed_of_sound / 1500.0 - 1.012) < abs(kept.speed_of_sound / 1500.0
                                                            - 1.012) + 1e-3


def test_reconstruct_on_a_cutting_grid_calibrates_on_the_object(scan) -> None:
    """The pipeline's calibration takes the widened grid; its TV runs on the user's grid,
    started at the calibration's image resampled onto it, with the calibration's bound
    on ``||A||^2`` of that grid as its step size."""
    data, _ = scan
    cut = Grid(32, 0.0064)
    rec = oatomo.reconstruct(data, "mb-tv", grid=cut, calibrate=True, refine=False)
    assert rec.image.shape == cut.shape and np.all(np.isfinite(rec.image))
    cal = rec.provenance["calibration"]
    assert any("cuts the object" in note for note in cal["notes"])
    assert cal["tv_started_at_calibration_image"] is True
    assert cal["tv_step_from_calibration"] is True
    assert math.isfinite(cal["speed_of_sound"])


def test_the_position_check_runs_on_the_grid_the_calibration_takes() -> None:
    """A correct file on a grid that cuts the object: checked on that grid, the records of
    what lies outside look like misplaced sensors (a false alarm); the pipeline checks on
    the widened grid and does not calibrate."""
    correct = Scan(signals(NOMINAL, 1500.0), NOMINAL, ACQ)
    cut = Grid(40, 0.008)
    on_cut = check_positions(correct.sinogram, NOMINAL, ACQ, cut)
    assert on_cut.needs_calibration and on_cut.spread > 2 * on_cut.threshold
    rec = oatomo.reconstruct(correct, "mb-tv", grid=cut, refine=False)
    check = rec.provenance["position_check"]
    assert check["needs_calibration"] is False and check["spread_m"] < check["threshold_m"]
    assert not rec.provenance["calibration"]
