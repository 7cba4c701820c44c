"""Figures (colourbars with units, frames labelled, uncertainty on
its own scale), the default field of view, image files that keep their axes' meaning, and
the IPASC export checked by PACFISH."""

import textwrap

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, ring_array
from oatomo import figures as F
from oatomo.io import default_grid, object_fov
from oatomo.pipeline import Reconstruction


def test_default_fov_fits_the_object():
    """A disk reaching 2.5 mm from the centre of a 15 mm ring gets about 2 x 2.5 mm x 1.15,
    not 1.3 x the radius; no signal at all falls back to 1.3 x the radius."""
    grid = Grid(160, 0.032)
    ring, acq = ring_array(32, 0.015), Acquisition(40e6, 1200)
    p0 = oatomo.phantoms.disk(grid, 1.5e-3, (1e-3, 0.0))
    scan = oatomo.Scan(oatomo.simulate(p0, grid, ring, acq), ring, acq)
    fov = object_fov(scan)
    assert 2 * 2.5e-3 < fov < 2 * 2.5e-3 * 1.3, fov
    assert default_grid(scan) == Grid(256, fov)
    empty = oatomo.Scan(np.zeros((32, 1200), np.float32), ring, acq)
    assert object_fov(empty) is None and default_grid(empty).fov == pytest.approx(1.3 * 0.015)
    # a truth grid still wins; the inscribed circle caps the estimate
    assert default_grid(oatomo.Scan(scan.sinogram, ring, acq, p0=p0, grid=grid)) == grid
    noise = oatomo.Scan(np.random.default_rng(0).standard_normal((32, 1200)).astype(np.float32),
                        ring, acq)
    assert object_fov(noise) <= 2 * 0.015


def _rec(n_frames):
    g = Grid(16, 0.004)
    rng = np.random.default_rng(0)
    lead = (n_frames, 2)
    images = {"ubp": rng.standard_normal(lead + g.shape).astype(np.float32),
              "refined": rng.random(lead + g.shape).astype(np.float32),
              "uncertainty": 0.01 * rng.random(lead + g.shape).astype(np.float32),
              "truth": rng.random(g.shape).astype(np.float32)}
    units = {"ubp": "Pa", "truth": "Pa", "refined": "fraction of max p0",
             "uncertainty": "fraction of max p0"}
    prov = {"method": "ubp", "axes": ["frame", "wavelength"], "wavelengths": [7e-7, 8.5e-7]}
    return Reconstruction(images, g, units, prov), rng.standard_normal(lead + (8, 50))


def test_reconstruction_figure_labels_units_and_scales(tmp_path, monkeypatch):
    bars, panels = [], []
    monkeypatch.setattr(F, "_colourbar", lambda fig, im, cax, label: bars.append(label))
    real = F._image_panel

    def spy(fig, ax, cax, img, grid, limits, label, *, cmap="inferno"):
        panels.append((limits, cmap))
        real(fig, ax, cax, img, grid, limits, label, cmap=cmap)

    monkeypatch.setattr(F, "_image_panel", spy)
    rec, sino = _rec(3)  # 6 frames: 4 rows drawn
    out = F.reconstruction_figure(tmp_path / "f.png", rec, sino, Acquisition(20e6, 50),
                                  title="scan")
    assert out.read_bytes()[:4] == b"\x89PNG"
    # every panel has a colourbar in its units: 4 rows x (sinogram, ubp, refined, unc.) + truth
    assert bars.count("Pa") == 4 + 4 + 1 and bars.count("fraction of max p0") == 8
    unc = [lim for lim, cmap in panels if cmap == "viridis"]
    ref = [lim for lim, cmap in panels if cmap == "inferno"]  # refined and truth
    assert len(unc) == 4 and all(lo == 0 and hi < 0.011 for lo, hi in unc)
    assert len(ref) == 4 + 1 and all(hi > 0.5 for _, hi in ref)  # not the uncertainty's
    assert F._frame_labels((3, 2), rec.provenance)[:3] == ["frame 0, 700 nm",
                                                           "frame 0, 850 nm", "frame 1, 700 nm"]
    assert F._frame_labels((2,), {}) == ["frame 0", "frame 1"]


