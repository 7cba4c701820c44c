"""The shipped TV refiner: the default reconstruction of a correct file refines the
pipeline's own TV image, improves it on a scan simulated on a finer grid than the image's
(an independent discretisation), keeps units and frame ratios, and says why when it does
not apply."""

from __future__ import annotations

import numpy as np
import pytest

import oatomo
from oatomo import Grid, InputError
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.io import Scan
from oatomo.learn.records import read_weights
from oatomo.resources import default_model_path
from oatomo.response import DetectorResponse

pytest.importorskip("torch")

MODEL = default_model_path("mb-tv")


def _score(img: np.ndarray, truth: np.ndarray) -> float:
    fit = affine_fit(np.asarray(img, np.float64)[None], truth[None])[0]
    return float(psnr(fit, truth, data_range=1.0))


@pytest.fixture(scope="module")
def correct_scan():
    """A 48-sensor ring (r 22 mm) at its true positions, a vessel tree simulated on a grid
    twice as fine as the 96 x 96, 0.1 mm image grid, a 4 MHz detector band carried by the
    scan and 1 % noise."""
    grid, fine = Grid(96, 9.6e-3), Grid(192, 9.6e-3)
    sensors = oatomo.geometry.ring_array(48, 0.022)
    acq = oatomo.Acquisition(40e6, 1280, 1510.0)
    p0 = oatomo.phantoms.vessel_tree(fine, 21, depth=5, width=0.4e-3)
    response = DetectorResponse(centre_frequency=4e6, bandwidth=1.2)
    y = oatomo.simulate(p0, fine, sensors, acq, thickness=grid.dx, noise_std=0.01,
                        response=response, seed=4)
    truth = p0.reshape(96, 2, 96, 2).mean(axis=(1, 3))
    return Scan(y, sensors, acq, response=response), grid, truth / truth.max()


def test_shipped_archive_describes_the_tv_refiner():
    assert MODEL.is_file() and MODEL.stat().st_size < 20e6
    meta, _ = read_weights(MODEL)
    fam = meta["train"]["oatomo_family_refiner"]
    assert meta["model_class"] == "SkipMultiDecoderIVAE" and meta["config"]["residual"]
    assert fam["inputs"] == ["mb-tv", "ubp"] and fam["native_grid"] and \
        fam["input_from_pipeline"]
    assert fam["env_names"] == ["ring", "arc-wide", "arc-short", "linear"]
    # the uncertainty map is the variant decoders' spread (posterior samples added nothing)
    # weighted by the refined image's edges
    assert fam["uncertainty"] == "decoders-edges"


def test_uncertainty_map_is_the_edge_weighted_spread_of_the_variant_decoders():
    from oatomo.refine import load_refiner
    from oatomo.refine.refiner import edge_weighted

    ref = load_refiner(MODEL)
    x = np.abs(np.random.default_rng(3).normal(size=(2, 64, 64))).astype(np.float32)
    few, many = (ref.refine_images(x, n_samples=k) for k in (2, 16))
    np.testing.assert_array_equal(few.std, many.std)  # no posterior samples are drawn
    # the spread over the decoders, computed here from each decoder's own image (of the
    # plain input: the turns and mirrors serve the refined image only)
    import dataclasses

    plain = dataclasses.replace(ref, meta={**ref.meta, "tta": False})
    per = np.stack([plain.refine_images(x, n_samples=0, env=e).refined
                    for e in ref.env_names])
    expected = edge_weighted(per.std(axis=0), few.refined)
    np.testing.assert_allclose(few.std, expected, atol=1e-4 * float(expected.max()))


