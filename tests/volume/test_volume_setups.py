"""Volume setups: 3-D perturbations (along the normal, tangential, global rigid motion),
TOML in and out, and oatomo simulate of a volume setup file."""

import math

import numpy as np
import pytest
import tomllib

from oatomo import InputError
from oatomo.cli import main
from oatomo.io import load_scan
from oatomo.volume import hemisphere_array, simulate_volume
from oatomo.volume.setups import (
    VolumeSetup,
    is_volume_setup,
    load_volume_setup,
    perturb_array,
    rotation_matrix,
)

TOML = """
name = "hemi64_jitter"
dimensions = 3
description = "64-sensor hemisphere, 50 um along the normal, 30 um tangential"
[array]
kind = "hemisphere"
n_sensors = 64
radius = 0.012
[acquisition]
fs = 40e6
n_samples = 512
[grid]
n = 12
fov = 0.006
[perturbation]
normal_std = 5e-5
tangential_std = 3e-5
offset = [1e-4, 0.0, -2e-4]
rotation = [0.0, 0.0, 0.01]
rotation_std = 0.001
[noise]
relative_std = 0.01
[band]
low = 0.3e6
high = 6e6
"""


def test_errors_act_along_the_normal_and_tangentially():
    arr = hemisphere_array(2000, 0.02)
    d_n = perturb_array(arr, normal_std=1e-4, seed=1).positions - arr.positions
    along = np.sum(d_n * arr.normals, axis=1)
    np.testing.assert_allclose(d_n, along[:, None] * arr.normals, atol=1e-15)
    assert np.std(along) == pytest.approx(1e-4, rel=0.05)
    d_t = perturb_array(arr, tangential_std=1e-4, seed=2).positions - arr.positions
    assert np.abs(np.sum(d_t * arr.normals, axis=1)).max() < 1e-15
    # two tangential axes of 1e-4 each: mean squared length 2e-8
    assert np.mean(np.sum(d_t ** 2, axis=1)) == pytest.approx(2e-8, rel=0.05)


def test_global_motion_is_rigid_and_turns_the_normals():
    arr = hemisphere_array(50, 0.02)
    rot = np.array([0.1, -0.2, 0.3])
    moved = perturb_array(arr, rotation=rot, offset=(1e-3, 2e-3, -1e-3))
    R = rotation_matrix(rot)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-15)
    assert math.degrees(math.acos((np.trace(R) - 1) / 2)) == pytest.approx(
        math.degrees(np.linalg.norm(rot)))
    np.testing.assert_allclose(moved.positions, arr.positions @ R.T + [1e-3, 2e-3, -1e-3],
                               atol=1e-15)
    np.testing.assert_allclose(moved.normals, arr.normals @ R.T, atol=1e-15)
    np.testing.assert_array_equal(moved.areas, arr.areas)


def test_toml_round_trip_and_seeded_draws(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(TOML)
    assert is_volume_setup(path)
    setup = load_volume_setup(path)
    again = VolumeSetup.from_dict(tomllib.loads(setup.to_toml_string()))
    assert again == setup and again.to_dict() == setup.to_dict()
    assert setup.draw(3) == setup.draw(3) and setup.draw(3) != setup.draw(4)
    # positions kind: the drawn array round-trips too
    fixed = VolumeSetup("fixed", setup.draw(3), setup.acquisition, setup.grid)
    back = VolumeSetup.from_dict(tomllib.loads(fixed.to_toml_string()))
    np.testing.assert_array_equal(back.array.positions, fixed.array.positions)


@pytest.mark.parametrize("edit, match", [
    (("relative_std", "relative_sd"), "unknown key 'noise.relative_sd'"),
    (("dimensions = 3", "dimensions = 2"), "dimensions = 3"),
    (('kind = "hemisphere"', 'kind = "cone"'), "array.kind must be one of"),
    (("offset = [1e-4, 0.0, -2e-4]", "offset = [1e-4, 0.0]"), "three numbers"),
    (("[band]", '[detector]\nelement_width = 1e-3\nelement_shape = "hexagon"\n[band]'),
     "element shape must be one of square, disc"),
    (("[band]", "[detector]\nelement_width = -1e-3\n[band]"),
     "element size must be a number > 0"),
    (("[band]", '[detector]\nelement_shape = "disc"\n[band]'),
     "element_shape goes with element_width")])
def test_bad_setup_files_name_the_problem(tmp_path, edit, match):
    path = tmp_path / "bad.toml"
    path.write_text(TOML.replace(*edit))
    with pytest.raises(InputError, match=match) as err:
        load_volume_setup(path)
    assert str(path) in str(err.value)


def test_simulate_a_volume_setup_file(tmp_path, capsys):
    setup_file = tmp_path / "v.toml"
    setup_file.write_text(TOML)
    out = tmp_path / "s.h5"
    assert main(["simulate", "--setup", str(setup_file), "--phantom", "ball", "-o",
                 str(out)]) == 0
    assert "position error rms" in capsys.readouterr().out
    scan = load_scan(out)
    assert scan.is_3d and scan.true_sensors != scan.sensors
    assert VolumeSetup.from_dict(tomllib.loads(scan.setup_toml)) == load_volume_setup(
        setup_file)
    shift = scan.true_sensors.positions - scan.sensors.positions
    assert 1e-5 < np.sqrt(np.mean(np.sum(shift ** 2, axis=1))) < 1e-3


def test_simulate_a_setup_with_flat_elements(tmp_path):
    """[detector] element_width/element_shape: the scan's signals are the elements'."""
    plain, disc = tmp_path / "p.toml", tmp_path / "d.toml"
    quiet = TOML.replace("relative_std = 0.01", "relative_std = 0.0")
    plain.write_text(quiet)
    disc.write_text(quiet.replace("[band]", '[detector]\nelement_width = 8e-4\n'
                                            'element_shape = "disc"\n[band]'))
    setup = load_volume_setup(disc)
    assert setup.element_width == 8e-4 and setup.element_shape == "disc"
    assert VolumeSetup.from_dict(tomllib.loads(setup.to_toml_string())) == setup
    scans = []
    for path in (plain, disc):
        out = path.with_suffix(".h5")
        assert main(["simulate", "--setup", str(path), "--phantom", "ball", "--seed", "1",
                     "-o", str(out), "-q"]) == 0
        scans.append(load_scan(out))
    s = scans[1]
    want = simulate_volume(s.p0, s.grid, s.true_sensors, s.acquisition, band=setup.band,
                           element_size=8e-4, element_shape="disc")
    np.testing.assert_allclose(s.sinogram, want, atol=1e-6 * np.abs(want).max())
    assert not np.allclose(scans[0].sinogram, s.sinogram, atol=1e-3 * np.abs(want).max())
    assert VolumeSetup.from_dict(tomllib.loads(s.setup_toml)) == setup
