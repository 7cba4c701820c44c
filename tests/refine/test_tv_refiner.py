"""A refiner whose input is the pipeline's TV image: the training item's input is the
registry's TV image, the pipeline hands its own TV image to the refiner, the output is in
Pa and scale-equivariant, and the scanner family covers short arcs and linear arrays."""

import math

import numpy as np
import pytest

import oatomo
from oatomo import Grid, InputError
from oatomo.datasets.generate import block_mean, generate_dataset, make_item
from oatomo.io import Scan
from oatomo.recon.model_based import reconstruct_model_based
from oatomo.refine import load_refiner
from oatomo.refine.guard import GUARD_RULE, GUARD_RULE_MODEL_BASED, check_refined, guard_rule
from oatomo.scanners import (
    CANONICAL_PITCH,
    FAMILY,
    FAMILY_TV,
    LINE_TOLERANCE,
    TV_ENVIRONMENTS,
    ScannerFamily,
    draw_scan,
    environment,
    line_shape,
)

torch = pytest.importorskip("torch")

SIZE = 24
GRID = Grid(SIZE, SIZE * CANONICAL_PITCH)


def test_tv_input_is_the_registry_tv_image():
    env = environment("arc-short/mixed")
    it = make_item(env, GRID, 7, inputs=("mb-tv", "ubp"), keep_scan=True, oversample=2,
                   responses=True, target="input")
    draw = it["draw"]
    tv = reconstruct_model_based(it["sinogram"], GRID, draw.nominal, draw.acquisition,
                                 method="tv", n_iter=50)[0]
    assert it["scale"][0] == pytest.approx(np.abs(tv).max(), rel=1e-6)
    np.testing.assert_allclose(it["input"][0], tv / np.abs(tv).max(), atol=1e-6)
    # the truth is the 2x finer phantom averaged onto the image grid, over the TV scale
    p0 = oatomo.phantoms.make(it["kind"], Grid(2 * SIZE, GRID.fov),
                              int(np.random.SeedSequence(7).generate_state(4)[1]))
    np.testing.assert_allclose(it["target"][0], block_mean(p0, 2) / it["scale"][0],
                               rtol=1e-5)
    # deterministic: the same seed gives the same bytes
    again = make_item(env, GRID, 7, inputs=("mb-tv", "ubp"), oversample=2, responses=True,
                      target="input")
    assert again["input"].tobytes() == it["input"].tobytes()
    assert again["target"].tobytes() == it["target"].tobytes()


def test_make_item_checks_its_options():
    env = environment("ring-sparse/none")
    with pytest.raises(InputError, match="unknown input 'tv'"):
        make_item(env, GRID, 0, inputs=("tv",))
    with pytest.raises(InputError, match="oversample must be"):
        make_item(env, GRID, 0, oversample=0)
    with pytest.raises(InputError, match="unknown target"):
        make_item(env, GRID, 0, target="peak")


def test_linear_array_draws_and_family():
    env = environment("linear/mixed")
    for seed in range(5):
        d = draw_scan(env, GRID, seed)
        shape = line_shape(d.nominal)
        assert shape["spread"] < 1e-9 and shape["distance"] > GRID.fov / math.sqrt(2)
        assert line_shape(d.true)["spread"] < LINE_TOLERANCE
        assert FAMILY_TV.compatible(d.nominal, d.acquisition, GRID)[0]
        ok, why = FAMILY.compatible(d.nominal, d.acquisition, GRID)
        assert not ok and "not on a ring or arc" in why
        assert draw_scan(env, GRID, seed).true.positions.tobytes() == d.true.positions.tobytes()
    d = draw_scan(environment("arc-short/none"), GRID, 3)
    assert math.pi / 2 <= d.info["arc"] <= math.pi
    assert FAMILY_TV.compatible(d.nominal, d.acquisition, GRID)[0]
    assert not FAMILY.compatible(d.nominal, d.acquisition, GRID)[0]
    # a linear array through the image is refused, with the reason
    big = Grid(200, 200 * CANONICAL_PITCH)
    ok, why = FAMILY_TV.compatible(draw_scan(env, GRID, 0).nominal, d.acquisition, big)
    assert not ok and "reaches the line of the array" in why
    assert ScannerFamily.from_dict(FAMILY_TV.to_dict()) == FAMILY_TV
    assert "linear" not in FAMILY.to_dict()


@pytest.fixture(scope="module")
def tv_refiner(tmp_path_factory):
    """A tiny TV refiner trained for a few steps (the contract, not the quality)."""
    from oatomo.learn.refiner import export_refiner, train_refiner

    tmp = tmp_path_factory.mktemp("tv")
    data = generate_dataset(tmp / "d", list(TV_ENVIRONMENTS[6:8]), count=2, size=16,
                            chunk=2, inputs=("mb-tv", "ubp"), oversample=2, responses=True,
                            target="input")
    ck = tmp / "tv.pt"
    train_refiner(data, "multi-decoder", ck, epochs=1, batch_size=2, channels=(0,),
                  model_args={"width": 4, "depth": 0, "latent": 2})
    path = export_refiner(ck, tmp / "tv.npz")
    return path


def test_tv_refiner_metadata(tv_refiner):
    ref = load_refiner(tv_refiner)
    assert ref.inputs == ("mb-tv",) and ref.gain == 1.0
    assert ref.family == FAMILY_TV and ref.meta["target"] == "input"


def test_tv_targets_need_the_first_channel(tv_refiner, tmp_path):
    from oatomo.learn.refiner import train_refiner

    data = load_refiner(tv_refiner).meta["data"]
    with pytest.raises(InputError, match="the first channel must be 0"):
        train_refiner(data, "unet", tmp_path / "x.pt", channels=(1,))


