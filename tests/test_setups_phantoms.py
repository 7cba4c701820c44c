"""Setups (TOML in/out, draws) and phantoms."""

import math
import sys

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from oatomo import Grid, InputError
from oatomo import phantoms as P
from oatomo.setups import SIMULATIONS_DIR, Setup, bundled_setups, load_setup

RING = """
name = "t"
[array]
n_sensors = 16
radius = 0.02
[acquisition]
fs = 20e6
n_samples = 512
[grid]
n = 32
fov = 0.0064
"""


def test_every_bundled_setup_loads_and_round_trips():
    names = bundled_setups()
    for required in ("ring256_r40", "ring32_r22", "ring32_ideal", "ring32_radial",
                     "ring32_angular", "ring32_jitter", "ring32_offset"):
        assert required in names
    for name in names:
        s = load_setup(name)
        assert Setup.from_dict(tomllib.loads(s.to_toml_string())) == s
        assert hash(s) == hash(load_setup(SIMULATIONS_DIR / f"{name}.toml"))
    big = load_setup("ring256_r40")
    assert (big.array.n_sensors, big.acquisition.n_samples, big.grid.n) == (256, 2030, 256)
    assert big.acquisition.fs == 40e6 and math.isclose(big.grid.dx, 1e-4)


def test_draw_is_seeded_and_follows_the_distribution():
    s = load_setup("ring32_radial")
    assert s.draw(5) == s.draw(5) and s.draw(5) != s.draw(6)
    r = np.concatenate([np.hypot(*s.draw(k).positions.T) for k in range(200)])
    assert abs(np.std(r - 0.0225) / 2e-4 - 1) < 0.05
    off = load_setup("ring32_offset")
    shifts = np.array([(off.draw(k).positions - off.array.positions).mean(0) for k in range(300)])
    assert abs(shifts.std() / 3e-4 - 1) < 0.12
    ideal = load_setup("ring32_ideal")
    assert ideal.draw(3) == ideal.array


def test_toml_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(RING + "[perturbation]\nradial_sdt = 1e-4\n")
    with pytest.raises(InputError, match=r"bad.toml: unknown key 'perturbation.radial_sdt'"):
        Setup.from_toml(bad)
    bad.write_text(RING.replace("n_samples = 512", 'n_samples = "512"'))
    with pytest.raises(InputError, match="acquisition.n_samples' must be a integer|integer"):
        Setup.from_toml(bad)
    bad.write_text(RING.replace("fs = 20e6", "fs = -1.0"))
    with pytest.raises(InputError, match="fs must lie in"):
        Setup.from_toml(bad)
    bad.write_text("name = [")
    with pytest.raises(InputError, match="not valid TOML"):
        Setup.from_toml(bad)
    with pytest.raises(InputError, match="unknown setup 'nope'"):
        load_setup("nope")


def test_phantoms_deterministic_and_sane():
    g = Grid(64, 0.0064)
    for name in ("vessels", "vessel-tree", "disks"):
        a, b = P.make(name, g, 3), P.make(name, g, 3)
        assert a.dtype == np.float32 and a.shape == g.shape
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != P.make(name, g, 4).tobytes()
        assert a.min() >= 0 and math.isclose(float(a.max()), 1.0, rel_tol=1e-6)
    d = P.disk(Grid(128, 0.0128), 2.5e-3, (1e-3, -5e-4), supersample=8)
    assert abs(d.sum() * 1e-8 / (math.pi * 2.5e-3**2) - 1) < 0.01
    sl = P.shepp_logan(g)
    assert sl.shape == g.shape and sl.max() == 1


def test_phantom_from_user_file(tmp_path):
    g = Grid(32, 0.0032)
    img = np.zeros((50, 40))
    img[10:20, 5:30] = 3.0
    np.save(tmp_path / "p.npy", img)
    out = P.make(str(tmp_path / "p.npy"), g)
    assert out.shape == g.shape and math.isclose(float(out.max()), 1.0, rel_tol=1e-6)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png: not a PNG file"):
        P.make(str(tmp_path / "broken.png"), g)
    with pytest.raises(InputError, match="unknown phantom"):
        P.make("cow", g)
