"""Volume phantoms: the ball's volume, the vessel trees' determinism and scale."""

import math

import numpy as np
import pytest

from oatomo import InputError
from oatomo.volume import VolumeGrid
from oatomo.volume.phantoms import ball, make_volume, vessels3d


def test_ball_holds_its_volume():
    grid = VolumeGrid(40, 0.008)
    b = ball(grid, 2.5e-3, (0.3e-3, 0.0, -0.2e-3))
    assert b.sum() * grid.dx ** 3 == pytest.approx(4 / 3 * math.pi * 2.5e-3 ** 3, rel=0.01)
    assert b.max() == 1.0 and b.min() == 0.0


def test_vessel_trees_are_seeded_and_keep_their_shape_in_metres():
    coarse, fine = VolumeGrid(24, 0.0096), VolumeGrid(48, 0.0096)
    a, b = vessels3d(coarse, 5), vessels3d(coarse, 5)
    assert np.array_equal(a, b) and not np.array_equal(a, vessels3d(coarse, 6))
    assert a.dtype == np.float32 and a.max() == 1.0 and 0.002 < (a > 0.5).mean() < 0.2
    # the same seed on a 2x finer grid is the same object: block means agree
    f = vessels3d(fine, 5).reshape(24, 2, 24, 2, 24, 2).mean(axis=(1, 3, 5))
    assert np.corrcoef(f.ravel(), a.ravel())[0, 1] > 0.85


def test_unknown_volume_phantom_is_one_line():
    with pytest.raises(InputError, match="'disk' is not a volume phantom"):
        make_volume("disk", VolumeGrid(8, 0.004))
