"""Multi-environment datasets: determinism across shards, resume, merge, CLI."""

import h5py
import numpy as np
import pytest

from oatomo import InputError
from oatomo.cli import main
from oatomo.datasets.legacy import generate_dataset, item_seed, load_experiment, make_item

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
    assert not (tmp_path / "res.h5").exists()
    assert [p.name for p in sorted((tmp_path / "res.h5.partial").glob("chunk_*.npz"))] == [
        "chunk_000000.npz"]
    with np.load(tmp_path / "res.h5.partial" / "chunk_000000.npz") as z:
        first_chunk = z["inputs"].copy()
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


def _dataset_cli(argv, limit=None):
    """``oatomo dataset ARGV -q`` in a fresh process; ``limit``: the OS file-size limit
    (bytes) under which its writes fail with EFBIG, as a full disk's fail with ENOSPC."""
    import subprocess
    import sys

    def set_limit():  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "oatomo", "dataset", *argv, "-q"],
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=None if limit is None else set_limit)


def _one_line_error(res, name):
    err = res.stderr.strip()
    assert res.returncode == 2, (res.returncode, err[-600:])
    assert "\n" not in err and "Traceback" not in err and name in err, err


def test_disk_full_mid_write_then_resume(exp_path, tmp_path):
    """The disk fills while the dataset is being written (simulated by the OS: a file-size
    limit makes the writes fail with EFBIG, as ENOSPC would): one line and exit 2, no
    traceback or crash, no output file; the chunks finished before are kept in
    ``.partial/``, and rerunning without the limit finishes with the same arrays as an
    uninterrupted run."""
    def run(out, limit=None):
        return _dataset_cli(["--config", str(exp_path), "-o", str(out), "--seed", "3"], limit)

    ref = tmp_path / "ref.h5"
    assert run(ref).returncode == 0  # also warms Numba's cache (the child writes no cache)
    out = tmp_path / "ds.h5"
    _one_line_error(run(out, limit=ref.stat().st_size // 2), "ds.h5")
    assert not out.exists()
    # every chunk file fits under the limit, the assembled file does not: all finished
    # work is kept, and no temporary file is left behind
    kept = sorted(out.with_name("ds.h5.partial").glob("chunk_*.npz"))
    assert len(kept) == 4 and not list(out.parent.glob(".*tmp*"))
    assert run(out).returncode == 0
    got, ref_arrays = read(out)[0], read(ref)[0]
    for k in ref_arrays:
        np.testing.assert_array_equal(got[k], ref_arrays[k])


def test_disk_full_while_merging(exp_path, tmp_path):
    """Merging shards onto a disk that fills (the OS file-size limit again): one line and
    exit 2, no output and no temporary file left, the shards untouched; without the limit
    the same command then succeeds."""
    run = _dataset_cli
    shards = [tmp_path / f"s{k}.h5" for k in (1, 2)]
    for k, s in enumerate(shards, 1):
        assert run(["--config", str(exp_path), "--seed", "5", "--shard", f"{k}/2", "-o",
                    str(s)]).returncode == 0
    before = [s.read_bytes() for s in shards]
    out = tmp_path / "merged.h5"
    _one_line_error(run(["merge", *map(str, shards), "-o", str(out)],
                        limit=max(s.stat().st_size for s in shards) // 2), "merged.h5")
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
    assert [s.read_bytes() for s in shards] == before
    assert run(["merge", *map(str, shards), "-o", str(out)]).returncode == 0
    assert read(out)[0]["done"].all()
