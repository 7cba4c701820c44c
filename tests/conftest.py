"""Shared test configuration.

The tests mirror the package: ``tests/<room>/`` holds the tests of ``oatomo/<room>/``, the
top level those of the top-level modules and of the package as a whole. ``tests/helpers``
(shared builders and child-process scripts) is importable from every test; ``tests/data``
holds the files the readers are checked against.
"""

import os
import sys
from pathlib import Path

# Keep the suite reproducible and polite on 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).parent / "helpers"))
