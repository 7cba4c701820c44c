"""oatomo simulate --array, reconstruct and info on scans with 3-D sensor positions."""

import h5py
import numpy as np
import pytest

from oatomo.cli import main
from oatomo.io import load_images, load_scan


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("vol")
    path = d / "scan3d.h5"
    assert main(["simulate", "--array", "hemisphere:48:0.012", "--phantom", "vessels3d",
                 "--n", "12", "--fov", "0.006", "-o", str(path), "-q"]) == 0
    return path


def test_simulate_writes_a_3d_scan(scan_file):
    scan = load_scan(scan_file)
    assert scan.is_3d and scan.sensors.n_sensors == 48 and scan.p0.shape == (12, 12, 12)
    assert scan.metadata["phantom"] == "vessels3d"


def test_reconstruct_writes_a_volume_and_its_projections(scan_file, capsys):
    out = scan_file.with_name("v_das.h5")
    assert main(["reconstruct", str(scan_file), "--method", "das", "--n", "10", "--fov",
                 "0.006", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2-D this round" in text and "3-D scan is not refined" in text
    images, grid = load_images(out)
    assert images["das"].shape == (10, 10, 10) and grid.shape == (10, 10, 10)
    with h5py.File(out) as f:
        assert f["images/das"].attrs["axes"] == "z, y, x"
        assert f["images/das"].attrs["units"] == "a.u."
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert main(["info", str(out)]) == 0
    assert "10x10x10 voxels (z, y, x)" in capsys.readouterr().out


def test_default_reconstruction_is_tv_on_the_truth_grid(scan_file, capsys):
    assert main(["reconstruct", str(scan_file), "--iters", "3", "--png", "none",
                 "--force"]) == 0
    images, _ = load_images(scan_file.with_name("scan3d_mb-tv.h5"))
    assert set(images) == {"mb-tv", "truth"} and images["mb-tv"].shape == (12, 12, 12)


def test_reconstruct_with_square_elements(scan_file, tmp_path):
    out = tmp_path / "elem.h5"
    assert main(["reconstruct", str(scan_file), "--method", "ubp", "--element-width", "5e-4",
                 "--png", "none", "-o", str(out)]) == 0
    with h5py.File(out) as f:
        attrs = dict(f["images/ubp"].attrs) | dict(f.attrs)
    assert "square" in str(attrs) and "0.0005" in str(attrs)


def test_info_shows_3d_sensors(scan_file, capsys):
    assert main(["info", str(scan_file)]) == 0
    out = capsys.readouterr().out
    assert "48 in 3-D" in out and "12x12x12 (z, y, x)" in out


@pytest.mark.parametrize("extra, match", [
    (["--refine"], "not refined"), (["--calibrate", "yes"], "2-D this round"),
    (["--method", "fbp"], "no volume counterpart"),
    (["--element-width", "0"], "--element-width must be in (0, 10] metres"),
    (["--element-shape", "disc"], "--element-shape goes with --element-width")])
def test_two_d_options_exit_2_in_one_line(scan_file, tmp_path, capsys, extra, match):
    code = main(["reconstruct", str(scan_file), "-o", str(tmp_path / "x.h5"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "x.h5").exists()


def test_two_d_commands_refuse_a_3d_scan(scan_file, tmp_path, capsys):
    for argv in (["calibrate", str(scan_file), "-o", str(tmp_path / "c.h5")],
                 ["autofocus", str(scan_file)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "3-D sensor positions" in err and err.count("\n") == 1


def test_simulate_array_errors(tmp_path, capsys):
    for argv, match in ((["--array", "cone:8:0.01"], "must start with"),
                        (["--array", "hemisphere:8"], "hemisphere:N:RADIUS"),
                        (["--array", "hemisphere:8:0.01", "--phantom", "disk"],
                         "not a volume phantom"),
                        (["--setup", "ring32_r22", "--array", "hemisphere:8:0.01"],
                         "either --setup")):
        assert main(["simulate", *argv, "-o", str(tmp_path / "s.h5")]) == 2
        assert match in capsys.readouterr().err


def test_multi_frame_volume_scan(scan_file, tmp_path):
    from oatomo.io import save_scan

    scan = load_scan(scan_file)
    scan.sinogram = np.stack([scan.sinogram, -scan.sinogram])
    save_scan(tmp_path / "two.h5", scan, format="ipasc")
    out = tmp_path / "two_ubp.h5"
    assert main(["reconstruct", str(tmp_path / "two.h5"), "--method", "ubp", "--n", "8",
                 "--fov", "0.006", "-o", str(out), "-q"]) == 0
    images, _ = load_images(out)
    np.testing.assert_allclose(images["ubp"][1], -images["ubp"][0], atol=1e-6)
    with h5py.File(out) as f:
        assert f["images/ubp"].attrs["axes"] == "frame, z, y, x"
