"""DensePose's config keys (Detectron2's ``add_densepose_config`` and its parts)."""

from __future__ import annotations

from torchdet.config import CfgNode as CN

__all__ = [
    "add_bootstrap_config",
    "add_dataset_category_config",
    "add_densepose_config",
    "add_densepose_head_config",
    "add_densepose_head_cse_config",
    "add_evaluation_config",
    "add_hrnet_config",
]


def add_dataset_category_config(cfg: CN) -> None:
    """``DATASETS.{CATEGORY_MAPS, WHITELISTED_CATEGORIES, CLASS_TO_MESH_NAME_MAPPING}``."""
    cfg.DATASETS.CATEGORY_MAPS = CN(new_allowed=True)
    cfg.DATASETS.WHITELISTED_CATEGORIES = CN(new_allowed=True)
    cfg.DATASETS.CLASS_TO_MESH_NAME_MAPPING = CN(new_allowed=True)


def add_evaluation_config(cfg: CN) -> None:
    """``DENSEPOSE_EVALUATION``."""
    cfg.DENSEPOSE_EVALUATION = CN()
    # "iou" (chart-based models) or "cse".
    cfg.DENSEPOSE_EVALUATION.TYPE = "iou"
    # Where results are kept before evaluation: "none" (in the predictions), "ram", "file".
    cfg.DENSEPOSE_EVALUATION.STORAGE = "none"
    cfg.DENSEPOSE_EVALUATION.MIN_IOU_THRESHOLD = 0.5
    cfg.DENSEPOSE_EVALUATION.DISTRIBUTED_INFERENCE = True
    cfg.DENSEPOSE_EVALUATION.EVALUATE_MESH_ALIGNMENT = False
    cfg.DENSEPOSE_EVALUATION.MESH_ALIGNMENT_MESH_NAMES = []


def add_bootstrap_config(cfg: CN) -> None:
    """``BOOTSTRAP_DATASETS`` and ``BOOTSTRAP_MODEL`` (self-training on unlabeled data)."""
    cfg.BOOTSTRAP_DATASETS = []
    cfg.BOOTSTRAP_MODEL = CN()
    cfg.BOOTSTRAP_MODEL.WEIGHTS = ""
    cfg.BOOTSTRAP_MODEL.DEVICE = "cuda"


def add_densepose_head_cse_config(cfg: CN) -> None:
    """``MODEL.ROI_DENSEPOSE_HEAD.CSE`` (continuous surface embeddings)."""
    cse = cfg.MODEL.ROI_DENSEPOSE_HEAD.CSE = CN()
    cse.EMBED_SIZE = 16
    cse.EMBEDDERS = CN(new_allowed=True)
    cse.EMBEDDING_DIST_GAUSS_SIGMA = 0.01
    cse.GEODESIC_DIST_GAUSS_SIGMA = 0.01
    cse.EMBED_LOSS_WEIGHT = 0.6
    cse.EMBED_LOSS_NAME = "EmbeddingLoss"
    cse.FEATURES_LR_FACTOR = 1.0
    cse.EMBEDDING_LR_FACTOR = 1.0
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS = CN({"ENABLED": False})
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.WEIGHT = 0.025
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.NORM_P = 2
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.TEMPERATURE = 0.05
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.MAX_NUM_VERTICES = 4936
    cse.PIX_TO_SHAPE_CYCLE_LOSS = CN({"ENABLED": False})
    cse.PIX_TO_SHAPE_CYCLE_LOSS.WEIGHT = 0.0001
    cse.PIX_TO_SHAPE_CYCLE_LOSS.NORM_P = 2
    cse.PIX_TO_SHAPE_CYCLE_LOSS.USE_ALL_MESHES_NOT_GT_ONLY = False
    cse.PIX_TO_SHAPE_CYCLE_LOSS.NUM_PIXELS_TO_SAMPLE = 100
    cse.PIX_TO_SHAPE_CYCLE_LOSS.PIXEL_SIGMA = 5.0
    cse.PIX_TO_SHAPE_CYCLE_LOSS.TEMPERATURE_PIXEL_TO_VERTEX = 0.05
    cse.PIX_TO_SHAPE_CYCLE_LOSS.TEMPERATURE_VERTEX_TO_PIXEL = 0.05


