"""The reconstruction pipeline, the registries, bundled resources and the import graph."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.cli import build_parser, main
from oatomo.io import Scan, load_images, save_scan
from oatomo.pipeline import UNITS_PA, Reconstruction, reconstruct
from oatomo.recon.registry import METHODS, MethodSpec
from oatomo.units import UNITS_ARBITRARY

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "oatomo"


@pytest.fixture(scope="module")
def ring32_scan():
    """A simulated scan of the model's training geometry (32-sensor ring, r = 22.5 mm)."""
    setup = oatomo.load_setup("ring32_r22")
    p0 = oatomo.phantoms.disks(setup.grid, 3)
    sino = oatomo.simulate(p0, setup.grid, setup.array, setup.acquisition, seed=1)
    return Scan(sinogram=sino, sensors=setup.array, acquisition=setup.acquisition, p0=p0,
                grid=setup.grid)


@pytest.fixture(scope="module")
def ring16_scan():
    """A scan no shipped model fits (16 sensors)."""
    grid, ring, acq = Grid(32, 0.008), ring_array(16, 0.006), Acquisition(20e6, 256)
    p0 = oatomo.phantoms.disk(grid, 0.001)
    return Scan(sinogram=oatomo.simulate(p0, grid, ring, acq), sensors=ring,
                acquisition=acq, p0=p0, grid=grid)