def _cmaps(monkeypatch):
    """Spy on the image panels: (colour map, limits, image) of each, in drawing order."""
    panels = []
    real = F._image_panel

    def spy(fig, ax, cax, img, grid, limits, label, *, cmap="inferno"):
        panels.append((cmap, limits, img))
        real(fig, ax, cax, img, grid, limits, label, cmap=cmap)

    monkeypatch.setattr(F, "_image_panel", spy)
    return panels


def test_bipolar_images_get_a_diverging_map_centred_on_zero(tmp_path, monkeypatch):
    """UBP (zero-mean noise here) is drawn with RdBu_r on limits symmetric about 0; the
    refined image and the truth (>= 0) keep inferno; the uncertainty viridis."""
    panels = _cmaps(monkeypatch)
    rec, sino = _rec(1)
    F.reconstruction_figure(tmp_path / "f.png", rec, sino, Acquisition(20e6, 50))
    by_map = {}
    for cmap, limits, _ in panels:
        by_map.setdefault(cmap, []).append(limits)
    assert sorted(by_map) == ["RdBu_r", "inferno", "viridis"]
    assert len(by_map["RdBu_r"]) == 2  # the ubp column: 2 rows (frame 0 at 2 wavelengths)
    ubp = np.asarray(rec.images["ubp"])
    for lo, hi in by_map["RdBu_r"]:
        assert lo == -hi and hi == pytest.approx(np.percentile(np.abs(ubp), 99.8))
    assert len(by_map["inferno"]) == 2 + 1 and all(lo >= 0 for lo, _ in by_map["inferno"])


def test_scale_bars_stay_visible_on_a_diverging_map(tmp_path, monkeypatch):
    """White about zero on RdBu_r: the scale bar there is black, white on the others."""
    colours = []
    real = F.add_scale_bar
    monkeypatch.setattr(F, "add_scale_bar",
                        lambda ax, grid, *, color="white": (colours.append(color),
                                                            real(ax, grid, color=color)))
    rec, sino = _rec(1)
    F.reconstruction_figure(tmp_path / "f.png", rec, sino, Acquisition(20e6, 50))
    # ubp (bipolar) on 2 rows; refined, uncertainty on 2 rows and the truth
    assert sorted(colours) == ["black"] * 2 + ["white"] * 5


@pytest.mark.parametrize("low, bipolar", [(0.0, False), (-0.04, False), (-0.06, True),
                                          (-1.0, True)])
def test_bipolar_threshold_is_five_percent_of_the_maximum(tmp_path, monkeypatch, low,
                                                          bipolar):
    panels = _cmaps(monkeypatch)
    g = Grid(16, 0.004)
    img = np.linspace(low, 1.0, g.n * g.n, dtype=np.float32).reshape(g.shape)
    F.scan_figure(tmp_path / "f.png", np.ones((8, 50)), Acquisition(20e6, 50), img, g)
    (cmap, (lo, hi), _), = panels
    assert F.is_bipolar(img) is bipolar
    assert cmap == ("RdBu_r" if bipolar else "inferno")
    assert (lo == -hi) is bipolar


@pytest.mark.parametrize("suffix, magic", [(".png", (b"\x89PNG",)),
                                           (".svg", (b"<?xml", b"<svg")),
                                           (".pdf", (b"%PDF",))])
def test_figure_format_is_the_suffix(tmp_path, suffix, magic):
    rec, sino = _rec(1)
    out = F.reconstruction_figure(tmp_path / f"f{suffix.upper()}", rec, sino,
                                  Acquisition(20e6, 50), dpi=40)
    assert out.read_bytes().startswith(magic)


def test_figure_refuses_other_formats_and_resolutions(tmp_path):
    rec, sino = _rec(1)
    for name, dpi, message in (("f.jpg", 100, "must end in .png, .svg, .pdf"),
                               ("f", 100, "got 'no suffix'"),
                               ("f.png", 5, "dpi must be an integer in 10..600"),
                               ("f.png", 2.5, "dpi must be an integer")):
        with pytest.raises(oatomo.InputError, match=message):
            F.reconstruction_figure(tmp_path / name, rec, sino, Acquisition(20e6, 50),
                                    dpi=dpi)
        assert not (tmp_path / name).exists()


