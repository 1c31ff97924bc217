"""Dataset evaluators and the inference loop (Detectron2's ``detectron2.evaluation``)."""

from .coco_evaluation import COCOevalMaxDets, COCOEvaluator, instances_to_coco_json
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
)
from .fast_eval_api import COCOeval_opt
from .testing import flatten_results_dict, print_csv_format, verify_results

__all__ = [k for k in globals() if not k.startswith("_")]
