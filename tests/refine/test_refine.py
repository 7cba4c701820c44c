"""The learned refiner: single-setup training, distributed training, the older checkpoint
format, the deprecated command group, the scalings of the evaluation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from oatomo import phantoms
from oatomo.cli import main
from oatomo.datasets import generate_dataset, load_dataset
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, ring_array
from oatomo.learn.refiner import rank_checkpoint, train_refiner
from oatomo.refine import TRAIN_COMMAND, load_refiner

TINY = dict(batch_size=4, model_args=dict(width=4, depth=1, latent=2))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("refine")
    generate_dataset(d / "two", ["ring-sparse/radial", "arc/none"], count=4, size=32, chunk=4,
                     inputs=("ubp", "das"))
    generate_dataset(d / "one", ["ring-sparse/jitter"], count=4, size=32, chunk=4,
                     inputs=("ubp", "das"))
    return d


@pytest.mark.parametrize("kind", ["multi-decoder", "beta-vae", "unet"])
def test_single_setup_refiner_is_one_environment(kind, data, tmp_path):
    envs, man = load_dataset(data / "one")
    assert len(envs) == 1 and man["environments"] == ["ring-sparse/jitter"]
    out = tmp_path / f"{kind}.pt"
    _, result = train_refiner(data / "one", kind, out, epochs=2, **TINY)
    assert result.step == 2  # 4 items, batch 4
    ref = load_refiner(out)
    assert ref.env_names == ("ring-sparse/jitter",) and ref.kind == kind
    grid = Grid(32, 0.0032)
    sensors, acq = ring_array(32, 0.02), Acquisition(40e6, 1200, 1500.0)
    from oatomo.forward import simulate

    sino = simulate(phantoms.blobs(grid, 1), grid, sensors, acq)
    r = ref.refine_scan(sino, sensors, acq, grid, n_samples=2, env="ring-sparse/jitter")
    assert r.refined.shape == grid.shape and np.isfinite(r.refined).all()
    assert (r.std is None) == (kind == "unet")


def test_ddp_two_processes_identical_weights_and_resume(torchrun_runs):
    """Two processes under torchrun (``tests/helpers/ddp_runs.py``): the ranks end with
    identical weights, and a training stopped after one epoch and resumed from its
    checkpoint ends with the uninterrupted training's weights."""
    whole, part = torchrun_runs / "whole", torchrun_runs / "part"
    w0 = torch.load(whole / "rank0.pt", weights_only=True)
    w1 = torch.load(whole / "rank1.pt", weights_only=True)
    assert w0["steps"] == w1["steps"] == 4
    for k, v in w0["state"].items():
        assert torch.equal(v, w1["state"][k]), k
    assert load_refiner(whole / "ddp.pt").env_names == ("ring-sparse/radial", "arc/none")
    assert rank_checkpoint(whole / "ddp.pt", 1).exists()  # rank 1's training state
    resumed = torch.load(part / "rank0.pt", weights_only=True)
    assert resumed["steps"] == 4 and resumed["resumed_from"] == 2  # started at epoch 2
    for k, v in w0["state"].items():
        assert torch.equal(v, resumed["state"][k]), k


def _older_checkpoint(path: Path) -> None:
    """A refiner checkpoint without the scanner-family metadata."""
    from oatomo.learn import MultiDecoderIVAE, VAEConfig, save_checkpoint

    model = MultiDecoderIVAE(VAEConfig(in_shape=(1, 8, 8), latent_dim=2, channels=(2, 2),
                                       hidden=4, n_envs=1), seed=0)
    save_checkpoint(path, model, train={"oatomo_refiner": {"grid": {"n": 8, "fov": 8e-4}}})


def test_older_checkpoint_format_is_one_line_error(tmp_path, capsys):
    old = tmp_path / "old.pt"
    _older_checkpoint(old)
    with pytest.raises(InputError, match="older refiner format") as info:
        load_refiner(old)
    assert TRAIN_COMMAND in str(info.value)
    scan = tmp_path / "scan.h5"
    assert main(["simulate", "--setup", "ring32_rotation", "--phantom", "disk", "-o",
                 str(scan), "-q"]) == 0
    capsys.readouterr()
    for sidecar in (True, False):  # the metadata read from the sidecar, or the checkpoint
        if not sidecar:
            old.with_suffix(".json").unlink()
        assert main(["reconstruct", str(scan), "--model", str(old), "--png", "none",
                     "-o", str(tmp_path / "r.h5")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "old.pt" in err, err
        assert "older refiner format" in err and "oatomo refiner train --data" in err
    assert main(["refiner", "export", str(old), "-o", str(tmp_path / "x.pt")]) == 2
    assert "older refiner format" in capsys.readouterr().err


def test_single_setup_from_the_command_line(tmp_path, capsys):
    d = tmp_path / "d"
    assert main(["refiner", "data", "-o", str(d), "--count", "2", "--size", "16",
                 "--environments", "ring-sparse/radial", "-q"]) == 0
    assert "(1 environments x 2 scans)" in capsys.readouterr().out
    assert load_dataset(d)[1]["environments"] == ["ring-sparse/radial"]
    assert main(["refiner", "data", "-o", str(tmp_path / "e"), "--environments",
                 "ring/none"]) == 2
    assert "unknown environment 'ring/none'" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_family_is_a_deprecated_name_of_refiner(tmp_path, capsys):
    assert main(["family", "data", "-o", str(tmp_path / "d"), "--count", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["oatomo family: error: --count must be in 1..10000000, got 0 (oatomo "
                   "family is deprecated, use oatomo refiner)"]
    assert main(["refiner", "data", "-o", str(tmp_path / "d"), "--count", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "oatomo refiner: error: --count must be in 1..10000000, got 0"]


def test_scalings_for_linear_images():
    from oatomo.evaluation.metrics import affine_fit, image_metrics, minmax

    rng = np.random.default_rng(0)
    truth = rng.random((3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(affine_fit(-2.5 * truth + 3.0, truth), truth, atol=1e-5)
    mm = minmax(5 * truth - 1)
    assert np.allclose(mm.min(axis=(1, 2)), 0) and np.allclose(mm.max(axis=(1, 2)), 1)
    m = image_metrics(truth, truth)
    assert m["rmse"] == 0 and m["pearson"] > 0.999999 and m["ssim"] > 0.999999
    noisy = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1).astype(np.float32)
    assert 19 < image_metrics(noisy, truth)["psnr"] < 21.5  # ~20 dB for sigma 0.1 (clipped)