def add_densepose_head_config(cfg: CN) -> None:
    """``MODEL.DENSEPOSE_ON``, ``MODEL.ROI_DENSEPOSE_HEAD``, ``INPUT.ROTATION_ANGLES`` and
    ``TEST.AUG.ROTATION_ANGLES``."""
    cfg.MODEL.DENSEPOSE_ON = True
    h = cfg.MODEL.ROI_DENSEPOSE_HEAD = CN()
    h.NAME = ""
    h.NUM_STACKED_CONVS = 8
    # Surface patches (body parts) of the chart-based model.
    h.NUM_PATCHES = 24
    h.DECONV_KERNEL = 4
    h.CONV_HEAD_DIM = 512
    h.CONV_HEAD_KERNEL = 3
    h.UP_SCALE = 2
    h.HEATMAP_SIZE = 112
    h.POOLER_TYPE = "ROIAlignV2"
    h.POOLER_RESOLUTION = 28
    h.POOLER_SAMPLING_RATIO = 2
    # 2 (foreground / background) or 15 (the coarse parts of the annotation masks).
    h.NUM_COARSE_SEGM_CHANNELS = 2
    # Proposals with IoU >= this with a ground-truth box train the DensePose head.
    h.FG_IOU_THRESHOLD = 0.7
    h.INDEX_WEIGHTS = 5.0
    h.PART_WEIGHTS = 1.0
    h.POINT_REGRESSION_WEIGHTS = 0.01
    # Train the coarse segmentation with instance masks instead of dp_masks.
    h.COARSE_SEGM_TRAINED_BY_MASKS = False
    # Panoptic-FPN-style decoder merging the FPN levels before pooling.
    h.DECODER_ON = True
    h.DECODER_NUM_CLASSES = 256
    h.DECODER_CONV_DIMS = 256
    h.DECODER_NORM = ""
    h.DECODER_COMMON_STRIDE = 4
    h.DEEPLAB = CN()
    h.DEEPLAB.NORM = "GN"
    h.DEEPLAB.NONLOCAL_ON = 0
    h.PREDICTOR_NAME = "DensePoseChartWithConfidencePredictor"
    h.LOSS_NAME = "DensePoseChartWithConfidenceLoss"
    h.UV_CONFIDENCE = CN({"ENABLED": False})
    h.UV_CONFIDENCE.EPSILON = 0.01
    h.SEGM_CONFIDENCE = CN({"ENABLED": False})
    h.SEGM_CONFIDENCE.EPSILON = 0.01
    # "iid_iso" or "indep_aniso" residual model of the UV confidences.
    h.UV_CONFIDENCE.TYPE = "iid_iso"
    cfg.INPUT.ROTATION_ANGLES = [0]
    cfg.TEST.AUG.ROTATION_ANGLES = ()
    add_densepose_head_cse_config(cfg)


def add_hrnet_config(cfg: CN) -> None:
    """``MODEL.HRNET`` (the HRNet backbone of some DensePose configs)."""
    hr = cfg.MODEL.HRNET = CN()
    hr.STEM_INPLANES = 64
    for name, modules, branches in (("STAGE2", 1, 2), ("STAGE3", 4, 3), ("STAGE4", 3, 4)):
        stage = CN()
        stage.NUM_MODULES = modules
        stage.NUM_BRANCHES = branches
        stage.BLOCK = "BASIC"
        stage.NUM_BLOCKS = [4] * branches
        stage.NUM_CHANNELS = [32 * 2**i for i in range(branches)]
        stage.FUSE_METHOD = "SUM"
        hr[name] = stage
    hr.HRFPN = CN()
    hr.HRFPN.OUT_CHANNELS = 256


def add_densepose_config(cfg: CN) -> None:
    """Add every DensePose key, with Detectron2's defaults, to ``cfg`` in place."""
    add_densepose_head_config(cfg)
    add_hrnet_config(cfg)
    add_bootstrap_config(cfg)
    add_dataset_category_config(cfg)
    add_evaluation_config(cfg)
