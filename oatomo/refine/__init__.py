"""Learned refinement of linear reconstructions with a scanner-family model (no PyTorch import).

:class:`Refiner` (a trained model and the scanners it applies to), :func:`load_refiner`,
and :class:`RefinedScan`, the result of every refinement (:mod:`oatomo.refine.refiner`);
the model's NumPy inference lives in :mod:`oatomo.refine.weights`, the view channels of a
geometry-aware model (what each pixel sees of the array) in :mod:`oatomo.refine.view`.
"""

from oatomo.refine.refiner import (
    TRAIN_COMMAND,
    UNITS_PA,
    UNITS_REFINED,
    RefinedScan,
    Refiner,
    load_refiner,
    resample,
    to_canonical_grid,
)

__all__ = ["Refiner", "RefinedScan", "load_refiner", "resample", "to_canonical_grid",
           "UNITS_REFINED", "UNITS_PA", "TRAIN_COMMAND"]