def test_refine_scan_adds_the_limited_view_term_to_the_map():
    import math

    from oatomo.refine import load_refiner
    from oatomo.refine.view import view_channels

    ref = load_refiner(MODEL)
    grid = Grid(64, 6.4e-3)
    angles = -math.pi / 2 + np.radians(np.linspace(-60, 60, 64))  # a 120 degree arc below
    pos = 0.025 * np.stack([np.cos(angles), np.sin(angles)], 1)
    arc = oatomo.SensorArray(pos, -pos / 0.025)
    acq = oatomo.Acquisition(40e6, 1024, 1500.0)
    y = oatomo.simulate(oatomo.phantoms.vessel_tree(grid, 5, depth=4, width=0.3e-3), grid,
                        arc, acq, noise_std=0.01, seed=1)
    canon = ref.model_grid(grid)
    assert canon == grid
    out = ref.refine_scan(y, arc, acq, grid, n_samples=2)
    lin = ref.linear_inputs(y, arc, acq, canon)
    x = np.stack([lin[m] for m in ref.inputs])
    view = view_channels(arc, canon)
    with_view = ref.refine_images(x, n_samples=2, map_view=view)
    without = ref.refine_images(x, n_samples=2)
    np.testing.assert_allclose(out.std, with_view.std, rtol=1e-5,
                               atol=1e-6 * float(with_view.std.max()))
    # the one-sided view adds the smoothed spread: the map grows where the view is limited
    assert float((with_view.std - without.std).min()) >= -1e-6 * float(without.std.max())
    assert float(with_view.std.sum()) > 1.2 * float(without.std.sum())


def test_default_refines_a_correct_file_and_beats_tv(correct_scan):
    scan, grid, truth = correct_scan
    rec = oatomo.reconstruct(scan, grid=grid)
    how = rec.provenance["refinement"]
    assert rec.provenance["method"] == "mb-tv" and how["applied"] and rec.refined
    assert how["input"] == "mb-tv+ubp" and how["input_reused"]
    assert how["guard"]["passed"] is True
    assert rec.image is rec.images["refined"] and rec.units["refined"] == "Pa"
    tv, ref = _score(rec.images["mb-tv"], truth), _score(rec.images["refined"], truth)
    # measured: TV 34.4 dB, refined 40.6 dB on this scan (39.1 when the first weights were
    # shipped, before the non-negative answer and the microspheres)
    assert ref > tv + 2.0, (tv, ref)
    # the uncertainty map ranks the pixels by their error
    err = np.abs(affine_fit(rec.images["refined"].astype(np.float64)[None], truth[None])[0]
                 - truth)
    r = np.corrcoef(rec.images["uncertainty"].ravel(), err.ravel())[0, 1]
    assert r > 0.4, r  # 0.59 with the decoders' spread alone, 0.68 weighted by the edges


def test_refined_image_keeps_the_tv_image_s_nonnegativity(correct_scan):
    """The pipeline returns the network's answer with its negative pixels set to 0 (the
    TV image it refined is constrained to p0 >= 0); the network's own answer, recomputed
    here from the same TV image, has negative pixels, and the guard judged that answer."""
    from oatomo.refine import load_refiner

    scan, grid, truth = correct_scan
    rec = oatomo.reconstruct(scan, grid=grid, samples=0)
    how = rec.provenance["refinement"]
    assert rec.refined and how["guard"]["passed"]
    raw = load_refiner(MODEL).refine_scan(scan.sinogram, scan.sensors, scan.acquisition,
                                          grid, n_samples=0, check=False,
                                          images={"mb-tv": rec.images["mb-tv"]}).refined
    assert float(raw.min()) < -1e-3 * float(raw.max())
    out = rec.images["refined"]
    assert float(out.min()) == 0.0
    np.testing.assert_allclose(out, np.maximum(raw, 0), atol=1e-5 * float(raw.max()))
    share = float(np.sum(np.minimum(raw, 0.0) ** 2) / np.sum(raw.astype(np.float64) ** 2))
    assert how["nonneg"] == pytest.approx(share, rel=1e-3)
    # the constraint costs nothing here: the kept image scores at least the raw answer
    assert _score(out, truth) >= _score(raw, truth) - 0.02


def test_frame_ratio_is_kept(correct_scan):
    scan, grid, _ = correct_scan
    two = Scan(np.stack([scan.sinogram, 0.5 * scan.sinogram]), scan.sensors,
               scan.acquisition, response=scan.response)
    rec = oatomo.reconstruct(two, grid=grid, samples=0)
    assert rec.refined
    ref = rec.images["refined"]
    ratio = float(np.sum(ref[1] * ref[0]) / np.sum(ref[0] * ref[0]))
    assert ratio == pytest.approx(0.5, rel=5e-3)


