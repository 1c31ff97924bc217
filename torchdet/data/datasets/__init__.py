"""Dataset loaders and registrations (Detectron2's ``detectron2.data.datasets``).

Importing this package registers the builtin datasets (lazily, see ``builtin.py``).
"""

from . import builtin as _builtin  # registers the builtin datasets (lazily)
from .cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from .cityscapes_panoptic import load_cityscapes_panoptic
from .coco import (
    convert_to_coco_dict,
    convert_to_coco_json,
    load_coco_json,
    load_sem_seg,
    register_coco_instances,
)
from .coco_panoptic import (
    load_coco_panoptic_json,
    merge_to_panoptic,
    register_coco_panoptic,
    register_coco_panoptic_separated,
)
from .lvis import get_lvis_instances_meta, load_lvis_json, register_lvis_instances
from .pascal_voc import load_voc_instances, register_pascal_voc

__all__ = [k for k in globals() if not k.startswith("_")] + [
    "generate_shapes_dataset",
    "register_shapes",
]


def __getattr__(name: str) -> object:
    # The shapes generator is imported on first use, so that
    # ``python -m torchdet.data.datasets.synthetic`` does not import itself twice.
    if name in ("generate_shapes_dataset", "register_shapes"):
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
