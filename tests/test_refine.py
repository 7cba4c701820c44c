"""Learned refinement: training from a dataset, DDP, evaluation, `reconstruct --refine`."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from oatomo.cli import main
from oatomo.datasets.legacy import generate_dataset, load_experiment
from oatomo.learn.fit import train_refiner
from oatomo.refine.legacy import load_refiner, normalise

EXP = """
name = "tiny"
phantom = "vessel-tree"
chunk = 4
[[environments]]
setup = "{a}"
count = 4
[[environments]]
setup = "{b}"
count = 4
"""
TINY = dict(latent=2, channels=(4, 8, 8), batch_size=4, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("refine")
    for name, (a, b) in {"train": ("ring32_radial", "ring32_jitter"),
                         "test": ("ring32_jitter", "ring32_rotation")}.items():
        (d / f"{name}.toml").write_text(EXP.format(a=a, b=b))
        generate_dataset(load_experiment(d / f"{name}.toml"), d / f"{name}.h5", seed=1)
    return d


def test_normalise():
    a = np.array([[[1.0, -4.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(normalise(a), [[[0.25, -1], [0.5, 0]], np.zeros((2, 2))])


@pytest.mark.parametrize("kind", ["multi-decoder", "multi-encoder", "beta-vae", "unet"])
def test_train_every_kind_and_load_refiner(kind, data, tmp_path):
    out = tmp_path / f"{kind}.pt"
    model, result = train_refiner(data / "train.h5", kind, out, epochs=1, **TINY)
    assert result.step == 2  # 8 items, batch 4
    ref = load_refiner(out)
    assert ref.env_names == ["ring32_radial", "ring32_jitter"] and ref.grid.n == 128
    assert ref.method == "ubp"
    img = np.random.default_rng(0).standard_normal((2, 128, 128)).astype(np.float32)
    refined, std = ref.refine(img, n_samples=3)
    assert refined.shape == (2, 128, 128) and refined.dtype == np.float32
    if kind == "unet":
        assert std is None
    else:
        assert std.shape == (2, 128, 128) and np.all(std >= 0) and std.max() > 0
        again, std2 = ref.refine(img, n_samples=3)
        assert np.array_equal(std, std2)  # seeded posterior samples
    if kind == "multi-decoder":  # a known setup selects its variant decoder
        variant, _ = ref.refine(img, env="ring32_jitter", n_samples=0)
        assert not np.allclose(variant, refined)
        with pytest.raises(ValueError, match="not one of the model's training setups"):
            ref.refine(img, env="ring32_offset")


def test_ddp_two_processes_identical_weights(data, tmp_path):
    script = Path(__file__).parent / "helpers" / "ddp_train.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           "2", "--master-port", "29517", str(script), str(data / "train.h5"),
                           str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0["steps"] == w1["steps"] == 4
    init = train_refiner.__module__  # noqa: F841  (the model was built from one seed)
    for k, v in w0["state"].items():
        assert torch.equal(v, w1["state"][k]), k
    assert (tmp_path / "ddp.pt").exists() and load_refiner(tmp_path / "ddp.pt").grid.n == 128


def test_evaluate_and_reconstruct_refine(data, tmp_path, capsys):
    model = tmp_path / "md.pt"
    assert main(["train", "--data", str(data / "train.h5"), "--model", "multi-decoder",
                 "-o", str(model), "--epochs", "1", "--batch-size", "4", "--latent", "2",
                 "--channels", "4,8,8"]) == 0
    assert main(["evaluate", "--model", f"md={model}", "--data", str(data / "test.h5"),
                 "--out", str(tmp_path / "ev"), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "| ring32_rotation | no | md |" in out
    assert "| ring32_jitter | yes | UBP (affine) |" in out
    assert "| ring32_jitter | yes | DAS (min-max) |" in out
    for f in ("evaluation.md", "evaluation.json", "evaluation.png"):
        assert (tmp_path / "ev" / f).exists()
    # reconstruct with the model: the file holds linear, refined and uncertainty images
    scan = tmp_path / "scan.h5"
    main(["simulate", "--setup", "ring32_rotation", "--phantom", "vessel-tree", "-o", str(scan)])
    capsys.readouterr()
    assert main(["reconstruct", str(scan), "--model", str(model), "-o",
                 str(tmp_path / "r.h5"), "--samples", "2"]) == 0
    from oatomo.io import load_images

    images, _ = load_images(tmp_path / "r.h5")
    assert {"ubp", "refined", "uncertainty", "truth"} <= set(images)
    assert "refined with md.pt (invariant decoder" in capsys.readouterr().out
    # a scan of another geometry is reconstructed without refinement, and says why
    big = tmp_path / "big.h5"
    main(["simulate", "--setup", "ring256_r40", "--phantom", "disk", "-o", str(big)])
    assert main(["reconstruct", str(big), "--model", str(model), "--png", "none",
                 "--n", "64"]) == 0
    assert "skipping refinement: the model was trained for 32 sensors" in \
        capsys.readouterr().out
    assert main(["reconstruct", str(scan), "--model", str(tmp_path / "none.pt"),
                 "-o", str(tmp_path / "r2.h5")]) == 2


def test_scalings_for_linear_images():
    from oatomo.evaluation.legacy import affine_fit, image_metrics, minmax

    rng = np.random.default_rng(0)
    truth = rng.random((3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(affine_fit(-2.5 * truth + 3.0, truth), truth, atol=1e-5)
    mm = minmax(5 * truth - 1)
    assert np.allclose(mm.min(axis=(1, 2)), 0) and np.allclose(mm.max(axis=(1, 2)), 1)
    m = image_metrics(truth, truth)
    assert m["rmse"] == 0 and m["pearson"] > 0.999999 and m["ssim"] > 0.999999
    noisy = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1).astype(np.float32)
    assert 19 < image_metrics(noisy, truth)["psnr"] < 21.5  # ~20 dB for sigma 0.1 (clipped)
