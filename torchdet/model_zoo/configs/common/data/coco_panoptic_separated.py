# COCO panoptic in the "separated" form of Panoptic FPN: instances plus stuff semantic maps,
# evaluated as instances, as semantic segmentation and as panoptic segmentation.
from torchdet.config import LazyCall as L

from .coco import dataloader

dataloader.train.dataset.names = "coco_2017_train_panoptic_separated"
dataloader.train.dataset.filter_empty = False
dataloader.test.dataset.names = "coco_2017_val_panoptic_separated"

dataloader.evaluator = [
    L("torchdet.evaluation.COCOEvaluator")(dataset_name="${...test.dataset.names}"),
    L("torchdet.evaluation.SemSegEvaluator")(dataset_name="${...test.dataset.names}"),
    L("torchdet.evaluation.COCOPanopticEvaluator")(dataset_name="${...test.dataset.names}"),
]
