"""Scan files: oatomo round trip, IPASC and PATATO files written by those projects."""

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.io import Scan, load_images, load_scan, save_images, save_scan

DATA = Path(__file__).parents[1] / "data"


def fixture_values(shape_fwdt):
    """Values written by tests/data/make_fixtures.py, as (frames, wl, detectors, samples)."""
    fr, wl, det, t = np.meshgrid(*(np.arange(n) for n in shape_fwdt), indexing="ij")
    return (det + 0.001 * t + 100.0 * wl + 1000.0 * fr).astype(np.float32)


def expected_positions():
    th = 2 * np.pi * np.arange(16) / 16
    return 0.02 * np.stack([np.cos(th), np.sin(th)], axis=1)


@pytest.mark.parametrize("name,fmt", [("ipasc_ring16.hdf5", "ipasc"),
                                      ("patato_ring16.hdf5", "patato")])
def test_reads_files_written_by_peer_packages(name, fmt):
    scan = load_scan(DATA / name)
    assert scan.source_format == fmt
    assert scan.sinogram.shape == (2, 2, 16, 256)
    np.testing.assert_allclose(scan.sinogram, fixture_values((2, 2, 16, 256)), rtol=1e-6)
    np.testing.assert_allclose(scan.sensors.positions, expected_positions(), atol=1e-12)
    assert scan.acquisition.fs == 20e6 and scan.acquisition.speed_of_sound == 1510.0
    np.testing.assert_allclose(scan.wavelengths, [700e-9, 800e-9])


def make_scan(frames=()):
    sensors = ring_array(8, 0.01)
    acq = Acquisition(20e6, 64, speed_of_sound=1490.0, t0=1e-7)
    rng = np.random.default_rng(0)
    return Scan(sinogram=rng.standard_normal(frames + (8, 64)).astype(np.float32),
                sensors=sensors, acquisition=acq, p0=np.ones((16, 16), np.float32),
                grid=Grid(16, 0.004), true_sensors=sensors.perturbed(jitter_std=1e-4, seed=1),
                setup_name="s", setup_toml='name = "s"\n', seed=3, metadata={"a": 1})


def test_oatomo_round_trip_is_lossless(tmp_path):
    scan = make_scan((3,))
    path = save_scan(tmp_path / "s.h5", scan)
    back = load_scan(path)
    assert back.sinogram.tobytes() == scan.sinogram.tobytes()
    assert back.sensors == scan.sensors and back.true_sensors == scan.true_sensors
    assert back.acquisition == scan.acquisition and back.grid == scan.grid
    assert (back.setup_name, back.setup_toml, back.seed, back.metadata) == \
        ("s", 'name = "s"\n', 3, {"a": 1})
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


def test_ipasc_written_by_oatomo_reads_in_pacfish(tmp_path):
    pf = pytest.importorskip("pacfish")
    scan = make_scan((2,))
    path = save_scan(tmp_path / "s.hdf5", scan, format="ipasc")
    pa = pf.load_data(str(path))
    # IPASC signals start at the pulse: t0 = 0.1 us at 20 MHz is 2 leading zero samples
    assert pa.binary_time_series_data.shape == (8, 66, 1, 2)
    np.testing.assert_allclose(pa.binary_time_series_data[:, 2:, 0, 1], scan.sinogram[1])
    assert pa.get_sampling_rate() == 20e6
    pos = np.stack([pa.get_detector_position(i) for i in pa.get_detector_ids()])
    np.testing.assert_allclose(pos[:, :2], scan.sensors.positions)
    back = load_scan(path)
    np.testing.assert_allclose(back.sinogram[..., 2:], scan.sinogram)
    assert back.acquisition.t0 == 0 and not back.sinogram[..., :2].any()


def test_z_positions_are_kept_as_a_3d_array(tmp_path):
    """A PATATO file with z != 0 is a 3-D scan: z kept exactly, never projected, and a
    2-D-only operation on it is a one-line error."""
    from oatomo.io import default_grid

    path = tmp_path / "z.hdf5"
    with h5py.File(DATA / "patato_ring16.hdf5") as src, h5py.File(path, "w") as f:
        for k, v in src.attrs.items():
            f.attrs[k] = v
        f["raw_data"] = src["raw_data"][...]
        geo = src["GEOMETRY"][...]
        geo[:, 2] = 1e-3
        f["GEOMETRY"] = geo
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan = load_scan(path)
    assert scan.is_3d
    np.testing.assert_array_equal(scan.sensors.positions, geo)
    with pytest.raises(InputError, match="3-D sensor positions") as err:
        default_grid(scan)
    assert "\n" not in str(err.value)


def test_images_round_trip(tmp_path):
    g = Grid(8, 0.001)
    save_images(tmp_path / "i.h5", {"ubp": np.eye(8)}, g, attrs={"method": "ubp"})
    images, grid = load_images(tmp_path / "i.h5")
    assert grid == g and np.array_equal(images["ubp"], np.eye(8, dtype=np.float32))


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="nope.h5: file not found"):
        load_scan(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(InputError, match="text.h5: not an HDF5 file"):
        load_scan(tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="empty.h5: no sinogram found"):
        load_scan(tmp_path / "empty.h5")


def test_ipasc_round_trip_keeps_orientations(tmp_path):
    scan = make_scan()
    turned = scan.sensors.perturbed(angular_std=0.3, seed=4)  # normals not facing the centre
    scan.sensors = type(turned)(scan.sensors.positions, turned.normals)
    back = load_scan(save_scan(tmp_path / "s.hdf5", scan, format="ipasc"))
    np.testing.assert_allclose(back.sensors.normals, scan.sensors.normals, atol=1e-12)
    np.testing.assert_allclose(back.sensors.positions, scan.sensors.positions, atol=1e-12)
