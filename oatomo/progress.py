"""Progress of long work: the one callback type of the library.

Every long step of the library (reconstructing frames, self-calibration, simulating a
dataset, training, evaluating) reports through an optional ``callback(what, done, total)``:
``what`` names the step (``"calibrate"``, ``"mb-tv"``, ``"scans"``, ``"train multi-decoder"``,
...), ``done`` counts finished units and ``total`` is their number (None if unknown). The
library never draws or prints; the command line turns the calls into progress bars
(``oatomo.cli``). An exception raised by the callback stops the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Callback"]

#: ``callback(what, done, total)``: progress of a long step (``total`` None if unknown).
Callback = Callable[[str, int, "int | None"], Any]
