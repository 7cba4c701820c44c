"""Per-sensor agreement of two sets of signals, for the tests against k-Wave."""

import numpy as np


def per_sensor(y: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson correlation, least-squares amplitude ``<y, ref> / <y, y>`` and relative L2
    error ``||y - ref|| / ||ref||`` of each row of ``y`` against the same row of ``ref``."""
    corr = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(y, ref, strict=True)])
    amp = np.einsum("nt,nt->n", y, ref) / np.einsum("nt,nt->n", y, y)
    rel = np.linalg.norm(y - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return corr, amp, rel
