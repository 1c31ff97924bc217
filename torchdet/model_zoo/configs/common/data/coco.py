# COCO instance detection/segmentation: train and test loaders and the COCO evaluator.
from omegaconf import OmegaConf

from torchdet.config import LazyCall as L

dataloader = OmegaConf.create()

dataloader.train = L("torchdet.data.build_detection_train_loader")(
    dataset=L("torchdet.data.get_detection_dataset_dicts")(names="coco_2017_train"),
    mapper=L("torchdet.data.DatasetMapper")(
        is_train=True,
        augmentations=[
            L("torchdet.data.transforms.ResizeShortestEdge")(
                short_edge_length=(640, 672, 704, 736, 768, 800),
                sample_style="choice",
                max_size=1333,
            ),
            L("torchdet.data.transforms.RandomFlip")(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=True,
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L("torchdet.data.build_detection_test_loader")(
    dataset=L("torchdet.data.get_detection_dataset_dicts")(
        names="coco_2017_val", filter_empty=False
    ),
    mapper=L("torchdet.data.DatasetMapper")(
        is_train=False,
        augmentations=[
            L("torchdet.data.transforms.ResizeShortestEdge")(short_edge_length=800, max_size=1333),
        ],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L("torchdet.evaluation.COCOEvaluator")(
    dataset_name="${..test.dataset.names}",
)