def test_figure_grows_with_frames(tmp_path):
    from PIL import Image

    sizes = []
    for k in (1, 2):
        rec, sino = _rec(k)
        F.reconstruction_figure(tmp_path / f"f{k}.png", rec, sino, Acquisition(20e6, 50))
        sizes.append(Image.open(tmp_path / f"f{k}.png").size)
    assert sizes[0][0] == sizes[1][0] and sizes[1][1] > 1.5 * sizes[0][1]


def _scan(t0=0.0, **kw):
    grid = Grid(32, 0.008)
    ring, acq = ring_array(16, 0.01), Acquisition(20e6, 300, t0=t0)
    y = oatomo.simulate(oatomo.phantoms.disk(grid, 1e-3, (1e-3, 0)), grid, ring, acq)
    return oatomo.Scan(y, ring, acq, **kw), grid


def test_ipasc_export_keeps_t0_or_refuses(tmp_path):
    """IPASC signals start at the pulse: t0 = 2 us becomes 40 leading zero samples, so the
    image is the same; a t0 that is no whole number of samples is refused."""
    scan, grid = _scan(t0=2e-6)
    oatomo.save_scan(tmp_path / "a.h5", scan, format="ipasc")
    back = oatomo.load_scan(tmp_path / "a.h5")
    assert back.acquisition.t0 == 0 and back.acquisition.n_samples == 340
    np.testing.assert_array_equal(back.sinogram[:, 40:], scan.sinogram)
    assert not back.sinogram[:, :40].any()
    np.testing.assert_allclose(oatomo.backproject(back.sinogram, grid, back.sensors,
                                                  back.acquisition),
                               oatomo.backproject(scan.sinogram, grid, scan.sensors,
                                                  scan.acquisition), rtol=1e-4, atol=1e-6)
    for t0 in (2.01e-6, -1e-6):
        bad, _ = _scan(t0=t0)
        with pytest.raises(oatomo.InputError, match="not a whole number of samples"):
            oatomo.save_scan(tmp_path / "b.h5", bad, format="ipasc")
        assert not (tmp_path / "b.h5").exists()


def test_ipasc_export_passes_pacfish_checks(tmp_path):
    """PACFISH's own checks: consistent everywhere, every detector field present; only the
    fields no oatomo scan can know are missing, and with them given the whole check passes."""
    pf = pytest.importorskip("pacfish")
    from pacfish import CompletenessChecker, ConsistencyChecker, MetadataAcquisitionTags

    from oatomo.io import IPASC_UNKNOWN
    from oatomo.response import DetectorResponse

    scan, _ = _scan(response=DetectorResponse(centre_frequency=3e6, bandwidth=0.8),
                    wavelengths=np.array([8e-7]))
    oatomo.save_scan(tmp_path / "s.h5", scan, format="ipasc")
    data = pf.load_data(str(tmp_path / "s.h5"))
    cons, comp = ConsistencyChecker(), CompletenessChecker()
    assert cons.check_acquisition_meta_data(data.meta_data_acquisition)
    assert cons.check_device_meta_data(data.meta_data_device)
    assert cons.check_binary_data(data.binary_time_series_data)
    assert comp.check_device_meta_data(data.meta_data_device)
    missing = {tag.tag for tag in MetadataAcquisitionTags.TAGS
               if CompletenessChecker.check_metadatum_from_dict(data.meta_data_acquisition,
                                                                tag)[1]}
    assert missing == set(IPASC_UNKNOWN)
    det = data.meta_data_device["detectors"]["0000000003"]
    f, gain = det["frequency_response"]
    np.testing.assert_allclose(gain, np.abs(scan.response.frequency_response(f)))
    # two frames: PACFISH's reader squeezes a single pose (1, 6) to (6,) and then calls it
    # inconsistent
    known = {"pulse_energy": [0.02, 0.021], "temperature_control": [293.0, 293.0],
             "acoustic_coupling_agent": "water", "frequency_domain_filter": [0.0, 1e7],
             "regions_of_interest": {"whole": [-0.004, 0.004, -0.004, 0.004, 0.0, 0.0]},
             "measurement_timestamps": [0.0, 0.1], "measurement_spatial_poses": [[0.0] * 6] * 2}
    two = oatomo.Scan(np.stack([scan.sinogram] * 2), scan.sensors, scan.acquisition,
                      metadata={"ipasc": known})
    oatomo.save_scan(tmp_path / "full.h5", two, format="ipasc")
    assert pf.quality_check_pa_data(pf.load_data(str(tmp_path / "full.h5")))


