"""Physical ranges, the memory limit and kernels that stay in bounds whatever reaches them."""

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, SensorArray, ring_array
from oatomo import kernels as K
from oatomo._limits import check_bytes, max_bytes
from oatomo.forward import ForwardOperator
from oatomo.setups import load_setup


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 3e38, 1e40])
def test_das_kernel_clamps_non_finite_geometry(bad):
    """Called directly (no wrapper checks), the kernel reads only inside the record."""
    n_s, n_t = 4, 32
    padded = np.zeros((n_s, n_t + 3), np.float32)
    padded[:, 1:-2] = 1.0
    xs = np.linspace(-1e-3, 1e-3, 8).astype(np.float32)
    sens = np.full((n_s, 2), 0.01, np.float32)
    sens[1, 0] = bad
    normals = np.zeros((n_s, 2), np.float32)
    out = np.zeros((8, 8), np.float32)
    for t0fs in (np.float32(0.0), np.float32(bad)):
        K.das(padded, xs, xs, sens, False, normals, t0fs, np.float32(2e4), out)
        K.das(padded, xs, xs, sens, True, normals, t0fs, np.float32(bad), out)
        K.das_frames(padded[:, :, None].copy(), xs, xs, sens, t0fs, np.float32(2e4),
                     out[:, :, None].copy())


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e40])
def test_forward_adjoint_kernels_clamp(bad):
    op = ForwardOperator(Grid(8, 1e-3), ring_array(4, 0.005), Acquisition(20e6, 64))
    sens = op._sens.copy()
    sens[2] = bad
    g = np.zeros((4, 65), np.float32)
    K.forward_edges(np.ones((8, 8), np.float32), op._xs, op._ys, sens, op._r0,
                    op._inv_delta, op._k, op._P, op._taps, g)
    out = np.zeros((2, 8, 8), np.float32)
    K.adjoint_edges(np.ones((4, 65), np.float32), op._xs, op._ys, sens, np.float32(bad),
                    op._inv_delta, op._k, op._P, op._taps, 2, out)


def test_physical_ranges_name_the_value():
    with pytest.raises(InputError, match="within 10 m"):
        SensorArray(np.full((3, 2), 1e40))
    with pytest.raises(InputError, match="normals"):
        SensorArray(np.ones((3, 2)), np.full((3, 2), np.nan))
    with pytest.raises(InputError, match="t0 must lie in"):
        Acquisition(20e6, 64, t0=1e300)
    with pytest.raises(InputError, match="n_samples must be an integer"):
        Acquisition(20e6, 10**8)
    with pytest.raises(InputError, match="speed of sound must lie in"):
        Acquisition(20e6, 64, speed_of_sound=1e300)
    with pytest.raises(InputError, match="n_sensors must be an integer"):
        ring_array(10**9, 0.02)
    with pytest.raises(InputError, match="field of view"):
        Grid(64, 1e30)
    with pytest.raises(InputError, match="grid size"):
        Grid("64", 0.01)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="radial_std must lie in"):
        ring_array(8, 0.02).perturbed(radial_std=1e300)


def test_setup_perturbation_and_memory_limits(tmp_path, monkeypatch):
    text = load_setup("ring32_r22").to_toml_string()
    bad = tmp_path / "jitter.toml"
    bad.write_text(text.replace("jitter_std = 0.0", "jitter_std = 1e300"))
    with pytest.raises(InputError, match=r"jitter\.toml: .*jitter_std must lie in"):
        load_setup(bad)
    monkeypatch.setenv("OATOMO_MAX_BYTES", "64K")
    assert max_bytes() == 65536
    with pytest.raises(InputError, match="OATOMO_MAX_BYTES"):
        load_setup("ring32_r22")  # 32 x 1024 float32 = 128 KiB
    for bad_limit in ("lots", "inf", "1e400G", "nan", "-5M"):
        monkeypatch.setenv("OATOMO_MAX_BYTES", bad_limit)
        with pytest.raises(InputError, match="OATOMO_MAX_BYTES must be"):
            check_bytes(1, "x")
    monkeypatch.delenv("OATOMO_MAX_BYTES")
    assert max_bytes() == 4 << 30
    # a sampling interval of a million pixels would need huge radial histograms
    with pytest.raises(InputError, match="radial histograms"):
        ForwardOperator(Grid(64, 1e-5), ring_array(4, 0.02), Acquisition(1e3, 64))


