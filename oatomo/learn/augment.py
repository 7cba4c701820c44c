"""How input channels change when an image stack is turned and mirrored (NumPy only).

Image channels keep their values; channels that encode directions (e.g. the view channels of
:mod:`oatomo.refine.view`) change sign. Used by the patch trainer's augmentation
(:func:`oatomo.learn.patches.patch_batch`) and by the refiner's test-time augmentation
(:class:`oatomo.refine.Refiner`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["turn_factors"]


def turn_factors(signs: np.ndarray, quarter_turns: int, mirrored: bool) -> np.ndarray:
    """Per channel, the factor its values take when the image stack is turned by
    ``quarter_turns`` x 90 degrees and then mirrored (``signs``: (C, 2), the factor of one
    turn and of a mirror per channel)."""
    f = np.asarray(signs, np.float32)
    factor = np.ones(len(f), np.float32)
    if quarter_turns % 2:
        factor *= f[:, 0]
    if mirrored:
        factor *= f[:, 1]
    return factor
