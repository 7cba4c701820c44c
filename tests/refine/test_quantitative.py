"""The shipped refiner's contract: images in Pa, scale-equivariant; the guard against the
data; what the record says was refined; the device option."""

import h5py
import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.cli import main
from oatomo.io import Scan, load_images, read_image_info
from oatomo.refine import load_refiner
from oatomo.refine.guard import GUARD_RULE, check_refined, discrepancy, noise_level
from oatomo.resources import default_model_path


@pytest.fixture(scope="module")
def ring32():
    """A noisy scan of the shipped model's family (32-sensor ring, r = 22.5 mm)."""
    setup = oatomo.load_setup("ring32_r22")
    p0 = oatomo.phantoms.disks(setup.grid, 3)
    sino = oatomo.simulate(p0, setup.grid, setup.array, setup.acquisition, noise_std=0.01,
                           seed=1)
    return Scan(sinogram=sino, sensors=setup.array, acquisition=setup.acquisition, p0=p0,
                grid=setup.grid)


def _channels(scan):
    ref = load_refiner(default_model_path())
    grid = Grid(64, 0.0064)
    lin = ref.linear_inputs(scan.sinogram, scan.sensors, scan.acquisition, grid)
    return np.stack([lin[m] for m in ref.inputs])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_refine_is_scale_equivariant(ring32, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    ref = load_refiner(default_model_path(), backend=backend)
    x = _channels(ring32)
    base = ref.refine_images(x, n_samples=4, seed=1)
    assert base.units["refined"] == base.units["std"] == "a.u."  # UBP input
    # the refined image carries the first channel's peak (gain 1): it is in Pa, not 0..1
    assert ref.gain == 1.0 and np.abs(base.refined).max() > 5 * np.abs(x[0]).max() / 100
    for a in (0.37, 5.0):
        scaled = ref.refine_images(np.float32(a) * x, n_samples=4, seed=1)
        top = np.abs(base.refined).max()
        np.testing.assert_allclose(scaled.refined, a * base.refined, rtol=1e-4,
                                   atol=1e-5 * a * top)
        np.testing.assert_allclose(scaled.std, a * base.std, rtol=1e-4,
                                   atol=1e-5 * a * np.abs(base.std).max())


def test_two_frames_keep_their_ratio_through_reconstruct(ring32):
    two = Scan(np.stack([ring32.sinogram, 0.5 * ring32.sinogram]), ring32.sensors,
               ring32.acquisition)
    rec = oatomo.reconstruct(two, "ubp", ring32.grid, refine=True, calibrate=False,
                             samples=2)
    assert rec.refined and rec.units["refined"] == "a.u."
    r = rec.images["refined"].astype(np.float64)
    ratio = np.sum(r[1] * r[0]) / np.sum(r[0] ** 2)
    assert abs(ratio - 0.5) < 0.005 * 0.5
    assert np.abs(r[1]).max() / np.abs(r[0]).max() == pytest.approx(0.5, rel=5e-3)


def test_noise_level_closed_form():
    grid, acq = Grid(64, 0.0064), Acquisition(40e6, 2048, 1500.0)
    sensors = ring_array(32, 0.02)
    rng = np.random.default_rng(0)
    y = 2.0 * rng.standard_normal((32, 2048))
    sigma, how = noise_level(y, sensors, acq, grid)
    assert how == "quiet samples" and sigma == pytest.approx(2.0, rel=0.03)
    # a large signal inside the arrival window does not move the estimate
    p0 = oatomo.phantoms.disks(grid, 1)
    clean = oatomo.simulate(p0, grid, sensors, acq)
    y2 = clean + 0.01 * np.abs(clean).max() * rng.standard_normal(clean.shape)
    s2, _ = noise_level(y2, sensors, acq, grid)
    assert s2 == pytest.approx(0.01 * np.abs(clean).max(), rel=0.05)
    # a window cut to the field of view: sample differences, exact for white noise
    short = Acquisition(40e6, 200, 1500.0, t0=(0.02 - 0.0045) / 1500.0)
    s3, how3 = noise_level(2.0 * rng.standard_normal((32, 200)), sensors, short, grid)
    assert how3 == "sample differences" and s3 == pytest.approx(2.0, rel=0.05)


def test_discrepancy_is_the_scale_fit():
    rng = np.random.default_rng(1)
    ax = rng.standard_normal(100)
    assert discrepancy(ax, 3.0 * ax) == pytest.approx((3.0, 0.0), abs=1e-9)
    assert discrepancy(ax, -ax)[0] == 0.0  # an inverted image explains nothing
    assert discrepancy(ax, -ax)[1] == pytest.approx(np.linalg.norm(ax))


def test_guard_passes_an_in_family_scan_and_records_what_was_refined(ring32, tmp_path):
    rec = oatomo.reconstruct(ring32, "ubp", samples=2, calibrate=False)
    how = rec.provenance["refinement"]
    assert rec.refined and how["guard"]["passed"] is True
    frame = how["guard"]["frames"][0]
    assert frame["explained_refined"] >= GUARD_RULE.min_ratio * frame["explained_physics"]
    assert frame["snr"] >= GUARD_RULE.min_snr and how["guard"]["rule"]["min_ratio"] == 0.05
    assert how["input"] == "ubp+das" and how["method"] == "ubp" and "input_note" not in how
    # the written file says what was refined
    out = tmp_path / "img.h5"
    oatomo.io.save_images(out, dict(rec.images), rec.grid, attrs=rec.attrs())
    assert read_image_info(out)["provenance"]["refinement"]["input"] == "ubp+das"
    with h5py.File(out) as f:
        assert f["images/refined"].attrs["units"] == "a.u."


def test_method_other_than_the_input_is_reported(ring32):
    rec = oatomo.reconstruct(ring32, "mb-tv", iters=3, refine=True, calibrate=False,
                             samples=0, guard=False, model=default_model_path())
    how = rec.provenance["refinement"]
    assert how["input"] == "ubp+das" and how["method"] == "mb-tv"
    assert "its own ubp+das reconstruction of the sinogram, not the mb-tv image" in \
        how["input_note"]
    assert how["guard"] == {"passed": None, "why": "not checked"}


def test_guard_falls_back_on_pure_noise(ring32):
    rng = np.random.default_rng(3)
    noise = Scan(rng.standard_normal(ring32.sinogram.shape).astype(np.float32),
                 ring32.sensors, ring32.acquisition)
    rec = oatomo.reconstruct(noise, "ubp", ring32.grid, refine=True, calibrate=False,
                             samples=2)
    how = rec.provenance["refinement"]
    assert not rec.refined and set(rec.images) == {"ubp"} and rec.image is rec.images["ubp"]
    assert how["applied"] is False and how["guard"]["passed"] is False
    assert "no signal above its noise" in how["reason"] and "ubp image is kept" in how["reason"]
    assert how["guard"]["frames"][0]["snr"] < GUARD_RULE.min_snr
    assert "refine" in rec.provenance["timings"]  # the model ran


def test_guard_rejects_an_image_that_lost_the_data(ring32):
    """An inverted refined image (best scale 0) explains none of the signal."""
    ubp = oatomo.reconstruct(ring32, "ubp", refine=False, calibrate=False).image
    a = ring32
    bad = check_refined(-np.abs(ubp), ubp, a.sinogram, a.grid, a.sensors, a.acquisition)
    # 0 up to rounding: its residual is the whole record (best scale 0)
    assert not bad.passed and bad.numbers["explained_refined"] == pytest.approx(0.0, abs=1e-12)
    assert "disagrees with the data" in bad.why
    good = check_refined(a.p0, ubp, a.sinogram, a.grid, a.sensors, a.acquisition)
    assert good.passed and good.numbers["explained_refined"] > 0.9


def test_calibrated_file_is_refined_by_default_only_with_tv(ring32):
    """A calibrated file (or a scan calibrated on request) is not refined by default with
    UBP, whose refiner was trained on nominal-position images; with TV the refinement
    step's own rules decide (here: the ring's grid is finer than the TV refiner's pitches)."""
    cal = Scan(ring32.sinogram, ring32.sensors, ring32.acquisition,
               calibration={"nominal_speed_of_sound": 1500.0})
    rec = oatomo.reconstruct(cal, "ubp", samples=0)
    how = rec.provenance["refinement"]
    assert not rec.refined and "the file is calibrated" in how["reason"]
    rec = oatomo.reconstruct(cal, "mb-tv", iters=2, samples=0)
    how = rec.provenance["refinement"]
    assert not rec.refined and "the file is calibrated" not in how["reason"]
    assert "the model accepts" in how["reason"]
    forced = oatomo.reconstruct(cal, "ubp", refine=True, samples=0, guard=False)
    assert forced.refined
    calibrated = oatomo.reconstruct(ring32, "ubp", calibrate=True, samples=0)
    assert not calibrated.refined
    assert "the scan was calibrated" in calibrated.provenance["refinement"]["reason"]


def test_cli_calibrated_file_refinement_reason(ring32, tmp_path, capsys):
    src = tmp_path / "cal.h5"
    cal = oatomo.calibrate(ring32, ring32.grid, n_levels=1, n_folds=2, n_iter=2)
    oatomo.io.save_scan(src, oatomo.calibration.apply_calibration(ring32, cal))
    out = tmp_path / "img.h5"
    assert main(["reconstruct", str(src), "--method", "ubp", "-o", str(out),
                 "--png", "none", "-q"]) == 0
    assert "refined" not in load_images(out)[0]
    assert "the file is calibrated" in read_image_info(out)["provenance"]["refinement"]["reason"]
    assert main(["reconstruct", str(src), "--method", "mb-tv", "--iters", "2", "-o", str(out),
                 "--png", "none", "-q", "--force"]) == 0
    assert "refined" not in load_images(out)[0]
    reason = read_image_info(out)["provenance"]["refinement"]["reason"]
    assert "the file is calibrated" not in reason and "default settings" in reason


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [
    ["reconstruct", "{scan}", "--device", "cuda", "--png", "none", "-o", "{out}"],
    ["refiner", "evaluate", "--model", "m.npz", "--data", "d", "--out", "{out}",
     "--device", "cuda"],
    ["refiner", "train", "--data", "d", "-o", "{out}", "--device", "cuda"],
])
def test_device_cuda_without_cuda_is_one_line_exit_2(ring32, tmp_path, capsys, argv):
    scan = tmp_path / "scan.h5"
    oatomo.io.save_scan(scan, ring32)
    args = [a.format(scan=scan, out=tmp_path / "out") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device" in err and "cuda" in err
    with pytest.raises(InputError, match="device: device 'cuda' is not available"):
        oatomo.reconstruct(ring32, device="cuda")