def test_ipasc_frequency_response_comes_back():
    """The magnitude written to IPASC's frequency_response is read as a zero-phase response
    with the same magnitude in the band; a flat one (point sensors) reads as none."""
    import tempfile
    from pathlib import Path

    from oatomo.response import DetectorResponse

    band = DetectorResponse(centre_frequency=3e6, bandwidth=0.8)
    scan, _ = _scan(response=band)
    with tempfile.TemporaryDirectory() as tmp:
        oatomo.save_scan(Path(tmp) / "r.h5", scan, format="ipasc")
        back = oatomo.load_scan(Path(tmp) / "r.h5").response
        oatomo.save_scan(Path(tmp) / "flat.h5", _scan()[0], format="ipasc")
        assert oatomo.load_scan(Path(tmp) / "flat.h5").response is None
    f = np.linspace(1e6, 5e6, 9)
    np.testing.assert_allclose(np.abs(back.frequency_response(f)),
                               np.abs(band.frequency_response(f)), atol=0.02)
    np.testing.assert_allclose(np.angle(back.frequency_response(f)), 0, atol=1e-6)


def _two_wavelengths():
    scan, grid = _scan()
    two = oatomo.Scan(np.stack([scan.sinogram, 2 * scan.sinogram]), scan.sensors,
                      scan.acquisition, wavelengths=np.array([750e-9, 850e-9]))
    return two, grid


def test_patato_export_layout(tmp_path):
    """save_patato writes PATATO's layout: raw_data, GEOMETRY, wavelengths (nm, as PATATO's
    spectra are tabulated), the per-measurement records (frames, wavelengths), and
    recons/<method>/0 as (frames, wavelengths, z = 1, ny, nx) whose field of view spans the
    outer pixel centres; oatomo reads the scan back."""
    import h5py

    from oatomo.io import save_patato

    two, grid = _two_wavelengths()
    rec = oatomo.reconstruct(two, "das", grid, refine=False)
    path = save_patato(tmp_path / "p.hdf5", two, rec.image, grid, algorithm="das")
    with h5py.File(path) as f:
        r = f["recons/das/0"]
        assert r.shape == (1, 2, 1, 32, 32)
        np.testing.assert_array_equal(r[0, 1, 0], rec.image[1])  # image[y, x], as ours
        assert r.attrs["RECONSTRUCTION_FIELD_OF_VIEW_X"] == pytest.approx(31 * grid.dx)
        assert r.attrs["RECONSTRUCTION_NX"] == r.attrs["RECONSTRUCTION_NY"] == 32
        np.testing.assert_allclose(f["wavelengths"][...], [750, 850])
        for name in ("RUN", "REPETITION", "Z-POS", "TEMPERATURE", "timestamp",
                     "OverallCorrectionFactor"):
            assert f[name].shape == (1, 2), name
        assert f["raw_data"].attrs["name"] == f.attrs["name"]
    back = oatomo.load_scan(path)
    np.testing.assert_allclose(back.wavelengths, [750e-9, 850e-9])
    np.testing.assert_array_equal(back.sinogram, two.sinogram)
    with pytest.raises(oatomo.InputError, match="do not match"):
        save_patato(tmp_path / "q.hdf5", two, rec.image[0], grid, algorithm="das")
    with pytest.raises(oatomo.InputError, match="frame"):
        save_patato(tmp_path / "q.hdf5", two, np.stack([rec.image] * 3), grid)
    assert not (tmp_path / "q.hdf5").exists()