def test_other_settings_or_grids_are_not_refined_and_say_why(correct_scan):
    scan, grid, _ = correct_scan
    rec = oatomo.reconstruct(scan, grid=grid, iters=20, samples=0)
    assert not rec.refined and "made otherwise" in rec.provenance["refinement"]["reason"]
    with pytest.raises(InputError, match="made otherwise"):
        oatomo.reconstruct(scan, grid=grid, iters=20, refine=True, samples=0)
    coarse = oatomo.reconstruct(scan, grid=Grid(32, 9.6e-3), samples=0)
    assert not coarse.refined and "pitch" in coarse.provenance["refinement"]["reason"]


def test_guard_keeps_tv_on_a_scan_without_signal_and_the_result_is_deterministic(
        correct_scan):
    scan, grid, _ = correct_scan
    rng = np.random.default_rng(8)
    noise = Scan(rng.standard_normal(scan.sinogram.shape).astype(np.float32), scan.sensors,
                 scan.acquisition, response=scan.response)
    rec = oatomo.reconstruct(noise, grid=grid, samples=0, calibrate=False)
    how = rec.provenance["refinement"]
    assert not rec.refined and how["guard"]["passed"] is False
    assert "the mb-tv image is kept" in how["reason"]
    a = oatomo.reconstruct(scan, grid=grid, samples=4)
    b = oatomo.reconstruct(scan, grid=grid, samples=4)
    assert a.images["refined"].tobytes() == b.images["refined"].tobytes()
    assert a.images["uncertainty"].tobytes() == b.images["uncertainty"].tobytes()


def test_refine_on_a_wrong_file_calibrates_then_refines(correct_scan):
    """``refine=True`` on a file whose positions fail the check: calibrated, then the TV
    image of the calibrated geometry refined (the TV refiner was trained on images made
    with the true positions); the default does the same (the same images, the guard's
    verdict recorded)."""
    scan, grid, truth = correct_scan
    rng = np.random.default_rng(5)
    wrong = scan.sensors.positions + rng.normal(0, 0.25e-3, scan.sensors.positions.shape)
    file = Scan(scan.sinogram, oatomo.SensorArray(wrong.astype(np.float32)),
                scan.acquisition, response=scan.response)
    default = oatomo.reconstruct(file, grid=grid, samples=0)
    assert default.provenance["calibration"] is not None and default.refined
    assert default.provenance["refinement"]["guard"]["passed"] is True
    forced = oatomo.reconstruct(file, grid=grid, refine=True, samples=0)
    prov = forced.provenance
    assert prov["calibration"] is not None and prov["method"] == "mb-tv"
    assert forced.refined and prov["refinement"]["input_reused"]
    np.testing.assert_array_equal(forced.images["mb-tv"], default.images["mb-tv"])
    np.testing.assert_array_equal(forced.image, default.image)


def test_self_calibrated_two_frame_scan_is_refined_and_keeps_the_frame_ratio(correct_scan):
    """A two-frame file whose positions are wrong: the default calibrates it (positions
    shared by the frames), refines its calibrated TV images and keeps the frames' ratio."""
    scan, grid, _ = correct_scan
    rng = np.random.default_rng(5)
    wrong = scan.sensors.positions + rng.normal(0, 0.25e-3, scan.sensors.positions.shape)
    two = Scan(np.stack([scan.sinogram, 0.5 * scan.sinogram]),
               oatomo.SensorArray(wrong.astype(np.float32)), scan.acquisition,
               response=scan.response)
    rec = oatomo.reconstruct(two, grid=grid, samples=0)
    assert rec.provenance["calibration"] is not None and rec.refined
    ref = rec.images["refined"]
    assert ref.shape == (2,) + grid.shape
    ratio = float(np.sum(ref[1] * ref[0]) / np.sum(ref[0] * ref[0]))
    assert ratio == pytest.approx(0.5, rel=5e-3)


def _turned_answers(plain, x, turns):
    """The refined images of the turned (and mirrored) inputs, each turned back."""
    answers = []
    for k, flip in turns:
        xt = np.rot90(x, k, (1, 2))
        xt = np.ascontiguousarray(xt[..., ::-1] if flip else xt)
        r = plain.refine_images(xt, n_samples=0).refined
        answers.append(np.rot90(r[..., ::-1] if flip else r, -k))
    return answers


