"""Deprecated alias of :mod:`oatomo.recon.autofocus`, kept for one release."""

import warnings

from oatomo.recon.autofocus import *  # noqa: F403
from oatomo.recon.autofocus import __all__  # noqa: F401

warnings.warn("oatomo.autofocus is deprecated; use oatomo.recon.autofocus", DeprecationWarning,
              stacklevel=2)