def test_patato_reads_wavelengths_and_image_coordinates(tmp_path):
    """PATATO's own reader: get_wavelengths() in nm, the reconstruction under the default
    group name, an extent equal to oatomo's outer pixel centres, and an off-centre disk
    whose centroid on PATATO's (x, y) coordinates is where it is on oatomo's grid."""
    patato = pytest.importorskip("patato")
    from oatomo.io import save_patato

    two, grid = _two_wavelengths()
    disk = oatomo.phantoms.disk(grid, 1e-3, (1.5e-3, -0.75e-3))
    path = save_patato(tmp_path / "p.hdf5", two, np.stack([disk, 2 * disk]), grid)
    pa = patato.PAData.from_hdf5(str(path))
    try:
        np.testing.assert_allclose(pa.get_wavelengths(), [750, 850])
        rec = pa.get_scan_reconstructions()[("oatomo", "0")]
        np.testing.assert_allclose(rec.extent, [grid.x[0], grid.x[-1], grid.y[0],
                                                grid.y[-1]], rtol=1e-12)
        da = rec.da.isel(frames=0, wavelengths=1, z=0)
        assert da.dims == ("y", "x")
        w = np.asarray(da.values, np.float64)
        X, Y = np.meshgrid(da.x.values, da.y.values)
        X0, Y0 = grid.coordinates()
        assert (w * X).sum() / w.sum() == pytest.approx((disk * X0).sum() / disk.sum())
        assert (w * Y).sum() / w.sum() == pytest.approx((disk * Y0).sum() / disk.sum())
        assert (w * X).sum() / w.sum() == pytest.approx(1.5e-3, abs=grid.dx / 4)
        assert (w * Y).sum() / w.sum() == pytest.approx(-0.75e-3, abs=grid.dx / 4)
        assert pa.get_scan_name() == "oatomo scan"
    finally:
        pa.close()


@pytest.mark.filterwarnings("ignore:os.fork")  # JAX's warning; the child execs at once
def test_patato_unmix_gives_so2(tmp_path):
    """patato-unmix (PATATO's console script, default haemoglobin preset) unmixes a
    two-wavelength export into sO2: two regions mixed from PATATO's Hb/HbO2 spectra at
    40 % and 90 % come out at 0.40 and 0.90, each where it was put."""
    import subprocess
    import sys

    patato = pytest.importorskip("patato")
    from patato.unmixing.spectra import Haemoglobin, OxyHaemoglobin

    from oatomo.io import save_patato

    two, grid = _two_wavelengths()
    eps = np.array([Haemoglobin.get_spectrum(np.array([750.0, 850.0])),
                    OxyHaemoglobin.get_spectrum(np.array([750.0, 850.0]))])
    centres, so2 = [(-2e-3, 1e-3), (2e-3, -1e-3)], [0.4, 0.9]
    images = np.zeros((2,) + grid.shape)
    for c, s in zip(centres, so2, strict=True):
        mu_a = eps.T @ np.array([1 - s, s])
        images += mu_a[:, None, None] * oatomo.phantoms.disk(grid, 1.5e-3, c)
    path = save_patato(tmp_path / "p.hdf5", two, images, grid, algorithm="ubp")
    run = subprocess.run([sys.executable, "-m", "patato.convenience_scripts.unmix",
                          str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    pa = patato.PAData.from_hdf5(str(path))
    try:
        out = pa.get_scan_so2()[("ubp", "0")].da.isel(frames=0, z=0).squeeze()
        for (cx, cy), s in zip(centres, so2, strict=True):
            assert float(out.sel(x=cx, y=cy, method="nearest")) == pytest.approx(s, abs=1e-3)
        thb = pa.get_scan_thb()[("ubp", "0")].da.isel(frames=0, z=0).squeeze()
        assert float(thb.sel(x=cx, y=cy, method="nearest")) > 1e3 * abs(
            float(thb.sel(x=0.0, y=3.5e-3, method="nearest")))  # no blood outside
    finally:
        pa.close()


def test_patato_call_in_the_guide_runs(tmp_path, monkeypatch):
    """The save_patato code block of docs/guide/reconstruct.rst runs as written (on the
    PATATO fixture), and PATATO reads the file it writes."""
    import re
    import shutil
    from pathlib import Path

    root = Path(__file__).parents[2]
    text = (root / "docs" / "guide" / "reconstruct.rst").read_text()
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:[ \t]+[^\n]*\n|[ \t]*\n)+)",
                        text, re.M)
    block = next(b for b in blocks if "save_patato(" in b)
    shutil.copy(root / "tests" / "data" / "patato_ring16.hdf5", tmp_path / "scan.hdf5")
    monkeypatch.chdir(tmp_path)
    exec(compile(textwrap.dedent(block), "reconstruct.rst", "exec"), {})
    back = oatomo.load_scan(tmp_path / "scan_patato.hdf5")
    assert back.sinogram.shape == oatomo.load_scan(tmp_path / "scan.hdf5").sinogram.shape
    patato = pytest.importorskip("patato")
    pa = patato.PAData.from_hdf5(str(tmp_path / "scan_patato.hdf5"))
    try:
        assert len(pa.get_scan_reconstructions()) == 1
    finally:
        pa.close()


