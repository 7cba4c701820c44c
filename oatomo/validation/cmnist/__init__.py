"""Colored MNIST: the validation example of the invariant VAEs (real digits only).

The data (:mod:`oatomo.validation.cmnist.data`) are re-exported here; the digit classifier
(:mod:`oatomo.validation.cmnist.classifier`, PyTorch) is imported on first use of its names.
The experiment, its metrics (:mod:`~oatomo.validation.cmnist.metrics`) and their
uncertainty (:mod:`~oatomo.validation.cmnist.stats`) live beside them.
"""

from oatomo._lazy import lazy_exports
from oatomo.validation.cmnist.data import *  # noqa: F403
from oatomo.validation.cmnist.data import __all__ as _DATA_NAMES

_LAZY = {name: "oatomo.validation.cmnist.classifier"
         for name in ("ClassifierConfig", "DigitClassifier", "predict_batched",
                      "load_classifier")}

__all__ = [*_DATA_NAMES, *_LAZY]

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