@pytest.fixture(scope="module")
def arc_scan():
    """A 120-degree arc scan on the canonical grid (a correct file)."""
    grid = Grid(32, 32 * CANONICAL_PITCH)
    d = draw_scan(environment("arc-short/none"), grid, 11)
    p0 = oatomo.phantoms.vessel_tree(Grid(64, grid.fov), 2)
    y = oatomo.simulate(p0, Grid(64, grid.fov), d.nominal, d.acquisition, thickness=grid.dx,
                        noise_std=0.01, seed=3)
    return Scan(y, d.nominal, d.acquisition), grid


def test_reconstruct_refines_its_own_tv_image(tv_refiner, arc_scan):
    scan, grid = arc_scan
    rec = oatomo.reconstruct(scan, "mb-tv", grid=grid, refine=True, model=tv_refiner,
                             calibrate=False, samples=0, guard=False)
    r = rec.provenance["refinement"]
    assert r["applied"] and r["input"] == "mb-tv" and r["method"] == "mb-tv"
    assert r["input_reused"] and "input_note" not in r
    # the same as the refiner reconstructing its TV input itself
    ref = load_refiner(tv_refiner)
    own = ref.refine_scan(scan.sinogram, scan.sensors, scan.acquisition, grid, n_samples=0)
    np.testing.assert_allclose(rec.images["refined"], own.refined, rtol=1e-5,
                               atol=1e-6 * np.abs(own.refined).max())
    np.testing.assert_array_equal(own.linear["mb-tv"], rec.images["mb-tv"])
    # another method: the refiner computes its TV input and says so
    rec2 = oatomo.reconstruct(scan, "ubp", grid=grid, refine=True, model=tv_refiner,
                              calibrate=False, samples=0, guard=False)
    r2 = rec2.provenance["refinement"]
    assert not r2["input_reused"] and "not the ubp image" in r2["input_note"]
    np.testing.assert_allclose(rec2.images["refined"], own.refined, rtol=1e-5,
                               atol=1e-6 * np.abs(own.refined).max())


def test_guard_with_tv_as_the_method_image(tv_refiner, arc_scan):
    scan, grid = arc_scan
    rec = oatomo.reconstruct(scan, "mb-tv", grid=grid, refine=True, model=tv_refiner,
                             calibrate=False, samples=0)
    r = rec.provenance["refinement"]
    g = r["guard"]
    assert g["passed"] in (True, False) and g["frames"]
    # TV fits the data by construction: the stricter rule of model-based method images
    assert g["rule"]["min_ratio"] == GUARD_RULE_MODEL_BASED.min_ratio > GUARD_RULE.min_ratio
    assert guard_rule("mb-tikhonov") == GUARD_RULE_MODEL_BASED
    assert guard_rule("ubp") == guard_rule(None) == GUARD_RULE
    assert rec.refined == g["passed"] == ("refined" in rec.images)
    if not g["passed"]:
        assert "the mb-tv image is kept" in r["reason"]
    # a refined image that explains the data much worse than TV is rejected
    tv = rec.images["mb-tv"]
    bad = check_refined(np.roll(tv, 6, axis=0), tv, scan.sinogram, grid, scan.sensors,
                        scan.acquisition, rule=GUARD_RULE_MODEL_BASED)
    assert not bad.passed
    assert check_refined(tv, tv, scan.sinogram, grid, scan.sensors, scan.acquisition,
                         rule=GUARD_RULE_MODEL_BASED).passed


def test_tv_refiner_is_scale_equivariant_and_deterministic(tv_refiner, arc_scan):
    scan, grid = arc_scan
    for backend in ("numpy", "torch"):
        ref = load_refiner(tv_refiner, backend=backend)
        x = np.stack(list(ref.linear_inputs(scan.sinogram, scan.sensors, scan.acquisition,
                                            grid).values()))
        base = ref.refine_images(x, n_samples=4, seed=1)
        assert base.units["refined"] == "Pa"
        assert base.scale == pytest.approx(float(np.abs(x[0]).max()), rel=1e-6)
        for a in (0.25, 8.0):
            s = ref.refine_images(np.float32(a) * x, n_samples=4, seed=1)
            top = np.abs(base.refined).max()
            np.testing.assert_allclose(s.refined, a * base.refined, rtol=1e-4,
                                       atol=1e-5 * a * top)
        again = ref.refine_images(x, n_samples=4, seed=1)
        assert again.refined.tobytes() == base.refined.tobytes()


def test_max_target_leaves_out_items(tv_refiner, tmp_path):
    from oatomo.datasets import load_dataset
    from oatomo.learn.refiner import train_refiner

    data = load_refiner(tv_refiner).meta["data"]
    envs, _ = load_dataset(data)
    peaks = np.concatenate([t.reshape(len(t), -1).max(1) for _, t in envs])
    with pytest.raises(InputError, match="leaves an environment empty"):
        train_refiner(data, "unet", tmp_path / "x.pt", channels=(0,),
                      max_target=float(peaks.min()) / 2)
    cut = float(np.sort(peaks)[-1]) * 0.999  # drops the largest item only
    train_refiner(data, "unet", tmp_path / "y.pt", channels=(0,), max_target=cut,
                  epochs=1, batch_size=2, model_args={"width": 4})
    meta = load_refiner(tmp_path / "y.pt").meta
    assert meta["max_target"] == cut and sum(meta["kept"]) == len(peaks) - 1