def test_patato_reads_and_reconstructs_our_export(tmp_path):
    """PATATO itself (an independent implementation) reads an exported scan: the same
    samples, sensor positions, fs and speed of sound; its delay-and-sum of them matches a
    NumPy delay-and-sum with PATATO's conventions (nearest lower sample, pixel centres
    spanning the field of view) on our grid, and oatomo's own DAS up to the interpolation
    (PATATO truncates the delay to a sample, oatomo interpolates linearly)."""
    from oatomo.io import save_patato
    from oatomo.recon.backprojection import backproject

    patato = pytest.importorskip("patato")
    from patato.recon.backprojection_reference import ReferenceBackprojection

    grid = Grid(48, 0.0096)
    ring, acq = ring_array(24, 0.015), Acquisition(40e6, 1000, speed_of_sound=1510.0)
    p0 = oatomo.phantoms.disk(grid, 1.2e-3, (1.5e-3, -0.8e-3))
    scan = oatomo.Scan(oatomo.simulate(p0, grid, ring, acq), ring, acq)
    ours = backproject(scan.sinogram, grid, ring, acq, method="das")
    path = save_patato(tmp_path / "p.hdf5", scan, ours, grid, algorithm="das")
    pa = patato.PAData.from_hdf5(str(path))
    raw = np.asarray(pa.get_time_series().raw_data)
    np.testing.assert_array_equal(raw.reshape(scan.sinogram.shape), scan.sinogram)
    geom = np.asarray(pa.get_scan_geometry())
    np.testing.assert_allclose(geom[:, :2], ring.positions)
    assert pa.get_sampling_frequency() == acq.fs and pa.get_speed_of_sound() == 1510.0
    # PATATO's pixel centres span its field of view: ours is (n - 1) dx wide between centres
    span = grid.dx * (grid.n - 1)
    theirs = np.asarray(ReferenceBackprojection([grid.n, grid.n, 1], [span, span, 0])
                        .reconstruct(raw[0], pa.get_sampling_frequency(), geom,
                                     [grid.n, grid.n, 1], [span, span, 0],
                                     pa.get_speed_of_sound())).reshape(grid.shape)
    X, Y = grid.coordinates()
    floor = np.zeros(grid.shape)
    for s, (sx, sy) in enumerate(ring.positions):
        k = (np.hypot(X - sx, Y - sy) * acq.fs / acq.speed_of_sound).astype(int)
        floor += scan.sinogram[s][np.clip(k, 0, acq.n_samples - 1)]
    assert np.corrcoef(theirs.ravel(), floor.ravel())[0, 1] > 0.9999
    assert np.corrcoef(theirs.ravel(), ours.ravel())[0, 1] > 0.9
    assert 0.8 < np.abs(theirs).max() / np.abs(ours).max() < 1.25


def test_cli_export_patato(tmp_path, capsys):
    from pathlib import Path

    from oatomo.cli import main

    src = Path(__file__).parents[1] / "data" / "patato_ring16.hdf5"
    out = tmp_path / "p.hdf5"
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "i.h5"), "--png", "none",
                 "--no-refine", "-q", "--n", "16", "--frames", "1", "--export-patato",
                 str(out)]) == 0
    assert "recons/mb-tv/0" in capsys.readouterr().out
    back = oatomo.load_scan(out)
    assert back.sinogram.shape == (2, 16, 256)  # frame 1, both wavelengths (squeezed)
    np.testing.assert_allclose(back.wavelengths, [700e-9, 800e-9])


