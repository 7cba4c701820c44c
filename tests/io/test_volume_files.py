"""Scans with 3-D sensor positions in files: oatomo, IPASC/PACFISH and PATATO keep z, the
peers' own readers read our 3-D exports, and 2-D-only operations refuse 3-D scans."""

import warnings

import h5py
import numpy as np
import pytest

import oatomo
import oatomo.volume
from oatomo import Acquisition, Grid, InputError
from oatomo.io import Scan, default_grid, load_images, load_scan, save_images, save_scan
from oatomo.volume import VolumeGrid, hemisphere_array, planar_array, spherical_cap_array


def _scan3d(frames=1):
    """A small 3-D scan with truth; positions with z that are not round numbers."""
    grid = VolumeGrid(8, 0.004)
    arr = spherical_cap_array(24, 0.0123456789, 1.2)
    rng = np.random.default_rng(0)
    y = rng.standard_normal((frames, 24, 128)).astype(np.float32)
    p0 = rng.random(grid.shape).astype(np.float32)
    return Scan(y[0] if frames == 1 else y, arr, Acquisition(20e6, 128), p0=p0, grid=grid,
                true_sensors=arr, seed=3)


@pytest.mark.parametrize("fmt", ["oatomo", "ipasc"])
def test_round_trip_keeps_z_exactly(tmp_path, fmt):
    scan = _scan3d()
    save_scan(tmp_path / "s.h5", scan, format=fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never a projection warning
        back = load_scan(tmp_path / "s.h5")
    assert back.is_3d
    np.testing.assert_array_equal(back.sensors.positions, scan.sensors.positions)
    np.testing.assert_allclose(back.sensors.normals, scan.sensors.normals, atol=1e-15)
    np.testing.assert_array_equal(back.sinogram, scan.sinogram)
    if fmt == "oatomo":  # the truth and its volume grid, the true positions
        assert back.grid == scan.grid and np.array_equal(back.p0, scan.p0)
        np.testing.assert_array_equal(back.true_sensors.positions, scan.sensors.positions)
        np.testing.assert_array_equal(back.sensors.areas, scan.sensors.areas)


def test_oatomo_keeps_a_planar_array_at_z_zero_3d(tmp_path):
    """oatomo's layout says 3-D by its (N, 3) positions, even when every z is 0."""
    pos = planar_array(4, 4, 1e-3, -1e-3).positions * [1, 1, 0]
    arr = oatomo.volume.SensorArray3D(pos, np.tile([0.0, 0.0, 1.0], (16, 1)))
    scan = Scan(np.zeros((16, 32), np.float32), arr, Acquisition(20e6, 32))
    save_scan(tmp_path / "p.h5", scan)
    assert load_scan(tmp_path / "p.h5").is_3d


def test_pacfish_reads_our_3d_export(tmp_path):
    """PACFISH's reader and consistency checks on a 3-D IPASC export: the detector
    positions and orientations are the 3-D ones, exactly."""
    pf = pytest.importorskip("pacfish")
    from pacfish import ConsistencyChecker

    scan = _scan3d(frames=2)
    save_scan(tmp_path / "s.h5", scan, format="ipasc")
    data = pf.load_data(str(tmp_path / "s.h5"))
    cons = ConsistencyChecker()
    assert cons.check_acquisition_meta_data(data.meta_data_acquisition)
    assert cons.check_device_meta_data(data.meta_data_device)
    assert cons.check_binary_data(data.binary_time_series_data)
    det = data.meta_data_device["detectors"]
    pos = np.array([det[k]["detector_position"] for k in sorted(det)])
    orient = np.array([det[k]["detector_orientation"] for k in sorted(det)])
    np.testing.assert_array_equal(pos, scan.sensors.positions)
    np.testing.assert_array_equal(orient, scan.sensors.normals)
    fov = data.meta_data_device["general"]["field_of_view"]
    assert fov[4] < 0 < fov[5]  # a z extent


def test_ipasc_round_trip_of_a_pacfish_3d_file_moves_nothing(tmp_path):
    """An IPASC file with 3-D detectors, read and written back: the same positions."""
    scan = _scan3d()
    save_scan(tmp_path / "a.h5", scan, format="ipasc")
    first = load_scan(tmp_path / "a.h5")
    save_scan(tmp_path / "b.h5", first, format="ipasc")
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for k in a["meta_data_device/detectors"]:
            g = f"meta_data_device/detectors/{k}/detector_position"
            np.testing.assert_array_equal(a[g][...], b[g][...])


def test_patato_reads_our_3d_export(tmp_path):
    """PATATO reads the (N, 3) geometry exactly and the volumes with their grid; ours reads
    the export back as 3-D."""
    patato = pytest.importorskip("patato")
    from oatomo.io import save_patato

    scan = _scan3d()
    vol = np.arange(512, dtype=np.float32).reshape(scan.grid.shape)
    path = save_patato(tmp_path / "p.hdf5", scan, vol, scan.grid, algorithm="ubp")
    pa = patato.PAData.from_hdf5(str(path))
    np.testing.assert_array_equal(np.asarray(pa.get_scan_geometry()), scan.sensors.positions)
    rec = pa.get_scan_reconstructions()[("ubp", "0")]
    np.testing.assert_array_equal(np.asarray(rec.raw_data).reshape(vol.shape), vol)
    span = (scan.grid.n - 1) * scan.grid.dx / 2
    np.testing.assert_allclose(rec.extent, [-span, span, -span, span])
    back = load_scan(path)
    assert back.is_3d and np.array_equal(back.sensors.positions, scan.sensors.positions)
    with pytest.raises(InputError, match="VolumeGrid"):
        save_patato(tmp_path / "q.hdf5", scan, vol[0], Grid(8, 0.004))


def test_volume_image_file_round_trip(tmp_path):
    grid = VolumeGrid(6, 0.003)
    vol = np.random.default_rng(1).random((2,) + grid.shape).astype(np.float32)
    save_images(tmp_path / "v.h5", {"mb-tv": vol}, grid,
                attrs={"axes": ["frame"], "units": {"mb-tv": "Pa"}})
    images, back = load_images(tmp_path / "v.h5")
    assert back == grid and np.array_equal(images["mb-tv"], vol)
    with h5py.File(tmp_path / "v.h5") as f:
        d = f["images/mb-tv"]
        assert d.attrs["axes"] == "frame, z, y, x" and d.attrs["units"] == "Pa"
        assert d.attrs["voxel_size"] == grid.dx
    with pytest.raises(InputError, match="not on the 6x6x6 grid"):
        save_images(tmp_path / "w.h5", {"x": vol[0, :5]}, grid)


def test_two_d_operations_refuse_a_3d_scan_in_one_line(tmp_path):
    scan = _scan3d()
    calls = [lambda: default_grid(scan), lambda: oatomo.calibrate(scan),
             lambda: oatomo.backproject(scan.sinogram, Grid(8, 0.004), scan.sensors,
                                        scan.acquisition),
             lambda: oatomo.SensorArray(scan.sensors.positions)]
    for call in calls:
        with pytest.raises(InputError) as err:
            call()
        assert "\n" not in str(err.value)
        assert "3-D" in str(err.value) or "(N, 2)" in str(err.value)
    with pytest.raises(InputError, match="VolumeGrid"):
        Scan(scan.sinogram, scan.sensors, scan.acquisition, p0=np.zeros((8, 8)),
             grid=Grid(8, 0.004))


def test_hemisphere_scan_accepts_an_n_by_3_array():
    arr = hemisphere_array(8, 0.01)
    scan = Scan(np.zeros((8, 16), np.float32), arr.positions, Acquisition(20e6, 16))
    assert scan.is_3d and np.array_equal(scan.sensors.positions, arr.positions)
