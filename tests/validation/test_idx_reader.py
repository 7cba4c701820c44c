"""The IDX reader: it checks the header's declared size before it reads, and never asks
for more memory than the file declares (a small valid file reads under a tight
address-space limit even with the default ``OATOMO_MAX_BYTES`` of 4 GiB)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from oatomo.errors import InputError
from oatomo.validation.cmnist.data import read_idx


def _idx(images: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in images.shape)
    return header + images.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_and_corrupt_sizes(tmp_path, gz) -> None:
    img = np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    data = _idx(img)
    path.write_bytes(gzip.compress(data) if gz else data)
    assert np.array_equal(read_idx(path), img)
    for bad, what in ((data[:-1], "file has"), (data + b"\0", "or more"),
                      (data[:6], "dimensions")):
        path.write_bytes(gzip.compress(bad) if gz else bad)
        with pytest.raises(InputError, match=what):
            read_idx(path)


def test_declared_size_checked_before_reading(tmp_path, monkeypatch) -> None:
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + (60000).to_bytes(4, "big")
                     + (4096).to_bytes(4, "big") + (4096).to_bytes(4, "big"))
    with pytest.raises(InputError, match="IDX data"):
        read_idx(path)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                    reason="needs RLIMIT_AS")
def test_small_file_reads_under_a_tight_address_space(tmp_path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(_idx(np.zeros((10, 28, 28), np.uint8)))
    code = textwrap.dedent(f"""
        import resource, numpy
        from oatomo.validation.cmnist.data import read_idx
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        cap = used + (1 << 30)  # 1 GiB above what is mapped: far below the 4 GiB default
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(read_idx({str(path)!r}).shape)
    """)
    env = {k: v for k, v in os.environ.items() if k != "OATOMO_MAX_BYTES"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "(10, 28, 28)"
