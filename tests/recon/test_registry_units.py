"""Units of each method's image, against the closed form of a uniform disk: the methods
labelled Pa read the disk's initial pressure, the ones labelled a.u. do not."""

from __future__ import annotations

import numpy as np
import pytest

from oatomo import Acquisition, Grid, ring_array
from oatomo.forward import simulate
from oatomo.phantoms import disk
from oatomo.recon.registry import METHODS, image_units, reconstruct_sinogram
from oatomo.units import UNITS_ARBITRARY, UNITS_PA


@pytest.fixture(scope="module")
def disk_scan():
    fine, grid = Grid(128, 0.0128), Grid(64, 0.0128)
    sensors = ring_array(128, 0.025)
    acq = Acquisition(20e6, 1024)
    # simulated on a 2x finer grid, slab thickness the image pitch: p0 = 1 Pa inside
    y = simulate(disk(fine, 2e-3), fine, sensors, acq, thickness=grid.dx)
    X, Y = grid.coordinates()
    return y, grid, sensors, acq, X ** 2 + Y ** 2 < (1.2e-3) ** 2


@pytest.mark.parametrize("method", list(METHODS))
def test_units_say_whether_a_disk_reads_its_pressure(disk_scan, method) -> None:
    y, grid, sensors, acq, inner = disk_scan
    img = reconstruct_sinogram(y, grid, sensors, acq, method)
    value = float(np.median(img[inner]))
    if image_units(method) == UNITS_PA:
        assert value == pytest.approx(1.0, abs=0.2), value
    else:
        assert image_units(method) == UNITS_ARBITRARY
        assert abs(value - 1.0) > 0.5, value


def test_unknown_names_are_arbitrary() -> None:
    assert image_units("something-else") == UNITS_ARBITRARY
