"""Shared test configuration.

The tests mirror the package: ``tests/<room>/`` holds the tests of ``oatomo/<room>/``, the
top level those of the top-level modules and of the package as a whole. ``tests/helpers``
(shared builders and child-process scripts) is importable from every test; ``tests/data``
holds the files the readers are checked against.
"""

import os
import sys
from pathlib import Path

import pytest

# Keep the suite reproducible and polite on 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).parent / "helpers"))


@pytest.fixture(scope="session")
def torchrun_runs(tmp_path_factory) -> Path:
    """The folder of ``tests/helpers/ddp_runs.py`` run once under ``torchrun`` with two
    processes (every distributed training the tests check, in one launch: starting the
    processes costs more than the tiny trainings)."""
    import subprocess

    from oatomo.datasets import generate_dataset

    root = tmp_path_factory.mktemp("torchrun")
    generate_dataset(root / "data", ["ring-sparse/radial", "arc/none"], count=4, size=32,
                     chunk=4, inputs=("ubp", "das"))
    script = Path(__file__).parent / "helpers" / "ddp_runs.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           "2", "--master-port", "29517", str(script), str(root / "data"),
                           str(root)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root
