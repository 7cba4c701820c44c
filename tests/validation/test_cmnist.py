"""Colored MNIST: the IRM construction, MNIST loading, bad input, ``oatomo cmnist --quick``."""

import gzip
import json
import runpy
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from oatomo import InputError
from oatomo.cli import main
from oatomo.validation.cmnist import data as cmnist


@pytest.fixture(scope="module")
def data():
    return cmnist.colored_mnist(seed=0)


def _write_idx(path, array, *, compress=False, magic=None):
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    raw = header + b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(raw)


def test_environments_follow_the_irm_construction(data):
    assert data.source == "bundled:mnist_5k"
    assert [len(e) for e in data.train] == [2000, 2000] and len(data.test) == 1000
    assert [e.e for e in data.train] == [0.2, 0.1] and data.test.e == 0.9
    for env in (*data.train, data.test):
        assert env.images.dtype == np.float32 and env.images.shape[1:] == (2, 28, 28)
        assert env.digits.dtype == np.int64 and env.colors.dtype == np.int64
        assert 0.0 <= env.images.min() and env.images.max() <= 1.0
        green = env.colors == 1
        assert not env.images[green, 0].any() and not env.images[~green, 1].any()
        small = env.digits < 5
        # label noise 0.25; P(green | small) = 0.75 (1 - e) + 0.25 e; binomial tolerance
        assert abs((env.labels != small).mean() - 0.25) < 0.04
        p_green_small = 0.75 * (1 - env.e) + 0.25 * env.e
        n_small = small.sum()
        tol = 4 * np.sqrt(p_green_small * (1 - p_green_small) / n_small)
        assert abs(green[small].mean() - p_green_small) < tol
        assert abs(green[~small].mean() - (1 - p_green_small)) < tol
        # colour = label XOR Bernoulli(e)
        assert abs((env.colors != env.labels).mean() - env.e) < 0.04
    # the training bias is reversed at test time: most test images are "hard"
    assert data.test.hard.mean() > 0.6 and data.train[1].easy.mean() > 0.6


def test_split_and_seeds(data):
    raw = np.load(cmnist.bundled_mnist_path())
    test_digits = raw["labels"][4000:]
    np.testing.assert_array_equal(data.test.digits, test_digits)  # last 1000 = test
    pool = np.sort(np.concatenate([e.digits for e in data.train]))
    np.testing.assert_array_equal(pool, np.sort(raw["labels"][:4000]))
    again = cmnist.colored_mnist(seed=0)
    np.testing.assert_array_equal(again.train[0].images, data.train[0].images)
    other = cmnist.colored_mnist(seed=1)
    assert not np.array_equal(other.train[0].digits, data.train[0].digits)
    small = cmnist.colored_mnist(seed=0, downsample=2)
    assert small.test.images.shape[1:] == (2, 14, 14)
    np.testing.assert_array_equal(small.test.images, data.test.images[:, :, ::2, ::2])


def test_idx_directory_and_env_variable(tmp_path, monkeypatch):
    raw = np.load(cmnist.bundled_mnist_path())
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", raw["images"], compress=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", raw["labels"])
    images, digits, source = cmnist.load_mnist(tmp_path)
    np.testing.assert_array_equal(images, raw["images"])
    np.testing.assert_array_equal(digits, raw["labels"])
    assert source == f"idx:{tmp_path}"
    monkeypatch.setenv("OATOMO_MNIST_DIR", str(tmp_path))
    assert cmnist.colored_mnist(seed=0).source == f"idx:{tmp_path}"