def test_scan_over_the_limit_is_reconstructed_frame_by_frame(tmp_path, monkeypatch):
    from oatomo.io import Scan, load_scan, read_frame, save_scan
    from oatomo.pipeline import reconstruct

    rng = np.random.default_rng(0)
    sino = rng.standard_normal((2, 3, 16, 256)).astype(np.float32)
    scan = Scan(sinogram=sino, sensors=ring_array(16, 0.006),
                acquisition=Acquisition(20e6, 256), grid=Grid(32, 0.008),
                p0=np.zeros((32, 32), np.float32))
    path = tmp_path / "frames.h5"
    save_scan(path, scan)
    whole = reconstruct(path, "das", refine=False).images["das"]
    monkeypatch.setenv("OATOMO_MAX_BYTES", "100K")  # the whole sinogram needs 192 KiB
    with pytest.raises(InputError, match="OATOMO_MAX_BYTES"):
        load_scan(path)
    assert load_scan(path, metadata_only=True).sinogram.shape == (2, 3, 16, 256)
    np.testing.assert_array_equal(read_frame(path, 4), sino[1, 1])
    rec = reconstruct(path, "das", refine=False)
    assert rec.images["das"].shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(rec.images["das"], whole)
    assert "frame by frame" in rec.provenance["refinement"]["reason"]
    np.testing.assert_array_equal(reconstruct(path, "das", refine=False, frames=4).image,
                                  whole[1, 1])
    with pytest.raises(InputError, match="frame by frame"):
        reconstruct(path, "das", refine=True)


def test_frame_by_frame_keeps_the_selection_and_deconvolution(tmp_path, monkeypatch):
    """Frames / wavelengths / deconvolve also hold for a scan too large to read whole (the
    frame-by-frame reconstruction); the PATATO export is refused then."""
    from oatomo.cli import main
    from oatomo.io import Scan, save_scan
    from oatomo.pipeline import reconstruct
    from oatomo.response import DetectorResponse

    rng = np.random.default_rng(1)
    scan = Scan(sinogram=rng.standard_normal((2, 3, 16, 256)).astype(np.float32),
                sensors=ring_array(16, 0.006), acquisition=Acquisition(20e6, 256),
                grid=Grid(32, 0.008), p0=np.zeros((32, 32), np.float32),
                wavelengths=np.array([700e-9, 800e-9, 900e-9]),
                response=DetectorResponse(centre_frequency=5e6, bandwidth=0.8))
    path = tmp_path / "frames.h5"
    save_scan(path, scan)
    kw = dict(refine=False, frames=[1], wavelengths=[800e-9, 900e-9], deconvolve=True)
    whole = reconstruct(path, "das", **kw)
    monkeypatch.setenv("OATOMO_MAX_BYTES", "100K")
    part = reconstruct(path, "das", **kw)
    assert part.provenance["by_frame"] and part.provenance["axes"] == ["frame", "wavelength"]
    np.testing.assert_allclose(part.image, whole.image, rtol=1e-6, atol=1e-6)
    assert part.provenance["deconvolution"] == whole.provenance["deconvolution"]
    assert main(["reconstruct", str(path), "--method", "das", "--no-refine", "-o",
                 str(tmp_path / "x.h5"), "--export-patato", str(tmp_path / "p.h5")]) == 2
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.png").exists()
    assert main(["reconstruct", str(path), "--method", "das", "--no-refine", "-o",
                 str(tmp_path / "x.h5"), "--frames", "1", "--dpi", "10"]) == 0  # canvas < 100K
    assert (tmp_path / "x.png").is_file()
