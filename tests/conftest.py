"""Shared test configuration."""

import os

# Keep the suite reproducible and polite on 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")
