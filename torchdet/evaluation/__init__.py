"""Dataset evaluators and the inference loop (Detectron2's ``detectron2.evaluation``).

The LVIS and Cityscapes evaluators import their optional packages (``lvis``,
``cityscapesscripts``) only when used, and say how to install them when missing.
"""

from .cityscapes_evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from .coco_evaluation import COCOevalMaxDets, COCOEvaluator, instances_to_coco_json
from .confusion import (
    confusion_matrix,
    confusion_matrix_from_evaluator,
    plot_confusion_matrix,
    precision_recall_table,
)
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
)
from .fast_eval_api import COCOeval_opt
from .lvis_evaluation import LVISEvaluator
from .panoptic_evaluation import COCOPanopticEvaluator
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator
from .rotated_coco_evaluation import RotatedCOCOEvaluator
from .sem_seg_evaluation import SemSegEvaluator
from .testing import flatten_results_dict, print_csv_format, verify_results

__all__ = [
    "COCOEvaluator",
    "COCOPanopticEvaluator",
    "COCOevalMaxDets",
    "COCOeval_opt",
    "CityscapesInstanceEvaluator",
    "CityscapesSemSegEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "LVISEvaluator",
    "PascalVOCDetectionEvaluator",
    "RotatedCOCOEvaluator",
    "SemSegEvaluator",
    "confusion_matrix",
    "confusion_matrix_from_evaluator",
    "flatten_results_dict",
    "inference_context",
    "inference_on_dataset",
    "instances_to_coco_json",
    "plot_confusion_matrix",
    "precision_recall_table",
    "print_csv_format",
    "verify_results",
]
