"""Multi-environment datasets: determinism across shards, resume, merge, CLI."""

import h5py
import numpy as np
import pytest

from oatomo import InputError
from oatomo.cli import main
from oatomo.dataset import generate_dataset, item_seed, load_experiment, make_item

EXP = """
name = "tiny"
phantom = "vessel-tree"
method = "ubp"
chunk = 2

[[environments]]
setup = "ring32_radial"
count = 3

[[environments]]
setup = "ring32_angular"
count = 4
"""


@pytest.fixture()
def exp_path(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text(EXP)
    return p


def read(path):
    with h5py.File(path) as f:
        return {k: f[k][...] for k in ("inputs", "targets", "env", "index", "item_seed",
                                       "true_positions", "done")}, dict(f.attrs)


def test_generate_shard_merge_resume_are_identical(exp_path, tmp_path):
    exp = load_experiment(exp_path)
    assert exp.n_items == 7 and exp.setup_names == ["ring32_radial", "ring32_angular"]
    full = generate_dataset(exp, tmp_path / "full.h5", seed=5)
    ref, attrs = read(full)
    assert ref["inputs"].shape == (7, 128, 128) and ref["inputs"].dtype == np.float32
    assert ref["done"].all() and list(ref["env"]) == [0, 0, 0, 1, 1, 1, 1]
    assert attrs["oatomo_format"] == "dataset"
    # each item is a function of (seed, env, index) only
    it = make_item(exp.environments[1].setup, "vessel-tree", "ubp", item_seed(5, 1, 2))
    assert it["input"].tobytes() == ref["inputs"][5].tobytes()
    assert it["target"].tobytes() == ref["targets"][5].tobytes()
    # positions really are perturbed, differently per item
    nominal = exp.environments[0].setup.array.positions
    assert not np.allclose(ref["true_positions"][0], nominal)
    assert not np.allclose(ref["true_positions"][0], ref["true_positions"][1])
    # interrupted after one chunk, then resumed
    assert generate_dataset(exp, tmp_path / "res.h5", seed=5, max_chunks=1) is None
    assert (tmp_path / "res.h5.partial").exists()
    with h5py.File(tmp_path / "res.h5.partial") as f:
        assert list(f["done"][...]) == [True, False, False, False]
        first_chunk = f["inputs"][:2].copy()
    res = generate_dataset(exp, tmp_path / "res.h5", seed=5)
    got, _ = read(res)
    assert np.array_equal(got["inputs"][:2], first_chunk)
    for k in ("inputs", "targets", "true_positions", "item_seed"):
        assert got[k].tobytes() == ref[k].tobytes()
    # two shards merged
    for k in (1, 2):
        assert main(["dataset", "--config", str(exp_path), "--seed", "5", "--shard", f"{k}/2",
                     "-o", str(tmp_path / f"s{k}.h5")]) == 0
    assert main(["dataset", "merge", str(tmp_path / "s1.h5"), str(tmp_path / "s2.h5"),
                 "-o", str(tmp_path / "merged.h5")]) == 0
    merged, _ = read(tmp_path / "merged.h5")
    for k in ("inputs", "targets", "true_positions", "env"):
        assert merged[k].tobytes() == ref[k].tobytes()


def test_experiment_errors(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text(EXP.replace("chunk = 2", "chunks = 2"))
    with pytest.raises(InputError, match="bad.toml: unknown key 'chunks'"):
        load_experiment(p)
    p.write_text(EXP.replace("count = 3", "count = -3"))
    with pytest.raises(InputError, match="count must be an integer in 1.."):
        load_experiment(p)
    p.write_text(EXP.replace('"ring32_radial"', '"ring256_r40"'))
    with pytest.raises(InputError, match="share the image grid"):
        load_experiment(p)
    assert main(["dataset", "merge", str(tmp_path / "nope.h5"), "-o",
                 str(tmp_path / "m.h5")]) == 2
    assert "nope.h5: file not found" in capsys.readouterr().err
