"""oatomo.reconstruct on scans with 3-D sensor positions: volumes, the provenance's reasons,
multi-frame, and the 2-D-only options refused."""

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, InputError
from oatomo.io import Scan
from oatomo.pipeline import VolumeReconstruction
from oatomo.volume import VolumeGrid, backproject_volume, hemisphere_array, simulate_volume
from oatomo.volume.phantoms import ball


@pytest.fixture(scope="module")
def scan3d():
    grid = VolumeGrid(12, 0.006)
    arr, acq = hemisphere_array(48, 0.012), Acquisition(40e6, 512)
    p0 = ball(grid, 1.5e-3)
    y = simulate_volume(p0, grid, arr, acq)
    return Scan(np.stack([y, 2 * y]), arr, acq, p0=p0, grid=grid)


def test_volumes_with_reasons(scan3d):
    rec = oatomo.reconstruct(scan3d, "das")
    assert isinstance(rec, VolumeReconstruction) and rec.grid == scan3d.grid
    assert rec.image.shape == (2, 12, 12, 12) and rec.images["truth"] is not None
    # the pipeline's DAS is the volume room's, frame by frame
    np.testing.assert_allclose(rec.image[1], backproject_volume(
        scan3d.sinogram[1], scan3d.grid, scan3d.sensors, scan3d.acquisition, "das"),
        rtol=1e-6, atol=1e-6)
    prov = rec.provenance
    assert prov["dimensions"] == 3 and prov["axes"] == ["frame"]
    assert "2-D this round" in prov["position_check"]["reason"]
    assert prov["refinement"]["applied"] is False
    assert "3-D scan is not refined" in prov["refinement"]["reason"]


@pytest.mark.parametrize("method", ["das", "mb-tikhonov"])
def test_flat_elements_in_3d(scan3d, method):
    """``element_width`` on a 3-D scan: the side of square (or diameter of disc) faces,
    passed to the volume room's methods and recorded. (The model-based method's disc is
    smaller: a finite element of m mesh points costs m point sensors in every
    application, and a 0.5 mm disc at 40 MHz has about 150.)"""
    kw = {"frames": 0, "iters": 3, "n": 8, "fov": 0.006}
    width = 5e-4 if method == "das" else 2e-4
    rec = oatomo.reconstruct(scan3d, method, element_width=width, element_shape="disc", **kw)
    grid = VolumeGrid(8, 0.006)
    if method == "das":
        ref = backproject_volume(scan3d.sinogram[0], grid, scan3d.sensors,
                                 scan3d.acquisition, "das", element_size=width,
                                 element_shape="disc")
        np.testing.assert_allclose(rec.image, ref, rtol=1e-6, atol=1e-6)
    point = oatomo.reconstruct(scan3d, method, **kw)
    assert not np.allclose(rec.image, point.image)
    assert rec.provenance["element_width"] == width
    assert rec.provenance["element_shape"] == "disc"


def test_element_shape_is_3d_only():
    scan = oatomo.io.Scan(np.zeros((8, 64), np.float32), oatomo.ring_array(8, 0.01),
                          Acquisition(20e6, 64))
    with pytest.raises(InputError, match="--element-shape is for 3-D arrays"):
        oatomo.reconstruct(scan, "das", element_width=1e-3, element_shape="square")


def test_model_based_volume_on_a_cube(scan3d):
    rec = oatomo.reconstruct(scan3d, "mb-tv", n=10, fov=0.006, frames=0, iters=5)
    assert rec.image.shape == (10, 10, 10) and "truth" not in rec.images
    assert rec.units["mb-tv"] == "Pa" and rec.provenance["lam"] > 0
    centre = rec.image[4:6, 4:6, 4:6].mean()
    assert centre > 3 * abs(rec.image[0, 0, 0])


@pytest.mark.parametrize("kw, match", [
    ({"refine": True}, "not refined"), ({"calibrate": True}, "2-D this round"),
    ({"element_width": -1e-3}, r"--element-width must be in \(0, 10\] metres"),
    ({"element_shape": "disc"}, "--element-shape goes with --element-width"),
    ({"element_width": 1e-3, "element_shape": "hexagon"}, "--element-shape must be one of"),
    ({"object_speed_of_sound": 1600.0, "object_radius": 0.002}, "2-D only"),
    ({"medium": "2d"}, "2-D only"), ({"method": "fbp"}, "no volume counterpart")])
def test_two_d_options_refused(scan3d, kw, match):
    kw = {"method": "das", **kw}
    with pytest.raises(InputError, match=match) as err:
        oatomo.reconstruct(scan3d, **kw)
    assert "\n" not in str(err.value)
