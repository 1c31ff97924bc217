"""TensorMask ("TensorMask: A Foundation for Dense Object Segmentation", Chen et al. 2019):
the ``swap_align2nat`` op in PyTorch."""

from .config import add_tensormask_config
from .head import TensorMaskHead
from .swap_align2nat import SwapAlign2Nat, swap_align2nat

__all__ = [k for k in globals() if not k.startswith("_")]
