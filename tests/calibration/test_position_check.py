"""The position check and ``calibrate="auto"``, the default of ``oatomo reconstruct``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

import oatomo
from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo import kernels as K
from oatomo.calibration import calibrate, check_positions
from oatomo.calibration.levels import lowpass_fft
from oatomo.cli import main
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.forward import simulate
from oatomo.io import Scan, save_scan
from oatomo.phantoms import disks
from oatomo.pipeline import policy

GRID = Grid(64, 0.0128)
ACQ = Acquisition(20e6, 512, speed_of_sound=1500.0)
NOMINAL = ring_array(32, 0.0225)
P0 = disks(GRID, seed=3, count=6)


def _scan(true, noise_seed: int = 0) -> Scan:
    y = simulate(P0, GRID, true, ACQ, noise_std=0.005, seed=noise_seed)
    return Scan(sinogram=y, sensors=NOMINAL, acquisition=ACQ, p0=P0, grid=GRID)


@pytest.fixture()
def fast_calibration(monkeypatch):
    """The pipeline's calibration with fewer levels, folds and iterations (tests only: the
    full default takes 15-20 s a scan on a busy 2-core machine)."""
    real = calibrate

    def fast(scan, grid=None, **kwargs):
        return real(scan, grid, n_levels=2, n_folds=4, n_iter=15, **kwargs)

    monkeypatch.setattr(policy, "calibrate_scan", fast)


@pytest.fixture(scope="module")
def exact() -> Scan:
    return _scan(NOMINAL)


@pytest.fixture(scope="module")
def perturbed() -> Scan:
    return _scan(NOMINAL.perturbed(radial_std=0.3e-3, angular_std=0.01, seed=4))


def _rotated(angle: float):
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, -s], [s, c]])
    return oatomo.SensorArray(NOMINAL.positions @ R.T, NOMINAL.normals @ R.T)


def test_check_tells_misplaced_sensors_from_correct_ones(exact, perturbed) -> None:
    ok = check_positions(exact.sinogram, NOMINAL, ACQ, GRID)
    bad = check_positions(perturbed.sinogram, NOMINAL, ACQ, GRID)
    assert ok.threshold == pytest.approx(0.25 * GRID.dx)
    assert not ok.needs_calibration and ok.spread < 0.5 * ok.threshold
    # radial errors of 0.3 mm rms: the check sees most of them
    assert bad.needs_calibration and 0.15e-3 < bad.spread < 0.5e-3
    assert bad.correlation > 0.5 and bad.reason == ""
    again = check_positions(perturbed.sinogram, NOMINAL, ACQ, GRID)
    assert again.spread == bad.spread and again.noise == bad.noise  # deterministic


def test_check_sees_a_wrong_speed_of_sound_as_a_common_shift(exact) -> None:
    ok = check_positions(exact.sinogram, NOMINAL, ACQ, GRID)
    assert abs(ok.offset) < 0.2 * ok.threshold and ok.n_sensors == 32
    y = simulate(P0, GRID, NOMINAL, ACQ.__class__(ACQ.fs, ACQ.n_samples, 1515.0),
                 noise_std=0.005, seed=0)  # the medium is 1 % faster than the file says
    off = check_positions(y, NOMINAL, ACQ, GRID)
    assert off.spread < off.threshold  # every sensor shifts alike ...
    # ... by about 1 % of the distance to the object (22.5 mm): 225 um, inwards
    assert off.needs_calibration and 120e-6 < off.offset < 400e-6


def test_check_cannot_see_a_rigid_motion() -> None:
    """A rotated array gives the same data as a rotated object: nothing to calibrate."""
    scan = _scan(_rotated(0.05))
    assert not check_positions(scan.sinogram, NOMINAL, ACQ, GRID).needs_calibration


def test_check_bad_input() -> None:
    y = np.zeros((32, 512), np.float32)
    with pytest.raises(InputError, match="all zero"):
        check_positions(y, NOMINAL, ACQ, GRID)
    with pytest.raises(InputError, match="at least 8 sensors"):
        check_positions(y[:6], ring_array(6, 0.02), ACQ, GRID)
    with pytest.raises(InputError, match="threshold"):
        check_positions(y + 1, NOMINAL, ACQ, GRID, threshold=float("nan"))


def test_auto_calibrates_only_when_the_data_disagree(fast_calibration, exact, perturbed) -> None:
    rec = oatomo.reconstruct(exact)  # all defaults
    prov = rec.provenance
    assert prov["method"] == "mb-tv" and prov["calibration"] is None and not rec.refined
    assert prov["position_check"]["needs_calibration"] is False
    # the shipped TV refiner covers pitches of 0.075-0.15 mm; this grid's is 0.2 mm
    assert "the model accepts 0.075 to 0.15 mm" in prov["refinement"]["reason"]

    before = perturbed.sinogram.copy()
    rec = oatomo.reconstruct(perturbed)
    np.testing.assert_array_equal(perturbed.sinogram, before)  # the input is untouched
    prov = rec.provenance
    assert prov["position_check"]["needs_calibration"] is True
    assert prov["method"] == "mb-tv" and prov["calibration"] is not None
    # calibrated TV goes to the TV refiner like any TV image; this grid's pitch is outside it
    assert not rec.refined and "self-calibrated" not in prov["refinement"]["reason"]
    assert "the model accepts 0.075 to 0.15 mm" in prov["refinement"]["reason"]
    assert {"check", "calibrate", "mb-tv"} <= set(prov["timings"])
    # the point of it: better than TV with the file's positions
    nominal = oatomo.reconstruct(perturbed, "mb-tv", calibrate=False, refine=False)

    def score(img: np.ndarray) -> float:
        return psnr(affine_fit(img[None], P0[None])[0], P0, data_range=1.0)

    assert score(rec.image) > score(nominal.image) + 3.0


def test_auto_with_explicit_method_or_refine(fast_calibration, perturbed) -> None:
    rec = oatomo.reconstruct(perturbed, "ubp", refine=False)
    assert rec.provenance["method"] == "ubp" and rec.provenance["calibration"] is not None
    # the scanner-family refiner of UBP images, which takes nominal images
    rec = oatomo.reconstruct(perturbed, "ubp", refine=True)
    check = rec.provenance["position_check"]
    assert check["needs_calibration"] and "why_not" in check
    assert rec.provenance["calibration"] is None and rec.refined
    assert rec.provenance["method"] == "ubp"  # refine=True refines the refiner's input
    rec = oatomo.reconstruct(perturbed, calibrate=False, refine=False)
    assert rec.provenance["position_check"] is None
    with pytest.raises(InputError, match="calibrate must be"):
        oatomo.reconstruct(perturbed, calibrate="sometimes")


def test_auto_skips_what_it_cannot_check(exact) -> None:
    few = ring_array(6, 0.0225)
    y = simulate(P0, GRID, few, ACQ)
    rec = oatomo.reconstruct(Scan(sinogram=y, sensors=few, acquisition=ACQ, grid=GRID),
                             refine=False)
    assert rec.provenance["position_check"] == {"needs_calibration": False,
                                                "reason": "fewer than 8 sensors"}
    rec = oatomo.reconstruct(exact, refine=False, calibration={"speed_of_sound": 1500.0})
    assert rec.provenance["position_check"]["reason"] == "a calibration was given"


def test_cli_calibrate_choices(fast_calibration, tmp_path, perturbed, capsys) -> None:
    src = tmp_path / "scan.h5"
    save_scan(src, perturbed)
    out = tmp_path / "img.h5"
    assert main(["reconstruct", str(src), "-o", str(out), "--no-refine"]) == 0
    text = capsys.readouterr().out
    assert "they disagree: self-calibrated" in text and "with mb-tv" in text
    assert main(["reconstruct", str(src), "-o", str(out), "--force", "--no-calibrate",
                 "--no-refine"]) == 0
    text = capsys.readouterr().out
    assert "checked the sensor positions" not in text and "with mb-tv" in text
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", str(src), "--calibrate", "maybe"])
    assert exc.value.code == 2


def test_fft_lowpass_matches_the_butterworth_filter() -> None:
    """The check's frequency-domain low-pass against SciPy's forward-backward filter."""
    rng = np.random.default_rng(0)
    x = np.zeros((3, 1024), np.float32)
    x[:, 300:700] = rng.standard_normal((3, 400))  # away from the record's edges
    fs, fc = 20e6, 1.5e6
    ref = sosfiltfilt(butter(4, fc, fs=fs, output="sos"), x, axis=-1)
    got = lowpass_fft(x, fs, fc)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max()


def test_fft_convolution_of_the_kernel_table() -> None:
    rng = np.random.default_rng(1)
    for n in (7, 8, 1001):
        a, b = rng.random(n), rng.random(n)
        np.testing.assert_allclose(K._convolve_same(a, b), np.convolve(a, b, mode="same"),
                                   rtol=1e-10, atol=1e-12)
    table = K._hat_projection_table()  # unit integral, non-negative
    assert table.min() >= 0
    np.testing.assert_allclose(table.sum(axis=1) * K._S_STEP, 1.0, atol=2e-3)


def test_on_an_arc_the_check_also_tests_the_speed_of_sound():
    """A 200 degree arc sees a 1 % wrong speed of sound as no common shift (its own image
    absorbs it), but the held-out speed search does; a ring is not searched."""
    from oatomo.calibration.check import CHECK_SPEED_DROP

    angles = -math.pi / 2 + np.radians(np.linspace(-100, 100, 48))
    pos = 0.0225 * np.stack([np.cos(angles), np.sin(angles)], 1)
    arc = oatomo.SensorArray(pos, -pos / 0.0225)
    y = simulate(P0, GRID, arc, ACQ, noise_std=0.005, seed=1)
    ok = check_positions(y, arc, ACQ, GRID)
    assert ok.speed_drop is not None and ok.speed_drop <= CHECK_SPEED_DROP
    assert not ok.needs_calibration
    wrong = Acquisition(ACQ.fs, ACQ.n_samples, speed_of_sound=1515.0)  # the file 1 % off
    off = check_positions(y, arc, wrong, GRID)
    assert off.speed_drop > CHECK_SPEED_DROP and off.needs_calibration, off
    assert off.to_dict()["speed_drop"] == off.speed_drop
    # the drop alone asks (the correct file's check with a drop just above the bar)
    import dataclasses

    assert dataclasses.replace(ok, speed_drop=1.01 * CHECK_SPEED_DROP).needs_calibration
    assert check_positions(_scan(NOMINAL).sinogram, NOMINAL, ACQ, GRID).speed_drop is None


def test_check_and_calibration_run_on_one_blas_thread(monkeypatch, exact):
    """The check and the calibration hold OpenBLAS to one thread while they run (its
    threads, woken by the vector algebra between Numba's kernels, would spin on the
    kernels' cores) and give the count back afterwards."""
    import oatomo.calibration.check as check_module
    import oatomo.calibration.estimate as estimate_module
    from oatomo._blas import _candidates, openblas

    if not _candidates():
        pytest.skip("NumPy's BLAS is not the OpenBLAS its wheels bundle")
    put, get = openblas()
    seen = {}

    class Stop(Exception):
        pass

    def probe(name):
        def inner(*args, **kwargs):
            seen[name] = get()
            raise Stop
        return inner

    monkeypatch.setattr(check_module, "scout", probe("check"))
    monkeypatch.setattr(estimate_module, "position_prior", probe("calibrate"))
    before = get()
    put(2)
    try:
        with pytest.raises(Stop):
            check_positions(exact.sinogram, exact.sensors, exact.acquisition, GRID)
        assert get() == 2
        with pytest.raises(Stop):
            calibrate(exact, GRID)
        assert get() == 2
    finally:
        put(before)
    assert seen == {"check": 1, "calibrate": 1}
