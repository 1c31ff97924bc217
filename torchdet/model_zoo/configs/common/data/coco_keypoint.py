# COCO person keypoints: the COCO loaders with keypoint annotations instead of masks.
from torchdet.config import LazyCall as L

from .coco import dataloader

dataloader.train.dataset.min_keypoints = 1
dataloader.train.dataset.names = "keypoints_coco_2017_train"
dataloader.test.dataset.names = "keypoints_coco_2017_val"

dataloader.train.mapper.update(
    use_instance_mask=False,
    use_keypoint=True,
    # Computed when the loader is built, from the metadata of the training datasets.
    keypoint_hflip_indices=L("torchdet.data.detection_utils.create_keypoint_hflip_indices")(
        dataset_names="${...dataset.names}"
    ),
)
