"""Two speeds of sound through :func:`oatomo.reconstruct`: presets and calibration files."""

from __future__ import annotations

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, SpeedMap, ring_array, simulate
from oatomo.errors import InputError
from oatomo.io import Scan, load_calibration, save_calibration
from oatomo.pipeline.presets import Preset

MM = 1e-3


@pytest.fixture(scope="module")
def scan():
    g = Grid(48, 0.0128)
    ring = ring_array(32, 0.02)
    acq = Acquisition(40e6, 1000, 1500.0)
    X, Y = g.coordinates()
    p0 = np.exp(-((X - 3 * MM) ** 2 + Y ** 2) / (2 * (0.3 * MM) ** 2)).astype(np.float32)
    return Scan(simulate(p0, g, ring, acq, speed_map=SpeedMap(1500.0, 1600.0, 5 * MM)),
                ring, acq)


def test_preset_calibration_file_and_keywords_give_the_same_image(scan, tmp_path):
    kw = dict(method="ubp", n=48, fov=0.0128, refine="auto")
    direct = oatomo.reconstruct(scan, object_speed_of_sound=1600.0, object_radius=5 * MM,
                                **kw)
    assert direct.provenance["speed_map"] == {
        "speed_of_sound": 1500.0, "object_speed_of_sound": 1600.0, "object_radius": 0.005,
        "object_centre": [0.0, 0.0]}
    assert direct.provenance["position_check"]["needs_calibration"] is False
    assert "two speeds" in direct.provenance["refinement"]["reason"]
    toml = tmp_path / "p.toml"
    toml.write_text('name = "disc"\nobject_speed_of_sound = 1600.0\nobject_radius = 0.005\n'
                    'object_centre = [0.0, 0.0]\n')
    by_preset = oatomo.reconstruct(scan, preset=toml, **kw)
    cal = save_calibration(tmp_path / "cal.json", {"speed_of_sound": 1500.0,
                                                   "object_speed_of_sound": 1600.0,
                                                   "object_radius": 0.005})
    assert load_calibration(cal)["object_radius"] == 0.005
    by_file = oatomo.reconstruct(scan, calibration=cal, **kw)
    one = oatomo.reconstruct(scan, **kw)
    assert one.provenance["speed_map"] is None
    assert np.array_equal(by_preset.image, direct.image)
    assert np.array_equal(by_file.image, direct.image)
    assert not np.array_equal(one.image, direct.image)


def test_bad_region_in_a_preset_or_a_calibration_names_the_key(tmp_path):
    with pytest.raises(InputError, match="preset key object_radius needs preset key "
                                         "object_speed_of_sound"):
        Preset.from_dict({"name": "x", "object_radius": 0.005})
    with pytest.raises(InputError, match=r"preset key object_radius must be in \(0, 10\]"):
        Preset.from_dict({"name": "x", "object_radius": [0.005, -1.0],
                          "object_speed_of_sound": 1540.0})
    with pytest.raises(InputError, match="calibration key object_speed_of_sound needs"):
        load_calibration({"speed_of_sound": 1500.0, "object_speed_of_sound": 1540.0})
