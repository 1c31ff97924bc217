"""torchdet: object detection and segmentation in pure PyTorch, compatible with Detectron2."""

__version__ = "0.1.0"
