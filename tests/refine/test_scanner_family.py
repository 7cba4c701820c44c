"""Scanner family, fully convolutional models and the any-geometry refiner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oatomo import phantoms
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, ring_array
from oatomo.scanners import (
    FAMILY,
    TRAIN_ENVIRONMENTS,
    array_shape,
    draw_scan,
    environment,
)

NEW_KINDS = ("vessel-forest", "vessel-walk", "blobs", "texture", "texture-heldout", "mixture")


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_phantoms_seeded_max_one(kind):
    g = Grid(48, 4.8e-3)
    a, b, c = (phantoms.make(kind, g, s) for s in (3, 3, 4))
    assert a.shape == g.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() == pytest.approx(1.0)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_vessel_tree_width_scales():
    g = Grid(64, 6.4e-3)
    thin = phantoms.vessel_tree(g, 1, width=1.2 * g.dx)
    thick = phantoms.vessel_tree(g, 1, width=6 * g.dx)
    assert (thin > 0.5).sum() < (thick > 0.5).sum()


def test_heldout_textures_disjoint_from_training():
    assert not set(phantoms.TRAIN_TEXTURES) & set(phantoms.HELDOUT_TEXTURES)


def test_array_shape_ring_and_arc():
    s = array_shape(ring_array(64, 0.03))
    assert s["coverage"] == pytest.approx(2 * math.pi)
    assert s["radius"] == pytest.approx(0.03)
    arc = array_shape(ring_array(100, 0.03, arc=1.5 * math.pi))
    assert math.degrees(arc["coverage"]) == pytest.approx(270, abs=0.1)


def _acq(c=1500.0):
    return Acquisition(40e6, 2048, c)


@pytest.mark.parametrize("sensors, grid, c, words", [
    (ring_array(16, 0.0225), Grid(128, 0.0128), 1500.0, "16 sensors"),
    (ring_array(1024, 0.04), Grid(128, 0.0128), 1500.0, "1024 sensors"),
    (ring_array(128, 0.03, arc=math.radians(120)), Grid(128, 0.0128), 1500.0,
     "covers 120 degrees"),
    (ring_array(64, 0.08), Grid(128, 0.0128), 1500.0, "radius is 80.0 mm"),
    (ring_array(64, 0.03), Grid(64, 0.0512), 1500.0, "pitch is 0.800 mm"),
    (ring_array(64, 0.02), Grid(256, 0.030), 1500.0, "reaches past the array"),
    (ring_array(64, 0.03), Grid(128, 0.0128), 1800.0, "speed of sound is 1800"),
    (SensorArray(np.stack([np.linspace(-0.02, 0.02, 64), np.full(64, 0.02)], 1)),
     Grid(128, 0.0128), 1500.0, "not on a ring or arc"),
])
def test_compatible_says_why(sensors, grid, c, words):
    ok, reason = FAMILY.compatible(sensors, _acq(c), grid)
    assert not ok
    assert words in reason


@pytest.mark.parametrize("sensors", [ring_array(32, 0.0225), ring_array(256, 0.04),
                                     ring_array(64, 0.03, arc=1.5 * math.pi),
                                     ring_array(512, 0.05, arc=math.pi)])
def test_compatible_family_members(sensors):
    ok, reason = FAMILY.compatible(sensors, _acq(), Grid(128, 0.0128))
    assert ok, reason


def test_draw_scan_seeded_and_covers_fov():
    g = Grid(64, 6.4e-3)
    env = environment("arc/mixed")
    a, b = draw_scan(env, g, 5), draw_scan(env, g, 5)
    assert np.array_equal(a.true.positions, b.true.positions)
    assert a.acquisition == b.acquisition
    assert not np.array_equal(a.true.positions, a.nominal.positions)
    # the sampling window covers every pixel seen from every sensor at both speeds
    d = np.hypot(*a.true.positions.T)
    acq = a.acquisition
    t_end = acq.t0 + acq.n_samples / acq.fs
    assert acq.t0 * max(acq.speed_of_sound, a.true_speed) <= d.min() - g.fov / math.sqrt(2)
    assert t_end * min(acq.speed_of_sound, a.true_speed) >= d.max() + g.fov / math.sqrt(2)
    assert abs(a.true_speed / acq.speed_of_sound - 1) <= 0.02 + 1e-12
    assert len(TRAIN_ENVIRONMENTS) == 15
    with pytest.raises(InputError, match="unknown environment"):
        environment("ring/none")


@pytest.mark.parametrize("size", [32, 44])
def test_conv_models_any_size(size):
    from oatomo.learn.conv import ConvMultiDecoderIVAE, ConvVAEConfig

    m = ConvMultiDecoderIVAE(ConvVAEConfig(in_channels=2, width=8, depth=1, latent_dim=4,
                                           n_envs=3), seed=0)
    x = torch.rand(3, 2, size, size)
    terms = m.loss(x, torch.tensor([0, 1, 2]), torch.rand(3, 1, size, size))
    assert torch.isfinite(terms["total"])
    assert m.reconstruct(x).shape == (3, 1, size, size)
    with pytest.raises(InputError, match="multiples of 4"):
        m.reconstruct(torch.rand(1, 2, 30, 30))


@pytest.fixture(scope="module")
def tiny_refiners(tmp_path_factory):
    from oatomo.datasets import generate_dataset
    from oatomo.learn.refiner import train_refiner

    tmp = tmp_path_factory.mktemp("fam")
    generate_dataset(tmp / "d", ["ring-sparse/none", "arc/radial"], count=4, size=32,
                         chunk=4, inputs=("ubp", "das"))
    out = {}
    for kind in ("multi-decoder", "beta-vae", "unet"):
        torch.manual_seed(0)
        _, res = train_refiner(tmp / "d", kind, tmp / f"{kind}.pt", epochs=2, batch_size=4,
                               log=tmp / f"{kind}.jsonl",
                               model_args=dict(width=8, depth=1, latent=4))
        assert res.step == 4
        out[kind] = tmp / f"{kind}.pt"
    return out


def test_family_training_resumes_bit_for_bit(tiny_refiners, tmp_path):
    from oatomo.learn.refiner import train_refiner

    data = tiny_refiners["unet"].parent / "d"
    kw = dict(batch_size=4, model_args=dict(width=8, depth=1, latent=4))
    m1, _ = train_refiner(data, "multi-decoder", tmp_path / "a.pt", epochs=2, **kw)
    train_refiner(data, "multi-decoder", tmp_path / "b.pt", epochs=1, **kw)
    m2, r2 = train_refiner(data, "multi-decoder", tmp_path / "b.pt", epochs=2, resume=True,
                           **kw)
    assert r2.resumed_from == 2
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_failed_training_leaves_no_empty_curve(tiny_refiners, tmp_path, monkeypatch):
    """A run that fails before its first step removes the learning-curve file it created
    (an empty one made the next run refuse to overwrite it); an existing curve is kept."""
    import oatomo.learn.refiner as R

    def broken(*args, **kwargs):
        raise RuntimeError("no step")

    monkeypatch.setattr(R, "train", broken)
    data = tiny_refiners["unet"].parent / "d"
    kw = dict(batch_size=4, model_args=dict(width=8, depth=1, latent=4))
    with pytest.raises(RuntimeError, match="no step"):
        R.train_refiner(data, "unet", tmp_path / "m.pt", epochs=1, log=tmp_path / "m.jsonl",
                        **kw)
    assert not (tmp_path / "m.jsonl").exists()
    (tmp_path / "old.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RuntimeError, match="no step"):
        R.train_refiner(data, "unet", tmp_path / "m.pt", epochs=1, log=tmp_path / "old.jsonl",
                        **kw)
    assert (tmp_path / "old.jsonl").read_text() == '{"step": 1}\n'


def test_refine_any_grid_units_and_determinism(tiny_refiners):
    from oatomo.forward import simulate
    from oatomo.refine import load_refiner

    ref = load_refiner(tiny_refiners["multi-decoder"])
    assert ref.inputs == ("ubp", "das") and len(ref.env_names) == 2
    grid = Grid(50, 0.0075)                      # 0.15 mm pitch, not a multiple of 4
    sensors = ring_array(48, 0.02)
    acq = Acquisition(40e6, 1200, 1500.0)
    sino = simulate(phantoms.blobs(grid, 1), grid, sensors, acq)
    a = ref.refine_scan(sino, sensors, acq, grid, n_samples=4, seed=3)
    b = ref.refine_scan(sino, sensors, acq, grid, n_samples=4, seed=3)
    assert a.refined.shape == grid.shape and a.std.shape == grid.shape
    assert a.canonical.dx == pytest.approx(1e-4) and a.canonical.n % 4 == 0
    assert a.canonical.fov >= grid.fov
    assert a.refined.tobytes() == b.refined.tobytes() and a.std.tobytes() == b.std.tobytes()
    assert a.units["refined"] == a.units["ubp"] == "a.u."
    assert np.all(a.std >= 0)
    variant = ref.refine_scan(sino, sensors, acq, grid, n_samples=0, env="arc/radial")
    assert variant.std is None and not np.array_equal(variant.refined, a.refined)
    with pytest.raises(InputError, match="cannot refine: the scan has 8 sensors"):
        ref.refine_scan(sino[:8], SensorArray(sensors.positions[:8]), acq, grid)


def test_refine_tiles_match_whole_image_in_the_middle(tiny_refiners):
    from oatomo.refine import load_refiner

    ref = load_refiner(tiny_refiners["multi-decoder"])
    x = np.random.default_rng(0).random((2, 128, 128)).astype(np.float32)
    whole = ref.refine_images(x, n_samples=3).refined
    tiled = ref.refine_images(x, n_samples=3, tile=96, overlap=64)
    assert tiled.refined.shape == whole.shape == tiled.std.shape
    assert tiled.grid == tiled.canonical and tiled.grid.n == 128
    tiled = tiled.refined
    # away from tile borders the fully convolutional model gives the same pixels
    assert np.abs(tiled - whole)[56:72, 56:72].max() < 1e-4


def test_resample_round_trip():
    from oatomo.refine import resample, to_canonical_grid

    user = Grid(64, 0.0096)
    canon = to_canonical_grid(user)
    assert canon.n == 96 and canon.dx == pytest.approx(1e-4)
    img = phantoms.blobs(user, 2)
    back = resample(resample(img, user, canon), canon, user)
    assert np.abs(back - img)[8:-8, 8:-8].max() < 0.05


def test_evaluate_refiners_tables_and_figure(tiny_refiners, tmp_path):
    from oatomo.evaluation.refiners import evaluate_refiners, make_eval_set, to_markdown

    ev = make_eval_set(tmp_path / "ev", count=2, size=32, tv_iter=3,
                       geometries=["ring32-r22.5"], perturbations=["radial", "large"])
    assert len(list(ev.glob("*.npz"))) == 2
    res = evaluate_refiners(ev, {"inv": tiny_refiners["multi-decoder"],
                                 "unet": tiny_refiners["unet"]}, out=tmp_path / "out",
                            n_samples=3, uncertainty_modes=("decoders",))
    methods = {r["method"] for r in res["rows"]}
    assert {"ubp", "das", "tv_nominal", "tv_true", "inv", "unet"} <= methods
    s = res["summary"]["inv"]
    assert {"psnr_in", "psnr_held_out", "drop", "drop_se", "unc_corr_held_out",
            "unc_corr_decoders_held_out"} <= set(s)
    assert "unc_corr_held_out" not in res["summary"]["unet"]
    assert len(res["calibration"]["inv"]["predicted_std"]) > 3
    assert "| ring32-r22.5 | large (held out) |" in to_markdown(res)
    (pair,) = res["paired_drop"]
    assert (pair["reference"], pair["other"], pair["n_in"], pair["n_held_out"]) == (
        "inv", "unet", 2, 2)
    drop = res["summary"]["unet"]["drop"] - s["drop"]  # the same scans: the same difference
    assert pair["difference"] == pytest.approx(drop, abs=1e-9)
    assert "| unet | inv |" in to_markdown(res)
    for name in ("evaluation.json", "evaluation.md", "evaluation.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_compatible_off_centre_ring():
    ring = ring_array(128, 0.03)
    shifted = SensorArray(ring.positions + [0.005, -0.004])
    ok, reason = FAMILY.compatible(shifted, _acq(), Grid(128, 0.0128))
    assert ok, reason
    ok, reason = FAMILY.compatible(SensorArray(ring.positions + [0.025, 0.0]), _acq(),
                                   Grid(128, 0.0128))
    assert not ok and "reaches past the array" in reason


def test_refiner_cli_data_train_export(tmp_path, capsys):
    from oatomo.cli import main
    from oatomo.refine import load_refiner

    d, ck, ex = tmp_path / "d", tmp_path / "m.pt", tmp_path / "shipped.pt"
    assert main(["refiner", "data", "-o", str(d), "--count", "1", "--size", "32"]) == 0
    assert main(["refiner", "train", "--data", str(d), "--model", "unet", "-o", str(ck),
                 "--epochs", "1", "--batch-size", "15", "--inputs", "das", "--width", "4"]) == 0
    assert main(["refiner", "export", str(ck), "-o", str(ex)]) == 0
    ref = load_refiner(ex)
    assert ref.inputs == ("das",) and ref.kind == "unet" and len(ref.env_names) == 15
    assert ref.model.config.channels == (4, 8, 16)  # --width
    vae = tmp_path / "vae.pt"
    assert main(["refiner", "train", "--data", str(d), "--model", "beta-vae", "-o", str(vae),
                 "--epochs", "1", "--batch-size", "15", "--width", "4", "--depth", "0",
                 "--latent", "3"]) == 0
    cfg = load_refiner(vae).model.config
    assert (cfg.width, cfg.depth, cfg.latent_dim) == (4, 0, 3)
    for bad in (["--width", "0"], ["--depth", "17"], ["--latent", "100000"]):
        assert main(["refiner", "train", "--data", str(d), "-o", str(tmp_path / "y.pt"),
                     *bad]) == 2
        assert f"{bad[0]} must be an integer in" in capsys.readouterr().err
    assert ex.stat().st_size < ck.stat().st_size  # no optimizer state
    # a weights archive of a U-Net: PyTorch runs it (NumPy inference covers the VAEs)
    npz = tmp_path / "archive.npz"
    assert main(["refiner", "export", str(ck), "-o", str(npz)]) == 0
    assert isinstance(load_refiner(npz).model, torch.nn.Module)
    with pytest.raises(InputError, match="ConvUNet cannot run without PyTorch"):
        load_refiner(npz, backend="numpy")
    assert main(["refiner", "train", "--data", str(d), "-o", str(tmp_path / "x.pt"),
                 "--inputs", "tv"]) == 2
    assert "--inputs must name some of ubp, das, mb-tv" in capsys.readouterr().err
    assert main(["refiner", "train", "--data", str(d), "-o", str(tmp_path / "x.pt"),
                 "--inputs", "mb-tv"]) == 2
    assert "--inputs must name some of the dataset's inputs ubp, das" in capsys.readouterr().err


def test_uncertainty_modes(tiny_refiners):
    from oatomo.refine import load_refiner

    ref = load_refiner(tiny_refiners["multi-decoder"])
    x = np.random.default_rng(1).random((2, 32, 32)).astype(np.float32)
    maps = {}
    for mode in ("posterior", "decoders", "both"):
        ref.uncertainty = mode
        maps[mode] = ref.refine_images(x, n_samples=4, seed=0).std
    assert np.allclose(maps["both"] ** 2, maps["posterior"] ** 2 + maps["decoders"] ** 2,
                       atol=1e-6)
    ref.uncertainty = "ensemble"
    with pytest.raises(InputError, match="uncertainty must be"):
        ref.refine_images(x, n_samples=4)


def test_pipeline_refines_any_ring_on_the_user_grid(tiny_refiners, tmp_path):
    import h5py

    import oatomo
    from oatomo.forward import simulate
    from oatomo.io import Scan, save_images

    grid = Grid(40, 0.008)                       # 0.2 mm pitch, two frames
    sensors = ring_array(40, 0.02, arc=1.5 * math.pi)
    acq = Acquisition(40e6, 1200, 1500.0)
    sino = simulate(phantoms.blobs(grid, 4), grid, sensors, acq)
    scan = Scan(np.stack([sino, 0.5 * sino]), sensors, acq)
    rec = oatomo.reconstruct(scan, "das", grid, model=tiny_refiners["multi-decoder"],
                             samples=3)
    assert rec.refined and rec.grid == grid
    assert rec.images["refined"].shape == (2, 40, 40)
    assert rec.images["uncertainty"].shape == (2, 40, 40)
    assert rec.units["refined"] == rec.units["uncertainty"] == rec.units["das"] == "a.u."
    # in Pa, scale-equivariant: the second frame (half the first) refines to half
    ref = rec.images["refined"].astype(np.float64)
    assert np.sum(ref[1] * ref[0]) / np.sum(ref[0] ** 2) == pytest.approx(0.5, rel=1e-4)
    how = rec.provenance["refinement"]
    assert how["applied"] and how["input"] == "ubp+das" and "270-degree arc" in how["reason"]
    out = save_images(tmp_path / "img.h5", dict(rec.images), rec.grid, attrs=rec.attrs())
    with h5py.File(out) as f:
        assert {k: f["images"][k].attrs["units"] for k in f["images"]} == dict(rec.units)
    few = Scan(sino[:16], SensorArray(sensors.positions[:16]), acq)
    skipped = oatomo.reconstruct(few, "das", grid, model=tiny_refiners["multi-decoder"])
    assert not skipped.refined
    assert "the scan has 16 sensors" in skipped.provenance["refinement"]["reason"]
    with pytest.raises(InputError, match="cannot refine this scan: the scan has 16 sensors"):
        oatomo.reconstruct(few, "das", grid, model=tiny_refiners["multi-decoder"], refine=True)


def test_refiner_evaluate_on_a_scanner_directory(tiny_refiners, tmp_path, capsys):
    from oatomo.cli import main
    from oatomo.evaluation.refiners import make_eval_set

    ev = make_eval_set(tmp_path / "ev", count=1, size=32, tv_iter=2,
                       geometries=["ring128-r40"], perturbations=["global"])
    again = ["refiner", "evaluate", "--model", f"inv={tiny_refiners['multi-decoder']}",
             "--data", str(ev), "--out", str(tmp_path / "o"), "--samples", "2"]
    assert main(again) == 0
    assert "| ring128-r40 | global (held out) |" in capsys.readouterr().out
    assert (tmp_path / "o" / "evaluation.json").is_file()
    before = (tmp_path / "o" / "evaluation.json").read_bytes()
    assert main(again) == 2  # existing evaluation files need --force
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "o" / "evaluation.json").read_bytes() == before
    assert main(again + ["--force"]) == 0
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "evaluation.md").write_text("mine")  # refuses to replace them
    assert main(["refiner", "evaluate", "--model", str(tiny_refiners["multi-decoder"]),
                 "--data", str(ev), "--out", str(tmp_path / "o2")]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "o2" / "evaluation.md").read_text() == "mine"


def test_evaluate_refiners_rejects_clashing_labels(tmp_path):
    from oatomo.evaluation.refiners import evaluate_refiners

    with pytest.raises(InputError, match="'ubp' is the name of a classical"):
        evaluate_refiners(tmp_path, {"ubp": tmp_path / "m.pt"})


def test_paired_drops_cancels_what_scans_share():
    from oatomo.evaluation.refiners import _summary, paired_drops

    rng = np.random.default_rng(0)
    items = []
    for held in (False, True):
        for i in range(20):
            hard = rng.normal(0, 4.0)  # scan difficulty, shared by both models
            base = 20.0 + hard - (2.0 if held else 0.0)
            noise = rng.normal(0, 0.1)
            for method, psnr in (("ref", base), ("other", base - (1.0 if held else 0.0)
                                                 + noise)):
                items.append({"geometry": "g", "perturbation": "h" if held else "i",
                              "item": i, "method": method, "held_out": held, "psnr": psnr})
    pair = paired_drops(items, "ref", "other")
    # other drops 1 dB more than ref; the paired error sees only the 0.1 dB noise
    assert pair["difference"] == pytest.approx(1.0, abs=0.1)
    assert pair["se"] < 0.05 and pair["significant"]
    unpaired = _summary(items)
    assert np.hypot(unpaired["ref"]["drop_se"], unpaired["other"]["drop_se"]) > 10 * pair["se"]
    assert "difference" not in paired_drops(items[:4], "ref", "other")  # too few scans
