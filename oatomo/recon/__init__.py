"""Reconstruction: the method registry, backprojection, exact inversion, model-based
inversion and autofocus.

* :mod:`oatomo.recon.registry`: every method by name (:data:`METHODS`) and
  :func:`reconstruct_sinogram`;
* :mod:`oatomo.recon.backprojection`: delay-and-sum and universal backprojection
  (:func:`backproject`), on the summation of :mod:`oatomo.recon.summation`;
* :mod:`oatomo.recon.exact`: exact filtered backprojection for full rings
  (:func:`fbp_circular`);
* :mod:`oatomo.recon.operators`: the forward operator, its norm and total variation, as
  the model-based solvers apply them;
* :mod:`oatomo.recon.model_based`: Tikhonov (LSQR) and TV (FISTA) solvers
  (:func:`reconstruct_model_based`);
* :mod:`oatomo.recon.autofocus`: the speed of sound from image sharpness (:func:`autofocus`).
"""

from oatomo.recon.autofocus import autofocus, sharpness
from oatomo.recon.backprojection import BACKPROJECTION_METHODS, backproject, ubp_filter
from oatomo.recon.exact import check_full_ring, circular_means, fbp_circular
from oatomo.recon.model_based import MODEL_BASED_METHODS, default_lambda, reconstruct_model_based
from oatomo.recon.operators import operator_norm_sq, tv_norm, tv_prox
from oatomo.recon.registry import (
    METHODS,
    Callback,
    MethodSpec,
    get_method,
    linear_methods,
    reconstruct_sinogram,
)

__all__ = ["BACKPROJECTION_METHODS", "METHODS", "MODEL_BASED_METHODS", "Callback", "MethodSpec",
           "autofocus", "backproject", "check_full_ring", "circular_means", "default_lambda",
           "fbp_circular", "get_method", "linear_methods", "operator_norm_sq",
           "reconstruct_model_based", "reconstruct_sinogram", "sharpness", "tv_norm", "tv_prox",
           "ubp_filter"]