def _rich_ipasc(path):
    """An IPASC file written by PACFISH with every acquisition field, an illuminator with
    every field, and spherical detectors with frequency and angular responses (two frames,
    two wavelengths, 8 detectors on a 12 mm ring)."""
    import pacfish as pf

    n_det, n_t = 8, 200
    rng = np.random.default_rng(3)
    data = rng.standard_normal((n_det, n_t, 2, 2)).astype(np.float32)
    A = pf.MetadataAcquisitionTags
    acq = {A.UUID.tag: "rich-scan", A.DATA_TYPE.tag: "float32",
           A.DIMENSIONALITY.tag: "time", A.SIZES.tag: np.asarray(data.shape),
           A.ENCODING.tag: "raw", A.COMPRESSION.tag: "none",
           A.AD_SAMPLING_RATE.tag: 25e6, A.SPEED_OF_SOUND.tag: 1490.0,
           A.ACQUISITION_WAVELENGTHS.tag: np.array([750e-9, 850e-9]),
           A.PHOTOACOUSTIC_IMAGING_DEVICE_REFERENCE.tag: "ring8-device",
           A.PULSE_ENERGY.tag: np.array([[0.020, 0.021], [0.019, 0.022]]),
           A.MEASUREMENT_TIMESTAMPS.tag: np.array([[0.0, 0.1], [0.05, 0.15]]),
           A.MEASUREMENT_SPATIAL_POSES.tag: np.array([[0.0, 0, 0, 0, 0, 0],
                                                      [0.0, 0, 1e-3, 0, 0, 0]]),
           A.TIME_GAIN_COMPENSATION.tag: np.linspace(1.0, 2.0, n_t),
           A.OVERALL_GAIN.tag: 40.0, A.ELEMENT_DEPENDENT_GAIN.tag: np.full(n_det, 0.9),
           A.TEMPERATURE_CONTROL.tag: np.array([[310.0, 310.1], [310.2, 310.3]]),
           A.ACOUSTIC_COUPLING_AGENT.tag: "heavy water", A.SCANNING_METHOD.tag: "full_scan",
           A.FREQUENCY_DOMAIN_FILTER.tag: np.array([1e5, 8e6]),
           A.MEASUREMENTS_PER_IMAGE.tag: 2,
           A.REGIONS_OF_INTEREST.tag: {"tumour": np.array([-2e-3, 2e-3, -1e-3, 1e-3, 0, 0])}}
    creator = pf.DeviceMetaDataCreator()
    creator.set_general_information(uuid="ring8-device",
                                    fov=np.array([-0.006, 0.006, -0.005, 0.005, -1e-3, 1e-3]))
    light = pf.IlluminationElementCreator()
    light.set_illuminator_position(np.array([0.0, 0.0, 0.03]))
    light.set_illuminator_orientation(np.array([0.0, 0.0, -1.0]))
    light.set_illuminator_geometry_type("CIRCULAR")
    light.set_illuminator_geometry(np.array([5e-3]))
    light.set_wavelength_range(np.array([680e-9, 950e-9, 1e-9]))
    light.set_beam_energy_profile(np.array([[700e-9, 800e-9], [0.02, 0.025]]))
    light.set_beam_stability_profile(np.array([[700e-9, 800e-9], [0.001, 0.002]]))
    light.set_pulse_width(7e-9)
    light.set_beam_intensity_profile(np.array([[0.0, 1e-3], [1.0, 0.5]]))
    light.set_beam_divergence_angles(0.2)
    creator.add_illumination_element(light.get_dictionary())
    th = 2 * np.pi * np.arange(n_det) / n_det
    f = np.linspace(0, 12.5e6, 64)
    for t in th:
        el = pf.DetectionElementCreator()
        p = np.array([0.012 * np.cos(t), 0.012 * np.sin(t), 0.0])
        el.set_detector_position(p)
        el.set_detector_orientation(-p / np.linalg.norm(p))
        el.set_detector_geometry_type("SPHERE")
        el.set_detector_geometry(np.array([2e-4]))
        el.set_frequency_response(np.stack([f, np.exp(-((f - 5e6) / 3e6) ** 2)]))
        el.set_angular_response(np.stack([np.linspace(-1, 1, 5), np.cos(np.linspace(-1, 1, 5))]))
        creator.add_detection_element(el.get_dictionary())
    pa = pf.PAData(binary_time_series_data=data, meta_data_acquisition=acq,
                   meta_data_device=creator.finalize_device_meta_data())
    pf.write_data(str(path), pa)
    return path


