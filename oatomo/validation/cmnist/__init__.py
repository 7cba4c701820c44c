"""Colored MNIST: the validation example of the invariant VAEs (real digits only).

The data (:mod:`oatomo.validation.cmnist.data`) are re-exported here; the experiment, its
classifier and its metrics live beside them.
"""

from oatomo.validation.cmnist.data import *  # noqa: F403
from oatomo.validation.cmnist.data import __all__  # noqa: F401
