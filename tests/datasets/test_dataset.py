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


def _hold_lock(root):
    """A child process that takes the job lock of ``root`` and waits for its stdin."""
    import subprocess
    import sys

    code = ("import sys; from oatomo.datasets import job_directory\n"
            "with job_directory(sys.argv[1], {'format': 'x'}):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(root)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_second_run_on_a_locked_directory_is_refused(tmp_path, capsys):
    from oatomo.cli import main
    from oatomo.datasets import LOCK_NAME

    root = tmp_path / "ds"
    child = _hold_lock(root)
    try:
        before = sorted(p.name for p in root.iterdir())
        code = main(["refiner", "data", "-o", str(root), "--count", "1", "--size", "16",
                     "--seed", "2", "--environments", "arc/none"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err, err
        assert err.endswith(f"{root} is being written by another run (pid {child.pid})"), err
        assert sorted(p.name for p in root.iterdir()) == before  # the other run's files
        assert (root / "manifest.json").exists() and (root / LOCK_NAME).exists()
    finally:
        child.communicate("")
    # released on exit: the lock file is gone, the holder's manifest stays
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json"]


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    from oatomo.datasets import LOCK_NAME, job_directory

    root = tmp_path / "ds"
    child = _hold_lock(root)
    child.kill()
    child.wait()
    assert (root / LOCK_NAME).exists()  # left behind, but no process holds it
    with job_directory(root, {"format": "x"}):
        assert (root / LOCK_NAME).read_text().strip() == str(__import__("os").getpid())
    assert not (root / LOCK_NAME).exists()


def test_refused_job_leaves_no_directory_and_deletes_nothing(tmp_path):
    from oatomo.datasets import job_directory

    root = tmp_path / "new"
    with pytest.raises(RuntimeError), job_directory(root, {"format": "x"}):
        (root / "manifest.json").unlink()  # the job fails before writing anything
        raise RuntimeError
    assert not root.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(InputError, match="not empty"), job_directory(mine, {"format": "x"}):
        pass
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
