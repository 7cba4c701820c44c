"""Datasets of the refiner: seeded items, resumable generation, unreadable directories."""

import io

import numpy as np
import pytest

from oatomo.datasets import generate_dataset, item_seed, load_dataset, make_item
from oatomo.errors import InputError
from oatomo.geometry import Grid
from oatomo.scanners import CANONICAL_PITCH, environment


def test_dataset_resumes_same_bytes(tmp_path):
    envs = ["ring-sparse/radial", "arc/none"]
    kw = dict(count=3, seed=1, size=32, chunk=2, inputs=("ubp", "das"))
    root = generate_dataset(tmp_path / "d", envs, **kw)
    first = {p.name: p.read_bytes() for p in root.glob("chunk_*.npz")}
    assert len(first) == 4
    victim = sorted(root.glob("chunk_*.npz"))[1]
    victim.unlink()
    generate_dataset(tmp_path / "d", envs, **kw)
    with np.load(victim) as z, np.load(root / sorted(first)[0]) as z0:
        assert z["inputs"].shape[1:] == (2, 32, 32) and z0["targets"].max() <= 1
    (data, man) = load_dataset(root)
    assert [len(x) for x, _ in data] == [3, 3]
    for name, blob in first.items():
        got = np.load(root / name)
        ref = np.load(io.BytesIO(blob))
        for k in ref.files:
            assert np.array_equal(got[k], ref[k])
    assert np.abs(data[0][0]).max() == pytest.approx(1.0)
    with pytest.raises(InputError, match="another job"):
        generate_dataset(tmp_path / "d", envs, **{**kw, "seed": 2})


def test_item_is_a_function_of_seed_environment_and_index(tmp_path):
    root = generate_dataset(tmp_path / "d", ["arc/radial"], count=2, seed=4, size=32, chunk=2)
    with np.load(root / "chunk_000_00000.npz") as z:
        stored, seeds = z["inputs"][1], z["seeds"]
    assert int(seeds[1]) == item_seed(4, 0, 1) != item_seed(4, 1, 1)
    it = make_item(environment("arc/radial"), Grid(32, 32 * CANONICAL_PITCH),
                   item_seed(4, 0, 1))
    assert it["input"].tobytes() == stored.tobytes()
    (x, t), = load_dataset(root, limit=1)[0]
    assert x.shape == (1, 1, 32, 32) and t.shape == (1, 1, 32, 32)


def test_unreadable_dataset_directories(tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        load_dataset(tmp_path)
    (tmp_path / "manifest.json").write_bytes(bytes(range(256)))
    with pytest.raises(InputError, match="unreadable manifest"):
        load_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"count": 2}')
    with pytest.raises(InputError, match="unreadable manifest"):
        load_dataset(tmp_path)