def test_bad_mnist_input(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no MNIST IDX files here"):
        cmnist.load_mnist(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        cmnist.load_mnist(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_idx(bad / "train-images-idx3-ubyte", np.zeros((3, 28, 28)), magic=b"\x12\x34\x08\x03")
    _write_idx(bad / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(InputError, match="corrupt IDX header") as err:
        cmnist.load_mnist(bad)
    assert "\n" not in str(err.value) and "train-images-idx3-ubyte" in str(err.value)
    short = tmp_path / "short"
    short.mkdir()
    _write_idx(short / "train-images-idx3-ubyte", np.zeros((3, 28, 28)))
    (short / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 9))
    with pytest.raises(InputError, match="dimensions \\(9,\\) need 17 bytes"):
        cmnist.load_mnist(short)
    monkeypatch.setattr(cmnist, "bundled_mnist_path", lambda: tmp_path / "gone.npz")
    monkeypatch.delenv("OATOMO_MNIST_DIR", raising=False)
    with pytest.raises(InputError, match="bundled MNIST subset is missing"):
        cmnist.load_mnist()


def test_cli_bad_mnist_dir_exits_2(tmp_path, capsys):
    assert main(["cmnist", "--quick", "--mnist-dir", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oatomo cmnist: error:") and "no MNIST IDX files" in err
    assert len(err.splitlines()) == 1


def test_cli_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "cm"
    assert main(["cmnist", "--quick", "--seeds", "1", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("| MSE |", "| RKL |", "| E_rel |", "multiple decoders", "14.7", "2.839"):
        assert row in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"beta_vae", "multi_decoder", "multi_encoder"}
    assert all(np.isfinite(results["summary"][m]["mse"][0]) for m in results["summary"])
    assert "SMOKE TEST" in printed  # a --quick run says what it is
    table = (out / "table.md").read_text()
    assert table.startswith("**Smoke test") and "| metric |" in table
    assert results["smoke_test"] is True
    stats_md = (out / "stats.md").read_text()
    assert stats_md.startswith("**Smoke test") and "multiple decoders vs β-VAE" in stats_md
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "per_image").glob("seed0_*.npz"))) == 3
    for fig in ("reconstructions.png", "samples.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoints" / "seed0" / "multi_encoder.pt").is_file()

    # another γ reuses the β-VAE (it has no invariance term): copied, evaluated, not trained
    other = tmp_path / "g3"
    assert main(["cmnist", "--quick", "--seeds", "1", "--threads", "1", "--gamma", "3",
                 "--baseline-from", str(out), "--out", str(other)]) == 0
    again = json.loads((other / "results.json").read_text())
    assert again["settings"]["gamma"] == 3.0
    beta, beta_again = (r["per_seed"][0]["beta_vae"] for r in (results, again))
    assert beta_again["mse"] == beta["mse"] and beta_again["e_rel"] == beta["e_rel"]
    assert beta_again["train_seconds"] < 0.5 * beta["train_seconds"]
    assert again["per_seed"][0]["multi_decoder"]["mse"] != results["per_seed"][0][
        "multi_decoder"]["mse"]  # the invariant models are trained with the new γ
    ckpt = ("checkpoints", "seed0", "beta_vae.pt")
    assert other.joinpath(*ckpt).read_bytes() == out.joinpath(*ckpt).read_bytes()
    capsys.readouterr()
    assert main(["cmnist", "--quick", "--seeds", "1", "--envs", "0.3", "0.1",
                 "--baseline-from", str(out), "--out", str(tmp_path / "e3")]) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings" in err and len(err.splitlines()) == 1


def test_conversion_script(tmp_path, monkeypatch):
    rows = np.zeros((3, 785), np.int64)
    rows[:, 100] = [10, 20, 255]
    rows[:, 784] = [7, 0, 9]
    csv = tmp_path / "tiny.csv.gz"
    with gzip.open(csv, "wt") as fh:
        np.savetxt(fh, rows, fmt="%d", delimiter=",")
    out = tmp_path / "tiny.npz"
    monkeypatch.setattr(sys, "argv", ["make_mnist_5k.py", str(csv), "-o", str(out)])
    script = Path(__file__).parents[2] / "data" / "make_mnist_5k.py"
    runpy.run_path(str(script), run_name="__main__")
    with np.load(out) as d:
        assert d["images"].dtype == np.uint8 and d["images"].shape == (3, 28, 28)
        assert sorted(d["labels"].tolist()) == [0, 7, 9]
        for img, lab in zip(d["images"], d["labels"], strict=True):
            assert img[3, 16] == {7: 10, 0: 20, 9: 255}[int(lab)]