def test_linear_result_has_units_grid_and_provenance(ring32_scan):
    rec = reconstruct(ring32_scan, "ubp", refine=False)
    assert isinstance(rec, Reconstruction)
    assert set(rec.images) == {"ubp", "truth"} and rec.grid == ring32_scan.grid
    assert dict(rec.units) == {"ubp": UNITS_ARBITRARY, "truth": UNITS_PA}
    assert rec.image is rec.images["ubp"] and rec.image.dtype == np.float32
    np.testing.assert_array_equal(rec.image, oatomo.backproject(
        ring32_scan.sinogram, rec.grid, ring32_scan.sensors, ring32_scan.acquisition, "ubp"))
    prov = rec.provenance
    assert prov["method"] == "ubp" and prov["speed_of_sound"] == 1500.0
    assert prov["n_frames"] == 1 and prov["n_sensors"] == 32
    assert set(prov["timings"]) == {"load", "check", "ubp"}  # the position check
    assert prov["position_check"]["needs_calibration"] is False
    assert prov["calibration"] is None
    assert prov["refinement"] == {"applied": False, "model": prov["refinement"]["model"],
                                  "reason": "refinement not requested"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.grid = Grid(8, 0.001)
    with pytest.raises(TypeError):
        rec.images["x"] = rec.image


def test_auto_refines_with_the_shipped_model(ring32_scan):
    rec = reconstruct(ring32_scan, "ubp")  # refine="auto"
    assert {"ubp", "refined", "uncertainty", "truth"} == set(rec.images)
    assert rec.refined and rec.image is rec.images["refined"]
    # the shipped refiner refines UBP: its images take UBP's arbitrary units
    assert rec.units["refined"] == rec.units["uncertainty"] == rec.units["ubp"] == UNITS_ARBITRARY
    how = rec.provenance["refinement"]
    assert how["applied"] and how["compatible"] and how["decoder"] == "invariant decoder"
    assert Path(how["model"]).name == "family_refiner.npz" and "refine" in rec.provenance["timings"]
    assert how["input"] == "ubp+das" and "32-sensor ring" in how["reason"]
    assert how["backend"] == "numpy"  # the shipped weights archive, without PyTorch
    assert rec.images["refined"].shape == rec.images["uncertainty"].shape == (128, 128)


def test_large_images_are_refined_with_pytorch(ring32_scan):
    """Above NUMPY_MAX_PIXELS canonical pixels PyTorch is faster despite its import: the
    pipeline switches back end (same images to float32 rounding: tests/refine/test_weights.py)."""
    big = reconstruct(ring32_scan, "das", Grid(264, 0.0264), refine=True, samples=2)
    assert big.provenance["refinement"]["backend"] == "torch"
    assert big.images["refined"].shape == (264, 264)


def test_refine_on_a_scan_the_model_cannot_refine(ring16_scan):
    rec = reconstruct(ring16_scan, "das")  # auto: skipped, and says why
    assert not rec.refined and set(rec.images) == {"das", "truth"}
    how = rec.provenance["refinement"]
    assert how["compatible"] is False and "the scan has 16 sensors" in how["reason"]
    assert "trained on 32 to 512" in how["reason"]
    with pytest.raises(InputError, match="cannot refine this scan: the scan has 16 sensors"):
        reconstruct(ring16_scan, "das", refine=True)
    with pytest.raises(InputError, match="refine must be"):
        reconstruct(ring16_scan, refine="yes")
    with pytest.raises(InputError, match="unknown reconstruction method 'nope'"):
        reconstruct(ring16_scan, "nope")


def test_cli_refine_on_incompatible_scan_exits_2_with_one_line(ring16_scan, tmp_path,
                                                                capsys):
    scan = tmp_path / "scan16.h5"
    save_scan(scan, ring16_scan)
    assert main(["reconstruct", str(scan), "--method", "ubp", "--refine", "--png",
                 "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("oatomo reconstruct: error: ") and "family_refiner.npz" in err
    assert "the scan has 16 sensors" in err and not list(tmp_path.glob("scan16_*"))
    # refine="auto" with the refiner's input reconstructs, says why it skipped, and
    # records it in the file
    assert main(["reconstruct", str(scan), "--method", "ubp", "--png", "none", "-q"]) == 0
    assert "skipping refinement: the scan has 16 sensors; the model was trained on 32" in \
        capsys.readouterr().out
    images, _ = load_images(tmp_path / "scan16_ubp.h5")
    assert set(images) == {"ubp", "truth"}


def test_frames_and_callback(ring16_scan):
    calls = []
    stack = Scan(sinogram=np.stack([ring16_scan.sinogram, 2 * ring16_scan.sinogram]),
                 sensors=ring16_scan.sensors, acquisition=ring16_scan.acquisition)
    rec = reconstruct(stack, "mb-tv", Grid(32, 0.008), iters=3, refine=False,
                      callback=lambda *a: calls.append(a))
    assert rec.image.shape == (2, 32, 32) and rec.provenance["n_frames"] == 2
    assert ("load", 1, 1) in calls and ("mb-tv", 1, 1) in calls
    assert [c for c in calls if c[0] == "mb-tv" and c[2] == 6][-1][1] > 3  # second frame
    one = reconstruct(stack, "das", Grid(32, 0.008), frames=1, refine=False)
    np.testing.assert_allclose(one.image, reconstruct(stack, "das", Grid(32, 0.008),
                                                      refine=False).image[1])


def test_registry_drives_cli_choices_and_readme(monkeypatch):
    def choices(command, option):
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        return tuple(next(a for a in sub.choices[command]._actions
                          if option in a.option_strings).choices)

    from oatomo.learn.registry import MODEL_KINDS

    assert choices("reconstruct", "--method") == tuple(METHODS)
    refiner = next(a for a in build_parser()._actions if a.dest == "command").choices["refiner"]
    train = next(a for a in refiner._actions if a.dest == "refiner_command").choices["train"]
    assert next(a for a in train._actions if "--model" in a.option_strings).choices == \
        tuple(MODEL_KINDS)
    spec = MethodSpec("double-das", lambda y, g, s, a, **kw: 2 * oatomo.backproject(y, g, s, a),
                      "twice delay-and-sum")
    monkeypatch.setitem(METHODS, "double-das", spec)
    assert "double-das" in choices("reconstruct", "--method")
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- methods -->")[1].split("<!-- /methods -->")[0]
    names = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", table, re.M)
    assert [n for n, _ in names] == [n for n in METHODS if n != "double-das"]
    for name, what in names:
        assert what.startswith(METHODS[name].description)


def test_new_method_is_one_registry_line(ring16_scan, monkeypatch):
    spec = MethodSpec("double-das", lambda y, g, s, a, **kw: 2 * oatomo.backproject(y, g, s, a),
                      "twice delay-and-sum")
    monkeypatch.setitem(METHODS, "double-das", spec)
    a = reconstruct(ring16_scan, "double-das", refine=False)
    b = reconstruct(ring16_scan, "das", refine=False)
    np.testing.assert_allclose(a.image, 2 * b.image, rtol=1e-6)


def test_resources_are_found_from_another_directory(tmp_path):
    code = (
        "import oatomo, pathlib\n"
        "from oatomo.resources import default_model_path\n"
        "from oatomo.validation.cmnist.data import bundled_mnist_path\n"
        "from oatomo.setups import bundled_setups, load_setup\n"
        "pkg = pathlib.Path(oatomo.__file__).parent\n"
        "assert load_setup('ring32_radial').array.n_sensors == 32\n"
        "assert len(bundled_setups()) >= 10 and 'exp_train' not in bundled_setups()\n"
        "for p in (default_model_path(), bundled_mnist_path()):\n"
        "    assert p.is_file() and pkg in p.parents, p\n"
        "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_setups_command_lists_name_and_description(capsys):
    assert main(["setups"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ring32_radial +32-sensor ring with per-sensor radial errors", out, re.M)
    assert "ring256_r40" in out and "exp_train" not in out


def test_quiet_and_verbose_before_or_after_the_command(ring16_scan, tmp_path):
    scan = tmp_path / "s.h5"
    save_scan(scan, ring16_scan)
    for argv in (["-q", "info", str(scan)], ["info", str(scan), "-q"],
                 ["info", str(scan), "-v"], ["-v", "info", str(scan), "--quiet"]):
        assert main(argv) == 0
    args = build_parser().parse_args(["reconstruct", "x.h5", "-q", "-v"])
    assert args.quiet and args.verbose
    args = build_parser().parse_args(["-v", "reconstruct", "x.h5"])
    assert args.verbose and not args.quiet


def test_posterior_samples_is_public_and_seeded():
    import torch

    from oatomo.learn import MultiDecoderIVAE, VAEConfig

    model = MultiDecoderIVAE(VAEConfig(in_shape=(1, 8, 8), latent_dim=2, channels=(4,),
                                       hidden=8, n_envs=2), seed=0).eval()
    x = torch.rand(3, 1, 8, 8)
    a = model.posterior_samples(x, 5, generator=torch.Generator().manual_seed(1))
    b = model.posterior_samples(x, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 1, 8, 8) and torch.equal(a, b)
    v = model.posterior_samples(x, 5, env=1, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, v)


def test_no_pytorch_unless_refining(ring16_scan, tmp_path):
    scan = tmp_path / "s16.h5"
    save_scan(scan, ring16_scan)
    code = ("import sys\n"
            "from oatomo.cli import main\n"
            f"assert main(['reconstruct', {str(scan)!r}, '--png', 'none']) == 0\n"
            f"assert main(['reconstruct', {str(scan)!r}, '--png', 'none', '--force',"
            " '--method', 'das', '--no-refine']) == 0\n"
            "assert 'torch' not in sys.modules, 'PyTorch was imported'\n"
            "import oatomo.learn\n"
            "assert 'torch' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr


def test_dataset_generation_reports_progress(tmp_path):
    from oatomo.datasets import generate_dataset

    calls = []
    generate_dataset(tmp_path / "d", ["ring-sparse/none"], count=3, size=16, chunk=2,
                     callback=lambda *a: calls.append(a))
    assert calls == [("scans", 2, 3), ("scans", 3, 3)]
