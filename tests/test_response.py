"""Detector response: closed form on the disk, adjoint with the response, deconvolution."""

import math
import warnings
from dataclasses import replace

import h5py
import numpy as np
import pytest
from test_forward import aa_disk, disk_integral

import oatomo
from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.cli import main
from oatomo.errors import UnitWarning
from oatomo.forward import ForwardOperator, simulate
from oatomo.io import load_scan, save_scan
from oatomo.response import (
    DEFAULT_WIENER,
    DetectorResponse,
    convolve,
    correlate,
    operator_convolve,
    operator_correlate,
    wiener_deconvolve,
)
from oatomo.setups import load_setup

C = 1500.0
GAUSS = DetectorResponse(centre_frequency=3e6, bandwidth=0.8)


def test_gaussian_band_on_the_disk_closed_form():
    """simulate(..., response) against the closed form: the running integral of the
    recorded signal is h * F, the disk's closed-form running integral
    F(t) = h q/(2 pi c) alpha(c t) convolved (quadrature) with the closed-form h(t).

    A 1 MHz band keeps the pixel model's own error (about 1 % on the running integral) out
    of the comparison; the 3 MHz band is checked on the closed-form samples themselves.
    """
    grid = Grid(128, 0.0128)
    sensors = ring_array(12, 0.0225)
    acq = Acquisition(40e6, 1300, speed_of_sound=C)
    q, a, center = 2.0, 25 * grid.dx, (1.3e-3, -0.7e-3)
    low = DetectorResponse(centre_frequency=1e6, bandwidth=1.0)
    y = simulate(q * aa_disk(grid, a, center), grid, sensors, acq, response=low)
    dt = 1 / acq.fs
    step = dt / 16
    half = int(1.2 / low.sigma / step)
    h = low.impulse(np.arange(-half, half + 1) * step) * step  # quadrature weights
    t_fine = np.arange(-half, int((acq.n_samples + 1) * 16) + half) * step - 0.5 * dt
    edges = np.arange(acq.n_samples + 1) * 16 + half  # indices of the sample edges in t_fine
    errors = []
    for k in range(sensors.n_sensors):
        R = math.hypot(*(sensors.positions[k] - center))
        F = grid.dx * q / (2 * math.pi * C) * disk_integral(R, a, C * np.maximum(t_fine, 0))
        ref = np.convolve(F, h, mode="same")[edges[1:]]  # at each sample's upper edge
        got = np.cumsum(y[k].astype(np.float64)) * dt
        errors.append(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    assert max(errors) < 0.02, errors  # measured 0.8 %
    # and the response matters: without it the integrals are far from the reference
    y0 = simulate(q * aa_disk(grid, a, center), grid, sensors, acq)
    assert np.linalg.norm(np.cumsum(y0[-1]) * dt - ref) / np.linalg.norm(ref) > 0.3
    # the 3 MHz band on the closed-form interval averages of p (no pixel model)
    h = GAUSS.impulse(np.arange(-half, half + 1) * step) * step
    exact = np.diff(F[edges]) / dt
    ref = np.convolve(F, h, mode="same")[edges[1:]]
    got = np.cumsum(convolve(exact[None], acq.fs, GAUSS)[0].astype(np.float64)) * dt
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.03  # measured 1.3 %


def test_closed_form_transform_pair():
    """H(f) of the Gaussian band and its closed-form h(t) are a Fourier pair; peak gain 1,
    half maximum at fc (1 +- b/2)."""
    fc, b = GAUSS.centre_frequency, GAUSS.bandwidth
    H = GAUSS.frequency_response(np.array([fc, fc * (1 - b / 2), fc * (1 + b / 2)])).real
    np.testing.assert_allclose(H, [1, 0.5, 0.5], atol=1e-4)
    t = np.linspace(-2e-6, 2e-6, 8001)
    f = np.array([0.0, 1e6, 2.5e6, 3e6, 4.2e6])
    ft = (GAUSS.impulse(t)[None, :] * np.exp(-2j * np.pi * f[:, None] * t)).sum(1) * (t[1] - t[0])
    np.testing.assert_allclose(ft, GAUSS.frequency_response(f), atol=1e-6)


@pytest.mark.parametrize("response", [
    GAUSS, DetectorResponse(impulse_response=np.random.default_rng(3).standard_normal(41),
                            fs=30e6)])
def test_dot_product_with_response(response):
    grid = Grid(40, 0.008)
    sensors = ring_array(15, 0.012)
    acq = Acquisition(30e6, 400, t0=1e-6)
    op = ForwardOperator(grid, sensors, acq, response=response)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(grid.shape).astype(np.float32)
    y = rng.standard_normal((sensors.n_sensors, acq.n_samples)).astype(np.float32)
    ax, aty = op.forward(x).astype(np.float64), op.adjoint(y).astype(np.float64)
    assert abs(np.vdot(ax, y) - np.vdot(x, aty)) <= 1e-4 * np.linalg.norm(ax) * np.linalg.norm(y)
    plain = ForwardOperator(grid, sensors, acq)
    np.testing.assert_allclose(ax, convolve(plain.forward(x), acq.fs, response),
                               atol=1e-5 * np.abs(ax).max())
    u = rng.standard_normal((3, 77))
    v = rng.standard_normal((3, 77))
    assert np.vdot(convolve(u, 30e6, response), v) == pytest.approx(
        np.vdot(u, correlate(v, 30e6, response)), rel=1e-5)
    # the operator's float32 transforms: the float64 filters to float32 rounding, adjoint
    u32, v32 = u.astype(np.float32), v.astype(np.float32)
    for fast, exact in ((operator_convolve, convolve), (operator_correlate, correlate)):
        got = fast(u32, 30e6, response)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(got, exact(u32, 30e6, response),
                                   atol=2e-6 * np.abs(exact(u32, 30e6, response)).max())
    assert np.vdot(operator_convolve(u32, 30e6, response).astype(np.float64), v) == \
        pytest.approx(np.vdot(u, operator_correlate(v32, 30e6, response)), rel=1e-5)


def test_measured_response_time_zero_is_the_middle_sample():
    """PATATO's convention: a unit sample at len // 2 is the identity; one sample later
    delays the signals by one sample."""
    x = np.random.default_rng(1).standard_normal((4, 100)).astype(np.float32)
    unit = np.zeros(33)
    unit[16] = 1
    np.testing.assert_allclose(convolve(x, 20e6, DetectorResponse(impulse_response=unit,
                                                                   fs=20e6)), x, atol=1e-6)
    late = np.roll(unit, 3)
    got = convolve(x, 20e6, DetectorResponse(impulse_response=late, fs=20e6))
    np.testing.assert_allclose(got[:, 3:], x[:, :-3], atol=1e-6)
    np.testing.assert_allclose(got[:, :3], 0, atol=1e-6)
    with pytest.raises(InputError, match="sampled at 2e\\+07 Hz"):
        convolve(x, 40e6, DetectorResponse(impulse_response=unit, fs=20e6))


def test_wiener_undoes_the_response_in_band():
    """A pulse inside the pass band comes back after convolution and deconvolution."""
    fs = 40e6
    t = (np.arange(512) - 256) / fs
    pulse = (np.exp(-(t / 0.4e-6) ** 2) * np.cos(2 * np.pi * 3e6 * t))[None]
    blurred = convolve(pulse, fs, GAUSS)
    assert np.abs(blurred - pulse).max() > 0.1
    back = wiener_deconvolve(blurred, fs, GAUSS, lam=1e-6)
    np.testing.assert_allclose(back, pulse, atol=2e-3)
    with pytest.raises(InputError, match="regularisation"):
        wiener_deconvolve(blurred, fs, GAUSS, lam=0)


@pytest.mark.parametrize("kw, match", [
    ({}, "either"), ({"centre_frequency": 5e6}, "bandwidth must be"),
    ({"centre_frequency": 5e6, "bandwidth": -1}, "> 0"),
    ({"impulse_response": [1.0, 2.0]}, "fs > 0"),
    ({"impulse_response": [0.0, 0.0], "fs": 1e6}, "not all zero"),
    ({"centre_frequency": 5e6, "bandwidth": 0.5, "impulse_response": [1.0], "fs": 1e6},
     "either")])
def test_bad_responses(kw, match):
    with pytest.raises(InputError, match=match):
        DetectorResponse(**kw)


def _ring16_setup(path, detector):
    """Write a 16-sensor ring setup named after ``path`` with the ``[detector]`` lines."""
    path.write_text(f'name = "{path.stem}"\n[array]\nkind = "ring"\nn_sensors = 16\n'
                    'radius = 0.01\n[acquisition]\nfs = 20e6\nn_samples = 300\n[grid]\n'
                    f'n = 32\nfov = 0.008\n[detector]\n{detector}')
    return path


def test_setup_scan_file_and_patato_irf_carry_the_response(tmp_path, capsys):
    setup = _ring16_setup(tmp_path / "band.toml", "centre_frequency = 2e6\nbandwidth = 0.6\n")
    s = load_setup(setup)
    assert s.response == DetectorResponse(centre_frequency=2e6, bandwidth=0.6)
    (tmp_path / "again.toml").write_text(s.to_toml_string())
    assert load_setup(tmp_path / "again.toml").response == s.response
    out = tmp_path / "scan.h5"
    assert main(["simulate", "--setup", str(setup), "--phantom", "disk", "-o", str(out)]) == 0
    scan = load_scan(out)
    assert scan.response == s.response
    assert main(["info", str(out)]) == 0
    assert "detector:        Gaussian band, 2 MHz, 60% bandwidth" in capsys.readouterr().out
    # the simulated signals carry the response: what the plain model gives, convolved
    ideal = simulate(scan.p0, scan.grid, scan.true_sensors, scan.acquisition)
    np.testing.assert_allclose(scan.sinogram, convolve(ideal, 20e6, s.response),
                               atol=1e-5 * np.abs(scan.sinogram).max())
    measured = DetectorResponse(impulse_response=[0.2, 1.0, -0.3], fs=20e6)
    save_scan(out, replace(scan, response=measured))
    assert load_scan(out).response == measured
    # a PATATO file's irf (time zero in the middle) is read, not ignored
    pat = tmp_path / "patato.h5"
    with h5py.File(pat, "w") as f:
        f.attrs["fs"], f.attrs["speedofsound"] = 20e6, 1500.0
        f["raw_data"] = scan.sinogram[None, None]
        f["GEOMETRY"] = np.c_[scan.sensors.positions, np.zeros(16)]
        f["irf"] = np.array([0.0, 0.5, 1.0, 0.5, 0.0])
    assert load_scan(pat).response == DetectorResponse(
        impulse_response=[0.0, 0.5, 1.0, 0.5, 0.0], fs=20e6)


def test_pipeline_and_cli_deconvolve(tmp_path, capsys):
    """deconvolve=... equals Wiener deconvolution then the method; the CLI says so."""
    grid, ring, acq = Grid(32, 0.008), ring_array(16, 0.01), Acquisition(20e6, 300)
    y = simulate(aa_disk(grid, 1e-3, (0, 0)), grid, ring, acq, response=GAUSS)
    scan = oatomo.Scan(y, ring, acq, response=GAUSS)
    want = oatomo.backproject(wiener_deconvolve(y, acq.fs, GAUSS, 1e-3), grid, ring, acq, "ubp")
    rec = oatomo.reconstruct(scan, "ubp", grid, deconvolve=1e-3, refine=False)
    np.testing.assert_array_equal(rec.image, want)
    assert rec.provenance["deconvolution"]["lam"] == 1e-3
    with pytest.raises(InputError, match="no detector response"):
        oatomo.reconstruct(oatomo.Scan(y, ring, acq), "ubp", grid, deconvolve=True,
                           refine=False)
    other = DetectorResponse(centre_frequency=4e6, bandwidth=0.5)
    want = oatomo.backproject(wiener_deconvolve(y, acq.fs, other, DEFAULT_WIENER), grid, ring,
                              acq, "das")
    rec = oatomo.reconstruct(oatomo.Scan(y, ring, acq), "das", grid, deconvolve=True,
                             response=other, refine=False)
    np.testing.assert_array_equal(rec.image, want)
    path = tmp_path / "s.h5"
    save_scan(path, scan)
    common = [str(path), "--png", "none", "-q", "--no-refine", "--n", "32", "--force"]
    assert main(["reconstruct", *common, "--method", "ubp"]) == 0
    assert "--deconvolve removes it" in capsys.readouterr().out
    assert main(["reconstruct", *common, "--method", "mb-tv", "--iters", "3"]) == 0
    assert "is in the forward operator (3 iterations" in capsys.readouterr().out
    assert main(["reconstruct", *common, "--method", "mb-tv", "--iters", "3",
                 "--no-model-response"]) == 0
    assert "--model-response models it" in capsys.readouterr().out
    assert main(["reconstruct", *common, "--deconvolve", "0.001"]) == 0
    assert "Wiener deconvolution (lam = 0.001)" in capsys.readouterr().out
    assert main(["reconstruct", *common, "--deconvolve", "--response", "5e6"]) == 2
    assert "--response must look like FC:BW" in capsys.readouterr().err


def test_finite_element_far_field_is_a_boxcar_in_time():
    """A small source 20 mm away at 40 deg from an element's normal: the element's signal is
    the point sensor's signal smeared by a boxcar of width w sin(theta) / c (far field), here
    computed independently by convolving the point signal in time."""
    grid = Grid(96, 0.0096)
    acq = Acquisition(80e6, 1600, speed_of_sound=C)
    theta, dist, w = np.deg2rad(40.0), 0.02, 1.2e-3
    src = np.array([0.0, 0.0])
    normal = np.array([np.cos(np.pi + theta), np.sin(np.pi + theta)])  # 40 deg off the source
    pos = src - dist * np.array([-1.0, 0.0])  # source straight along -x from the sensor
    sensor = oatomo.SensorArray(pos[None], normal[None])
    p0 = aa_disk(grid, 2.5e-4, src)
    point = simulate(p0, grid, sensor, acq)[0].astype(np.float64)
    element = simulate(p0, grid, sensor, acq, element_width=w)[0].astype(np.float64)
    dt = 1 / acq.fs
    fine = 16
    up = np.repeat(point, fine) / 1.0  # piecewise-constant samples on a finer time grid
    width = int(round(w * np.sin(theta) / C / (dt / fine)))
    box = np.convolve(up, np.ones(width) / width, mode="same")
    ref = box.reshape(-1, fine).mean(axis=1)
    err = np.linalg.norm(element - ref) / np.linalg.norm(ref)
    assert err < 0.06, err  # measured 3.4 % (the point signal itself: 250 %)
    # and the element really is directional: its off-axis peak is lower than the point's
    assert np.abs(element).max() < 0.7 * np.abs(point).max()
    on_axis = oatomo.SensorArray(pos[None], np.array([[1.0, 0.0]]))
    straight = simulate(p0, grid, on_axis, acq, element_width=w)[0]
    np.testing.assert_allclose(np.abs(straight).max(), np.abs(point).max(), rtol=0.05)


def test_dot_product_with_element_width_and_matched_backprojection():
    grid = Grid(40, 0.008)
    sensors = ring_array(12, 0.012)
    acq = Acquisition(30e6, 400)
    op = ForwardOperator(grid, sensors, acq, element_width=5e-4, response=GAUSS)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(grid.shape).astype(np.float32)
    y = rng.standard_normal((12, 400)).astype(np.float32)
    ax, aty = op.forward(x).astype(np.float64), op.adjoint(y).astype(np.float64)
    assert abs(np.vdot(ax, y) - np.vdot(x, aty)) <= 1e-4 * np.linalg.norm(ax) * np.linalg.norm(y)
    # DAS with the element width = the mean of DAS over the element's points
    from oatomo.response import element_points

    pts, m = element_points(sensors, 5e-4, acq)
    want = oatomo.backproject(np.repeat(y, m, axis=0), grid, pts, acq, "das") / m
    np.testing.assert_allclose(oatomo.backproject(y, grid, sensors, acq, "das",
                                                  element_width=5e-4), want, rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())
    with pytest.raises(InputError, match="fbp inverts"):
        oatomo.backproject(y, grid, sensors, acq, "fbp", element_width=5e-4)
    with pytest.raises(InputError, match="element width must be"):
        ForwardOperator(grid, sensors, acq, element_width=-1)


def test_element_width_from_setup_and_through_the_pipeline(tmp_path, capsys):
    setup = _ring16_setup(tmp_path / "wide.toml", "element_width = 1e-3\n")
    s = load_setup(setup)
    assert s.element_width == 1e-3 and s.response is None
    (tmp_path / "again.toml").write_text(s.to_toml_string())
    assert load_setup(tmp_path / "again.toml").element_width == 1e-3
    out = tmp_path / "scan.h5"
    assert main(["simulate", "--setup", str(setup), "--phantom", "disk", "-o", str(out)]) == 0
    scan = load_scan(out)
    np.testing.assert_allclose(scan.sinogram, simulate(
        scan.p0, scan.grid, scan.true_sensors, scan.acquisition, element_width=1e-3),
        atol=1e-6 * np.abs(scan.sinogram).max())
    rec = oatomo.reconstruct(scan, "ubp", element_width=1e-3, refine=False)
    np.testing.assert_array_equal(rec.image, oatomo.backproject(
        scan.sinogram, scan.grid, scan.sensors, scan.acquisition, "ubp", element_width=1e-3))
    rec = oatomo.reconstruct(scan, "mb-tv", element_width=1e-3, refine=False, iters=2)
    want = oatomo.reconstruct_model_based(scan.sinogram, scan.grid, scan.sensors,
                                          scan.acquisition, method="tv", n_iter=2,
                                          element_width=1e-3)[0]
    np.testing.assert_array_equal(rec.image, want)
    assert main(["reconstruct", str(out), "--element-width", "1e-3", "--png", "none", "-q",
                 "--no-refine"]) == 0


def test_model_based_with_the_response_in_the_operator():
    """model_response=True puts the file's response into A: the same as calling
    reconstruct_model_based with it, and better than ignoring it (Pearson with the truth;
    the band-limited operator converges slowly: 0.60 after 30 iterations, 0.96 after 100,
    against 0.68 for TV that ignores the response)."""
    grid, ring, acq = Grid(32, 0.008), ring_array(24, 0.01), Acquisition(20e6, 300)
    p0 = aa_disk(grid, 1.5e-3, (5e-4, 0))
    y = simulate(p0, grid, ring, acq, response=GAUSS)
    scan = oatomo.Scan(y, ring, acq, response=GAUSS)
    rec = oatomo.reconstruct(scan, "mb-tv", grid, model_response=True, iters=100,
                             refine=False)
    want = oatomo.reconstruct_model_based(y, grid, ring, acq, method="tv", n_iter=100,
                                          response=GAUSS)[0]
    np.testing.assert_array_equal(rec.image, want)
    plain = oatomo.reconstruct(scan, "mb-tv", grid, iters=100, refine=False,
                               model_response=False).image
    r = [float(np.corrcoef(x.ravel(), p0.ravel())[0, 1]) for x in (rec.image, plain)]
    assert r[0] > r[1] + 0.2, r
    with pytest.raises(InputError, match="ubp cannot model the detector response"):
        oatomo.reconstruct(scan, "ubp", grid, model_response=True, refine=False)
    with pytest.raises(InputError, match="model_response must be"):
        oatomo.reconstruct(scan, "mb-tv", grid, model_response="yes", refine=False)


def test_a_scan_that_carries_its_response_gets_it_in_the_operator_by_default():
    """model_response="auto": a model-based method puts the scan's response into A and
    runs RESPONSE_ITERS iterations and then on to at most RESPONSE_MAX_ITERS while its
    objective falls by more than WARM_STALL_TOL over 10 (unless iters is given); UBP, a scan
    without a response, deconvolve and model_response=False keep the old route; the
    provenance says which and how many iterations ran."""
    from oatomo.pipeline.options import RESPONSE_ITERS, RESPONSE_MAX_ITERS
    from oatomo.pipeline.policy import WARM_STALL_TOL

    grid, ring, acq = Grid(32, 0.008), ring_array(24, 0.01), Acquisition(20e6, 300)
    p0 = aa_disk(grid, 1.5e-3, (5e-4, 0))
    y = simulate(p0, grid, ring, acq, response=GAUSS)
    scan = oatomo.Scan(y, ring, acq, response=GAUSS)
    rec = oatomo.reconstruct(scan, "mb-tv", grid, refine=False, calibrate=False)
    want, run = oatomo.reconstruct_model_based(y, grid, ring, acq, method="tv",
                                               n_iter=RESPONSE_MAX_ITERS, response=GAUSS,
                                               stall_tol=WARM_STALL_TOL,
                                               stall_from=RESPONSE_ITERS)
    np.testing.assert_array_equal(rec.image, want)
    assert rec.provenance["model_response"] is True
    assert rec.provenance["iters"] == RESPONSE_MAX_ITERS
    assert rec.provenance["iterations_run"] == [run["n_iter"]]
    # never fewer than RESPONSE_ITERS unless the solver converged: the run's first
    # RESPONSE_ITERS iterations are those of RESPONSE_ITERS from zero
    assert run["n_iter"] >= RESPONSE_ITERS or run["converged"]
    hundred = oatomo.reconstruct_model_based(y, grid, ring, acq, method="tv",
                                             n_iter=RESPONSE_ITERS, response=GAUSS)[0]
    if run["n_iter"] == RESPONSE_ITERS:
        np.testing.assert_array_equal(want, hundred)
    given = oatomo.reconstruct(scan, "mb-tv", grid, refine=False, calibrate=False, iters=7)
    np.testing.assert_array_equal(given.image, oatomo.reconstruct_model_based(
        y, grid, ring, acq, method="tv", n_iter=7, response=GAUSS)[0])
    off = oatomo.reconstruct(scan, "mb-tv", grid, refine=False, calibrate=False,
                             model_response=False)
    np.testing.assert_array_equal(off.image, oatomo.reconstruct_model_based(
        y, grid, ring, acq, method="tv", n_iter=50)[0])
    assert off.provenance["model_response"] is False and off.provenance["iters"] == 50
    bare = oatomo.reconstruct(oatomo.Scan(y, ring, acq), "mb-tv", grid, refine=False,
                              calibrate=False)
    np.testing.assert_array_equal(bare.image, off.image)
    dec = oatomo.reconstruct(scan, "mb-tv", grid, refine=False, calibrate=False,
                             deconvolve=True)
    assert dec.provenance["model_response"] is False
    ubp = oatomo.reconstruct(scan, "ubp", grid, refine=False, calibrate=False)
    assert ubp.provenance["model_response"] is False and ubp.provenance["iters"] is None
    with pytest.raises(InputError, match="choose one"):
        oatomo.reconstruct(scan, "mb-tv", grid, model_response=True, deconvolve=True,
                           refine=False, iters=1)


def test_unit_slips_of_the_band_warn():
    with pytest.warns(UnitWarning, match="centre frequency = 5 Hz looks like a unit slip"):
        DetectorResponse(centre_frequency=5.0, bandwidth=0.8)
    with pytest.warns(UnitWarning, match="bandwidth = 80 looks like a percentage"):
        DetectorResponse(centre_frequency=5e6, bandwidth=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DetectorResponse(centre_frequency=20e3, bandwidth=3.0)  # unusual but plausible


def test_the_response_support_is_checked_before_anything_is_allocated(tmp_path, capsys,
                                                                      monkeypatch):
    """A 5 Hz band at 40 MHz reaches ~10^7 samples: refused by the memory limit, at once."""
    acq = Acquisition(40e6, 400)
    y = np.ones((16, 400), np.float32)
    with pytest.warns(UnitWarning):
        slow = DetectorResponse(centre_frequency=5.0, bandwidth=0.8)
    with pytest.raises(InputError, match=r"padding 16 signals by the detector response's "
                                         r"support \(\d+ samples at 4e\+07 Hz\) would need"):
        convolve(y, acq.fs, slow)
    monkeypatch.setenv("OATOMO_MAX_BYTES", "10K")
    with pytest.raises(InputError, match="more than the limit of 0 MiB"):
        wiener_deconvolve(y, acq.fs, GAUSS)  # 16 x 49 samples of support x 24 B > 10 KiB
    monkeypatch.delenv("OATOMO_MAX_BYTES")
    assert convolve(y, acq.fs, GAUSS).shape == y.shape
    path = tmp_path / "s.h5"
    save_scan(path, oatomo.Scan(y, ring_array(16, 0.01), acq))
    assert main(["reconstruct", str(path), "--png", "none", "-q", "--no-refine", "--n", "32",
                 "--deconvolve", "--response", "5:0.8", "-o", str(tmp_path / "i.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "support" in err[0] and "OATOMO_MAX_BYTES" in err[0]
    assert not (tmp_path / "i.h5").exists()


def test_a_band_edge_in_the_wrong_unit_warns():
    from oatomo.forward import bandpass

    y = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
    with pytest.warns(UnitWarning, match="band upper edge = 8 Hz looks like a unit slip"):
        bandpass(y, 40e6, (None, 8.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bandpass(y, 40e6, (0.1e6, 8e6))


def test_auto_leaves_out_a_response_too_long_to_model(monkeypatch, caplog):
    """model_response="auto" with a response whose support would not fit OATOMO_MAX_BYTES:
    TV without it (a warning says why), where model_response=True is a one-line error."""
    grid, ring, acq = Grid(32, 0.008), ring_array(24, 0.01), Acquisition(20e6, 300)
    y = simulate(aa_disk(grid, 1.5e-3, (0, 0)), grid, ring, acq)
    with pytest.warns(UserWarning, match="unit slip"):
        long = DetectorResponse(centre_frequency=1e3, bandwidth=0.001)
    scan = oatomo.Scan(y, ring, acq, response=long)
    monkeypatch.setenv("OATOMO_MAX_BYTES", "64M")
    with caplog.at_level("WARNING", logger="oatomo.pipeline.options"):
        rec = oatomo.reconstruct(scan, "mb-tv", grid, refine=False, calibrate=False, iters=3)
    assert caplog.text.count("too long to put in the forward operator") == 1
    assert rec.provenance["model_response"] is False
    np.testing.assert_array_equal(rec.image, oatomo.reconstruct_model_based(
        y, grid, ring, acq, method="tv", n_iter=3)[0])
    with pytest.raises(InputError, match="OATOMO_MAX_BYTES"):
        oatomo.reconstruct(scan, "mb-tv", grid, refine=False, calibrate=False, iters=3,
                           model_response=True)


def test_long_records_filter_without_keeping_their_spectrum(monkeypatch):
    """A transform longer than CACHED_FFT_MAX gets the same filter, computed and not kept."""
    import oatomo.response as R

    u = np.random.default_rng(5).standard_normal((2, 300)).astype(np.float32)
    R._transfer.cache_clear()
    kept = operator_convolve(u, 30e6, GAUSS)
    assert R._transfer.cache_info().currsize == 1
    monkeypatch.setattr(R, "CACHED_FFT_MAX", 64)
    R._transfer.cache_clear()
    np.testing.assert_array_equal(operator_convolve(u, 30e6, GAUSS), kept)
    assert R._transfer.cache_info().currsize == 0