def _same_tree(a, b, where=""):
    """Every field of the PACFISH dict ``a`` is in ``b`` with the same value, and back."""
    assert isinstance(b, dict) and sorted(a) == sorted(b), (where, sorted(a), sorted(b))
    for key, value in a.items():
        if isinstance(value, dict):
            _same_tree(value, b[key], f"{where}/{key}")
        elif isinstance(value, str):
            assert b[key] == value, f"{where}/{key}"
        else:
            np.testing.assert_array_equal(np.asarray(b[key]), np.asarray(value),
                                          err_msg=f"{where}/{key}")


@pytest.mark.parametrize("source", ["fixture", "rich"])
def test_ipasc_round_trip_keeps_every_field(tmp_path, source):
    """IPASC -> oatomo -> IPASC, and through oatomo's own format on the way: PACFISH reads
    back every acquisition and device field of the source (the illuminator, the device's
    identifier and field of view, each detector's fields) with the same values, the same
    samples (an empty illuminators group added where the source had none: PACFISH's
    consistency check asks for one), and PACFISH's checks pass."""
    pf = pytest.importorskip("pacfish")
    from pathlib import Path

    src = (Path(__file__).parents[1] / "data" / "ipasc_ring16.hdf5" if source == "fixture"
           else _rich_ipasc(tmp_path / "rich.hdf5"))
    scan = oatomo.load_scan(src)
    mid = oatomo.load_scan(oatomo.save_scan(tmp_path / "mid.h5", scan))  # oatomo's layout
    out = oatomo.save_scan(tmp_path / "back.hdf5", mid, format="ipasc")
    a, b = pf.load_data(str(src)), pf.load_data(str(out))
    np.testing.assert_array_equal(b.binary_time_series_data, a.binary_time_series_data)
    cons = pf.ConsistencyChecker()
    assert cons.check_acquisition_meta_data(b.meta_data_acquisition)
    assert cons.check_device_meta_data(b.meta_data_device)
    if source == "rich":
        assert pf.quality_check_pa_data(a) and pf.quality_check_pa_data(b)
        assert b.meta_data_device["general"]["num_illuminators"] == 1
    _same_tree(a.meta_data_acquisition, b.meta_data_acquisition, "meta_data")
    if "illuminators" not in a.meta_data_device:  # PACFISH's consistency check needs one
        assert b.meta_data_device.pop("illuminators") == {}
    _same_tree(a.meta_data_device, b.meta_data_device, "meta_data_device")


def test_ipasc_carried_fields_follow_the_data(tmp_path):
    """What changed is written from the scan: one frame of two keeps the per-detector fields
    but leaves the per-measurement ones out (with a warning); moved sensors are written
    where they are now, their other fields kept."""
    pf = pytest.importorskip("pacfish")
    from dataclasses import replace

    scan = oatomo.load_scan(_rich_ipasc(tmp_path / "rich.hdf5"))
    one = replace(scan, sinogram=scan.sinogram[:1])
    with pytest.warns(UserWarning, match="pulse_energy.*left out"):
        oatomo.save_scan(tmp_path / "one.hdf5", one, format="ipasc")
    acq = pf.load_data(str(tmp_path / "one.hdf5")).meta_data_acquisition
    assert "pulse_energy" not in acq and "measurement_timestamps" not in acq
    assert acq["overall_gain"] == 40.0 and acq["element_dependent_gain"].shape == (8,)
    moved = replace(scan, sensors=oatomo.SensorArray(scan.sensors.positions * 1.01,
                                                     scan.sensors.normals))
    oatomo.save_scan(tmp_path / "moved.hdf5", moved, format="ipasc")
    back = pf.load_data(str(tmp_path / "moved.hdf5"))
    det = back.meta_data_device["detectors"]["0000000002"]
    np.testing.assert_allclose(det["detector_position"][:2], moved.sensors.positions[2])
    assert det["detector_geometry_type"] == "SPHERE" and det["detector_geometry"] == 2e-4
    with pytest.raises(oatomo.InputError, match="ad_sampling_rate.*written from the scan"):
        oatomo.save_scan(tmp_path / "bad.hdf5", replace(scan, metadata={
            "ipasc": {"ad_sampling_rate": 1.0}}), format="ipasc")
