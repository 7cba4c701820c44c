"""The base of every oatomo model: config in, seeded construction (registry: ``registry``).

Checkpoints of these models are written and read by :mod:`oatomo.learn.checkpoint`
(:func:`~oatomo.learn.checkpoint.save_checkpoint`, :func:`~oatomo.learn.checkpoint.load_model`
with ``model_class=`` to check the class).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.registry import model_classes, register_model

__all__ = ["OatomoModel", "register_model", "model_classes"]


class OatomoModel(nn.Module):
    """A module built from one frozen config dataclass (``to_dict`` / ``from_dict``).

    Subclasses set ``config_class`` and build their layers in ``_build()``. ``seed`` makes
    the initial weights reproducible without touching the global random state.
    ``env_count`` is the number of training environments the model has variant parts for
    (``None``: environment-blind); the training loop checks it against the data.
    """

    config_class: ClassVar[Any]
    #: Config fields the model does not use; a checkpoint that differs only in them resumes.
    config_unused: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Any = None, *, seed: int | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise InputError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                             f"got {type(self.config).__name__}")
        if seed is None:
            self._build()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._build()

    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def env_count(self) -> int | None:
        return None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
