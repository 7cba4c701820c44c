"""Figures (colourbars with units, frames labelled, uncertainty on
its own scale), the default field of view, image files that keep their axes' meaning, and
the IPASC export checked by PACFISH."""

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


def test_patato_export_for_unmixing(tmp_path):
    """save_patato writes PATATO's layout: raw_data, GEOMETRY, wavelengths (nm, as PATATO's
    spectra are tabulated), and recons/<method>/0 as (frames, wavelengths, nx, ny, 1) with
    the field of view; oatomo reads the scan back, and PATATO's own reader (when installed)
    finds the reconstruction."""
    import h5py

    from oatomo.io import save_patato

    scan, grid = _scan()
    two = oatomo.Scan(np.stack([scan.sinogram, 2 * scan.sinogram]), scan.sensors,
                      scan.acquisition, wavelengths=np.array([750e-9, 850e-9]))
    rec = oatomo.reconstruct(two, "das", grid, refine=False)
    path = save_patato(tmp_path / "p.hdf5", two, rec.image, grid, algorithm="das")
    with h5py.File(path) as f:
        r = f["recons/das/0"]
        assert r.shape == (1, 2, 32, 32, 1) and r.attrs["RECONSTRUCTION_FIELD_OF_VIEW_X"] == 0.008
        np.testing.assert_array_equal(r[0, 1, :, :, 0], rec.image[1].T)  # PATATO: [x, y]
        np.testing.assert_allclose(f["wavelengths"][...], [750, 850])
    back = oatomo.load_scan(path)
    np.testing.assert_allclose(back.wavelengths, [750e-9, 850e-9])
    np.testing.assert_array_equal(back.sinogram, two.sinogram)
    with pytest.raises(oatomo.InputError, match="do not match"):
        save_patato(tmp_path / "q.hdf5", two, rec.image[0], grid, algorithm="das")
    patato = pytest.importorskip("patato")  # in the test extras (make test installs it)
    recs = patato.PAData.from_hdf5(str(path)).get_scan_reconstructions()
    assert any(key[0] == "das" for key in recs)


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
    assert "recons/ubp/0" in capsys.readouterr().out
    back = oatomo.load_scan(out)
    assert back.sinogram.shape == (2, 16, 256)  # frame 1, both wavelengths (squeezed)
    np.testing.assert_allclose(back.wavelengths, [700e-9, 800e-9])
