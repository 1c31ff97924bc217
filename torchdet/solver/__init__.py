"""Optimizers, gradient clipping and learning-rate schedules."""

from .build import (
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    get_default_optimizer_params,
    maybe_add_gradient_clipping,
)
from .lr_scheduler import *  # noqa: F403
