"""Property tests of the setup (TOML) and scan (HDF5) readers: whatever the file holds,
the result is a valid object inside the physical ranges or an InputError naming the file."""

import math

import h5py
import numpy as np
import pytest
import tomli_w

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from oatomo import InputError  # noqa: E402
from oatomo._limits import FS_RANGE, MAX_POSITION, MAX_T0, SPEED_RANGE  # noqa: E402
from oatomo.io import load_scan  # noqa: E402
from oatomo.setups import Setup  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 16, 256, 0.0225, 20e6, 1500.0, 1e-300, 1e300, -1.0]))
values = st.one_of(numbers, st.text(max_size=5), st.booleans(),
                   st.lists(numbers, max_size=3),
                   st.lists(st.lists(numbers, min_size=2, max_size=2), max_size=3))


def _section(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: st.one_of(v, values)
                                               for k, v in keys.items()})


documents = st.fixed_dictionaries({
    "name": st.one_of(st.just("s"), values),
    "array": _section({"kind": st.sampled_from(["ring", "positions", "cone"]),
                       "n_sensors": st.integers(-2, 70000), "radius": numbers,
                       "arc": numbers, "start_angle": numbers,
                       "positions": st.lists(st.lists(numbers, min_size=2, max_size=2),
                                             max_size=4)}),
    "acquisition": _section({"fs": numbers, "n_samples": st.integers(-2, 2**21),
                             "speed_of_sound": numbers, "t0": numbers}),
    "grid": _section({"n": st.integers(-2, 9000), "fov": numbers}),
}, optional={
    "perturbation": _section({k: numbers for k in ("radial_std", "angular_std",
                                                   "jitter_std", "offset_std", "rotation",
                                                   "rotation_std")}
                             | {"offset": st.lists(numbers, max_size=3)}),
    "noise": _section({"relative_std": numbers}),
    "band": _section({"low": numbers, "high": numbers}),
    "slab": _section({"thickness": numbers}),
})


@SETTINGS
@given(doc=documents)
def test_setup_reader_valid_or_input_error(doc, tmp_path):
    path = tmp_path / "s.toml"
    try:
        path.write_text(tomli_w.dumps(doc))
    except TypeError:  # a value TOML cannot express
        return
    try:
        setup = Setup.from_toml(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)), exc
        assert "\n" not in str(exc)
        return
    acq = setup.acquisition
    assert FS_RANGE[0] <= acq.fs <= FS_RANGE[1]
    assert SPEED_RANGE[0] <= acq.speed_of_sound <= SPEED_RANGE[1]
    assert abs(acq.t0) <= MAX_T0
    assert np.abs(setup.array.positions).max() <= MAX_POSITION
    for v in (setup.radial_std, setup.angular_std, setup.jitter_std, setup.offset_std,
              setup.rotation_std, *setup.offset):
        assert math.isfinite(v)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_setup_reader_random_bytes(data, tmp_path):
    path = tmp_path / "r.toml"
    path.write_bytes(data)
    try:
        Setup.from_toml(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


attr_values = st.one_of(numbers, st.text(max_size=4), st.booleans(),
                        st.lists(st.floats(width=32), min_size=0, max_size=3))
dtypes = st.sampled_from(["f4", "f8", "i2", "u1", "f2", "c8", "S3", "b1"])


@SETTINGS
@given(fs=attr_values, n_samples=attr_values, c=attr_values, t0=attr_values,
       dtype=dtypes, n_sensors=st.integers(0, 5), n_t=st.integers(0, 6),
       scale=st.sampled_from([1.0, 1e30, 1e300, np.nan]),
       pos_scale=st.sampled_from([0.01, 1e20, 1e40, np.inf]))
def test_scan_reader_valid_or_input_error(fs, n_samples, c, t0, dtype, n_sensors, n_t,
                                          scale, pos_scale, tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f.attrs["oatomo_format"] = "scan"
        f.attrs["format_version"] = 1
        angles = np.arange(n_sensors) * 2 * np.pi / max(n_sensors, 1)
        with np.errstate(all="ignore"):
            sino = (np.ones((n_sensors, n_t)) * scale).astype(dtype)
            pos = pos_scale * np.stack([np.cos(angles), np.sin(angles)], 1)
        f["sinogram"] = sino
        f["sensors/positions"] = pos
        g = f.create_group("acquisition")
        for key, v in (("fs", fs), ("n_samples", n_samples), ("speed_of_sound", c),
                       ("t0", t0)):
            try:
                g.attrs[key] = v
            except (TypeError, ValueError, OverflowError):
                pass
    try:
        scan = load_scan(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc), exc
        return
    assert scan.sinogram.dtype == np.float32 and np.all(np.isfinite(scan.sinogram))
    assert np.abs(scan.sensors.positions).max() <= MAX_POSITION
    acq = scan.acquisition
    assert FS_RANGE[0] <= acq.fs <= FS_RANGE[1] and abs(acq.t0) <= MAX_T0
    assert SPEED_RANGE[0] <= acq.speed_of_sound <= SPEED_RANGE[1]
