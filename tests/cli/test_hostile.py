"""The hostile-input corpus (tests/helpers/hostile_corpus.py): one line, exit 2, nothing touched."""

import os
import shutil
import stat
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hostile_corpus import build

from oatomo.cli import main

#: Peak Python/NumPy allocation allowed while a case is refused.
MEMORY_CEILING = 256 << 20

_ROOT = Path(tempfile.mkdtemp(prefix="oatomo-hostile-"))
_BUILT = build(_ROOT)
CASES = {c.name: c for c in _BUILT}


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    shutil.rmtree(_ROOT, ignore_errors=True)


def _snapshot(directory: Path) -> dict[str, tuple[int, bytes] | str]:
    """Every entry below ``directory``: regular files by inode and content, others by
    kind (a FIFO is never opened)."""
    out: dict[str, tuple[int, bytes] | str] = {}
    for p in sorted(directory.rglob("*")):
        st = os.lstat(p)
        key = str(p.relative_to(directory))
        if stat.S_ISREG(st.st_mode):
            out[key] = (st.st_ino, p.read_bytes())
        else:
            out[key] = stat.filemode(st.st_mode)
    return out


def test_corpus_covers_every_class():
    kinds = [c.kind for c in CASES.values()]
    assert len(CASES) == len(_BUILT), "case names must be unique"
    assert len(kinds) >= 350, len(kinds)
    for kind in ("segfault", "overwrite", "allocation", "error", "nan", "escape", "hang",
                 "traceback"):
        assert kinds.count(kind) >= 3, kind


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name, capsys, monkeypatch):
    case = CASES[name]
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    before = _snapshot(case.directory)
    capsys.readouterr()
    tracemalloc.start()
    try:
        code = main(case.argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err, captured.out[-300:])
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"oatomo {case.argv[0]}: error: "), err
    assert case.needle in err, (case.needle, err)
    assert case.reason in err, (case.reason, err)
    assert _snapshot(case.directory) == before  # inputs unchanged, nothing left behind
    assert peak < MEMORY_CEILING, peak


#: Address-space limit of the out-of-process runs (the OS refuses anything beyond it).
ADDRESS_SPACE = 3 << 30


def _limit_address_space() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _one_per_family(names: list[str]) -> list[str]:
    """The first of each family of case names (the part before the first ``_``: the kind
    of input or option, e.g. ``document``, ``scan``, ``weights``)."""
    first: dict[str, str] = {}
    for n in sorted(names):
        first.setdefault(n.split("_")[0], n)
    return sorted(first.values())


#: The declared-size cases run again each in a fresh ``python -m oatomo``: one per family
#: of inputs (every case runs under an OS limit in one process below, with less headroom;
#: a fresh interpreter per case cost two minutes of the suite for the same refusals).
FRESH_PROCESS_CASES = _one_per_family([n for n, c in CASES.items()
                                       if c.kind == "allocation"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX resource limits")
@pytest.mark.parametrize("name", FRESH_PROCESS_CASES)
def test_allocation_cases_under_an_os_memory_limit(name):
    """Declared-size cases (one per family of inputs) in a fresh process whose address
    space the OS caps at 3 GiB (tracemalloc above sees only Python and NumPy allocations;
    the lazy imports of a fresh interpreter happen under the cap): still one line and
    exit 2, so nothing tried to allocate what the input declares."""
    import subprocess
    import sys

    case = CASES[name]
    before = _snapshot(case.directory)
    env = {**os.environ, **case.env, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run([sys.executable, "-m", "oatomo", *case.argv], capture_output=True,
                         text=True, env=env, preexec_fn=_limit_address_space, timeout=120)
    err = res.stderr.strip()
    assert res.returncode == 2, (res.returncode, err[-500:])
    assert "\n" not in err and "Traceback" not in err and case.needle in err, err
    assert _snapshot(case.directory) == before


#: Address space the whole in-process corpus may add (RLIMIT_AS above its imports).
CORPUS_HEADROOM = 3 << 29


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_whole_corpus_in_one_process_under_os_limits(tmp_path):
    """The in-process corpus again, in one child process whose address space the OS caps
    at its size after the imports plus 1.5 GiB, with the resident-set peak (every touched
    allocation: NumPy, HDF5, Numba, PyTorch) as the memory measure instead of tracemalloc."""
    import subprocess
    import sys

    out = tmp_path / "child.json"
    child = Path(__file__).parents[1] / "helpers" / "corpus_child.py"
    res = subprocess.run([sys.executable, str(child), str(CORPUS_HEADROOM), str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    report = json.loads(out.read_text())
    assert report["probe_refused"]  # the OS limit is in force
    assert len(report["cases"]) == len(CASES)
    for c in report["cases"]:
        err = c["err"].strip()
        assert c["code"] == 2, (c["name"], c["code"], err[-300:])
        assert "\n" not in err and "out of memory" not in err, (c["name"], err)
        assert c["needle"] in err and c["reason"] in err, (c["name"], err)
    grown = report["cases"][-1]["peak_rss"] - report["baseline_rss"]
    assert grown < MEMORY_CEILING, grown