def test_refined_image_is_the_mean_over_the_quarter_turns():
    import dataclasses

    from oatomo.refine import load_refiner

    ref = load_refiner(MODEL)
    assert ref.tta and ref.tta_passes == 4
    plain = dataclasses.replace(ref, meta={**ref.meta, "tta": False})
    x = np.abs(np.random.default_rng(5).normal(size=(2, 48, 48))).astype(np.float32)
    # the four answers computed here, each turned back
    answers = _turned_answers(plain, x, [(k, False) for k in range(4)])
    got = ref.refine_images(x, n_samples=4)
    np.testing.assert_allclose(got.refined, np.mean(answers, 0), rtol=1e-5,
                               atol=1e-6 * float(np.abs(got.refined).max()))
    # the map comes from the plain pass, weighted by the edges of the averaged image
    from oatomo.refine.refiner import edge_weighted

    spread = plain.refine_images(x, n_samples=4).std
    assert spread is not None and got.std is not None
    per = np.stack([plain.refine_images(x, n_samples=0, env=e).refined
                    for e in ref.env_names])
    np.testing.assert_allclose(got.std, edge_weighted(per.std(axis=0), got.refined),
                               atol=1e-4 * float(got.std.max()))
    # scale-equivariant still, and the PyTorch back end agrees
    np.testing.assert_allclose(ref.refine_images(3.0 * x, n_samples=0).refined,
                               3.0 * got.refined, rtol=1e-4,
                               atol=1e-5 * float(np.abs(got.refined).max()))
    torch_ref = load_refiner(MODEL, backend="torch")
    np.testing.assert_allclose(torch_ref.refine_images(x, n_samples=0).refined, got.refined,
                               atol=1e-4 * float(np.abs(got.refined).max()))


def test_tta_counts_the_turns_and_mirrors_and_refuses_other_counts():
    import dataclasses

    from oatomo.refine import load_refiner

    ref = load_refiner(MODEL)
    x = np.abs(np.random.default_rng(6).normal(size=(2, 40, 40))).astype(np.float32)
    plain = dataclasses.replace(ref, meta={**ref.meta, "tta": False})
    assert plain.passes() == [(0, 0, False)]
    # true: the 8 turns and mirrors; 2: the input and its half turn
    for value, turns in ((True, [(k, f) for k in range(4) for f in (False, True)]),
                         (2, [(0, False), (2, False)])):
        other = dataclasses.replace(ref, meta={**ref.meta, "tta": value})
        np.testing.assert_allclose(other.refine_images(x, n_samples=0).refined,
                                   np.mean(_turned_answers(plain, x, turns), 0), rtol=1e-5,
                                   atol=1e-6 * float(np.abs(x).max()))
    assert dataclasses.replace(ref, meta={**ref.meta, "tta": None}).tta_passes == 1
    for value in (3, 0, 4.5, "many"):
        bad = dataclasses.replace(ref, meta={**ref.meta, "tta": value})
        with pytest.raises(InputError, match="'tta' must be"):
            bad.refine_images(x, n_samples=0)


def test_passes_at_once_give_the_same_bytes(monkeypatch):
    """The NumPy back end runs the turned passes on several threads at once: the refined
    image and the map are those of one pass after the other, to the bit; the worker count
    follows the CPUs, OMP_NUM_THREADS and the number of passes."""
    from oatomo.refine import load_refiner
    from oatomo.refine import refiner as R

    ref = load_refiner(MODEL, backend="numpy")
    x = np.abs(np.random.default_rng(8).normal(size=(2, 48, 48))).astype(np.float32)
    got = {}
    for workers in (1, 4):
        monkeypatch.setattr(R, "pass_workers", lambda n, w=workers: min(w, n))
        out = ref.refine_images(x, n_samples=4)
        got[workers] = (out.refined.tobytes(), out.std.tobytes())
    assert got[1] == got[4]
    monkeypatch.undo()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert R.pass_workers(4) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert 1 <= R.pass_workers(4) <= 4 and R.pass_workers(1) == 1
