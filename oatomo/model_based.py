"""Deprecated alias of :mod:`oatomo.recon.model_based`, kept for one release."""

import warnings

from oatomo.recon.model_based import *  # noqa: F403
from oatomo.recon.model_based import __all__ as _solvers
from oatomo.recon.operators import *  # noqa: F403
from oatomo.recon.operators import __all__ as _operators

__all__ = [*_solvers, *_operators]

warnings.warn("oatomo.model_based is deprecated; use oatomo.recon.model_based", DeprecationWarning,
              stacklevel=2)
