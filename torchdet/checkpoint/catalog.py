"""``catalog://`` names for the Caffe2 ImageNet backbones and Detectron1 baselines.

Importing this module registers the ``catalog://`` prefix with ``PathManager``, so
``MODEL.WEIGHTS: "catalog://ImageNetPretrained/MSRA/R-50"`` resolves to a downloaded file.
"""

from __future__ import annotations

import difflib
import logging

from torchdet.utils.file_io import PathManager

__all__ = ["ModelCatalog"]

logger = logging.getLogger(__name__)


class ModelCatalog:
    """Names of third-party (Caffe2) checkpoints and their URLs."""

    S3_C2_DETECTRON_PREFIX = "https://dl.fbaipublicfiles.com/detectron"

    # MSRA models use STRIDE_IN_1X1=True, the FAIR ones False. Every BN model here has its BN folded
    # into an affine layer: load it into FrozenBN only. All use PIXEL_STD=[1, 1, 1].
    C2_IMAGENET_MODELS = {
        "MSRA/R-50": "ImageNetPretrained/MSRA/R-50.pkl",
        "MSRA/R-101": "ImageNetPretrained/MSRA/R-101.pkl",
        "FAIR/R-50-GN": "ImageNetPretrained/47261647/R-50-GN.pkl",
        "FAIR/R-101-GN": "ImageNetPretrained/47592356/R-101-GN.pkl",
        "FAIR/X-101-32x8d": "ImageNetPretrained/20171220/X-101-32x8d.pkl",
        "FAIR/X-101-64x4d": "ImageNetPretrained/FBResNeXt/X-101-64x4d.pkl",
        "FAIR/X-152-32x8d-IN5k": "ImageNetPretrained/25093814/X-152-32x8d-IN5k.pkl",
    }

    C2_DETECTRON_PATH_FORMAT = "{prefix}/{url}/output/train/{dataset}/{type}/model_final.pkl"

    C2_DATASET_COCO = "coco_2014_train%3Acoco_2014_valminusminival"
    C2_DATASET_COCO_KEYPOINTS = "keypoints_coco_2014_train%3Akeypoints_coco_2014_valminusminival"

    # name -> part of the URL
    C2_DETECTRON_MODELS = {
        "35857197/e2e_faster_rcnn_R-50-C4_1x": "35857197/12_2017_baselines/e2e_faster_rcnn_R-50-C4_1x.yaml.01_33_49.iAX0mXvW",  # noqa: E501
        "35857345/e2e_faster_rcnn_R-50-FPN_1x": "35857345/12_2017_baselines/e2e_faster_rcnn_R-50-FPN_1x.yaml.01_36_30.cUF7QR7I",  # noqa: E501
        "35857890/e2e_faster_rcnn_R-101-FPN_1x": "35857890/12_2017_baselines/e2e_faster_rcnn_R-101-FPN_1x.yaml.01_38_50.sNxI7sX7",  # noqa: E501
        "36761737/e2e_faster_rcnn_X-101-32x8d-FPN_1x": "36761737/12_2017_baselines/e2e_faster_rcnn_X-101-32x8d-FPN_1x.yaml.06_31_39.5MIHi1fZ",  # noqa: E501
        "35858791/e2e_mask_rcnn_R-50-C4_1x": "35858791/12_2017_baselines/e2e_mask_rcnn_R-50-C4_1x.yaml.01_45_57.ZgkA7hPB",  # noqa: E501
        "35858933/e2e_mask_rcnn_R-50-FPN_1x": "35858933/12_2017_baselines/e2e_mask_rcnn_R-50-FPN_1x.yaml.01_48_14.DzEQe4wC",  # noqa: E501
        "35861795/e2e_mask_rcnn_R-101-FPN_1x": "35861795/12_2017_baselines/e2e_mask_rcnn_R-101-FPN_1x.yaml.02_31_37.KqyEK4tT",  # noqa: E501
        "36761843/e2e_mask_rcnn_X-101-32x8d-FPN_1x": "36761843/12_2017_baselines/e2e_mask_rcnn_X-101-32x8d-FPN_1x.yaml.06_35_59.RZotkLKI",  # noqa: E501
        "48616381/e2e_mask_rcnn_R-50-FPN_2x_gn": "GN/48616381/04_2018_gn_baselines/e2e_mask_rcnn_R-50-FPN_2x_gn_0416.13_23_38.bTlTI97Q",  # noqa: E501
        "37697547/e2e_keypoint_rcnn_R-50-FPN_1x": "37697547/12_2017_baselines/e2e_keypoint_rcnn_R-50-FPN_1x.yaml.08_42_54.kdzV35ao",  # noqa: E501
        "35998355/rpn_R-50-C4_1x": "35998355/12_2017_baselines/rpn_R-50-C4_1x.yaml.08_00_43.njH5oD9L",  # noqa: E501
        "35998814/rpn_R-50-FPN_1x": "35998814/12_2017_baselines/rpn_R-50-FPN_1x.yaml.08_06_03.Axg0r179",  # noqa: E501
        "36225147/fast_R-50-FPN_1x": "36225147/12_2017_baselines/fast_rcnn_R-50-FPN_1x.yaml.08_39_09.L3obSdQ2",  # noqa: E501
    }

    @staticmethod
    def names() -> list[str]:
        """Every name :meth:`get` accepts."""
        return [f"ImageNetPretrained/{k}" for k in ModelCatalog.C2_IMAGENET_MODELS] + [
            f"Caffe2Detectron/COCO/{k}" for k in ModelCatalog.C2_DETECTRON_MODELS
        ]

    @staticmethod
    def get(name: str) -> str:
        """The URL of catalog entry ``name`` (without the ``catalog://`` prefix).

        Args:
            name: ``ImageNetPretrained/<model>`` or ``Caffe2Detectron/COCO/<id>/<model>``.

        Raises:
            KeyError: unknown name (the message lists close names).
        """
        if name.startswith("ImageNetPretrained/"):
            key = name[len("ImageNetPretrained/") :]
            if key in ModelCatalog.C2_IMAGENET_MODELS:
                return (
                    f"{ModelCatalog.S3_C2_DETECTRON_PREFIX}/{ModelCatalog.C2_IMAGENET_MODELS[key]}"
                )
        elif name.startswith("Caffe2Detectron/COCO/"):
            key = name[len("Caffe2Detectron/COCO/") :]
            if key in ModelCatalog.C2_DETECTRON_MODELS:
                dataset = (
                    ModelCatalog.C2_DATASET_COCO_KEYPOINTS
                    if "keypoint_rcnn" in key
                    else ModelCatalog.C2_DATASET_COCO
                )
                # this one baseline was stored under "rpn" rather than "generalized_rcnn"
                kind = "rpn" if "35998355/rpn_R-50-C4_1x" in key else "generalized_rcnn"
                return ModelCatalog.C2_DETECTRON_PATH_FORMAT.format(
                    prefix=ModelCatalog.S3_C2_DETECTRON_PREFIX,
                    url=ModelCatalog.C2_DETECTRON_MODELS[key],
                    dataset=dataset,
                    type=kind,
                )
        close = difflib.get_close_matches(name, ModelCatalog.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"catalog://{name} is not in the model catalog{hint}")


def _resolve_catalog(name: str) -> str:
    url = ModelCatalog.get(name)
    logger.info("Catalog entry catalog://%s points to %s", name, url)
    return url


PathManager.register_handler("catalog://", _resolve_catalog)
