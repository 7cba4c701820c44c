"""Run the whole hostile-input corpus in this process under OS memory limits.

A child of ``tests/cli/test_hostile.py``: ``python corpus_child.py HEADROOM OUT.json``. The
modules the cases may load are imported first; then the address space is capped at its
current size plus ``HEADROOM`` bytes (``RLIMIT_AS``: any larger allocation, by NumPy,
HDF5, Numba or PyTorch alike, fails), the resident-set peak is taken as the baseline, and
every case of the corpus is run through ``oatomo.cli.main``. For each case the exit code,
the stderr text and the process's resident-set peak afterwards (``ru_maxrss``, which sees
every allocation that was touched, not only Python's) are written to ``OUT.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import tempfile
from pathlib import Path


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(headroom: int, out: Path) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import warnings

    warnings.simplefilter("ignore")
    import h5py  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import torch  # noqa: F401
    from hostile_corpus import build

    import oatomo.calibration  # noqa: F401
    import oatomo.learn.conv  # noqa: F401
    from oatomo.cli import main as cli

    root = Path(tempfile.mkdtemp(prefix="oatomo-corpus-child-"))
    cases = build(root)
    limit = _vm_size() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np

    try:  # the limit is in force: twice the headroom is refused
        np.ones(2 * headroom // 8)
        refused = False
    except MemoryError:
        refused = True
    results = {"baseline_rss": _peak_rss(), "limit": limit, "probe_refused": refused,
               "cases": []}
    for case in cases:
        saved = {k: os.environ.get(k) for k in case.env}
        os.environ.update(case.env)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli(case.argv)
        except BaseException as exc:  # noqa: BLE001 - recorded; the test fails on it
            code = f"raised {type(exc).__name__}: {exc}"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        results["cases"].append(dict(name=case.name, code=code, err=err.getvalue(),
                                     needle=case.needle, reason=case.reason,
                                     peak_rss=_peak_rss()))
    out.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), Path(sys.argv[2])))
