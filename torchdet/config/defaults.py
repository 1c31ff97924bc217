"""The default yacs config: every key Detectron2 defines, with Detectron2's default values.

Conventions (as in Detectron2):

* A key named ``*_TRAIN`` / ``*_TEST`` applies to training / inference only.
* Image sizes are in pixels; "short edge" means min(height, width).
* Value types are part of the schema: a merged value must have the same type (lists and tuples
  are interchangeable, ``None`` accepts anything). Tuples here are the keys Detectron2 declares
  as tuples.

Use :func:`torchdet.config.get_cfg` to get a copy; never modify ``_C`` itself.
"""

from .cfg_node import CfgNode as CN

__all__ = ["_C", "get_cfg", "global_cfg", "set_global_cfg"]

# -----------------------------------------------------------------------------
# The config tree
# -----------------------------------------------------------------------------

_C = CN()

# The schema version; configs with an older VERSION are upgraded by compat.py on merge.
_C.VERSION = 2

_C.MODEL = CN()
_C.MODEL.LOAD_PROPOSALS = False
_C.MODEL.MASK_ON = False
_C.MODEL.KEYPOINT_ON = False
_C.MODEL.DEVICE = "cuda"
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"

# Path (or detectron2:// URL) of a checkpoint to initialise the model from, e.g.
# "detectron2://ImageNetPretrained/MSRA/R-50.pkl".
_C.MODEL.WEIGHTS = ""

# Values subtracted from / divided into the input image, per channel in INPUT.FORMAT order.
# These are the ImageNet means of the MSRA (caffe2) models, in BGR and 0-255 units; the MSRA
# models expect std 1. Torchvision-style models use RGB and std [58.395, 57.12, 57.375].
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]


# -----------------------------------------------------------------------------
# INPUT
# -----------------------------------------------------------------------------
_C.INPUT = CN()
# Short-edge sizes used in training; with sampling "choice" one is picked per image, with
# "range" a size is drawn uniformly between the two values.
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
# Cap on the long edge in training.
_C.INPUT.MAX_SIZE_TRAIN = 1333
# Short-edge size at test time; 0 disables resizing.
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# "horizontal", "vertical" or "none".
_C.INPUT.RANDOM_FLIP = "horizontal"

# Random cropping in training (before resizing).
_C.INPUT.CROP = CN({"ENABLED": False})
# One of "relative_range", "relative", "absolute", "absolute_range"; see RandomCrop.
_C.INPUT.CROP.TYPE = "relative_range"
# Relative sizes are fractions of the image (height, width); absolute ones are pixels.
_C.INPUT.CROP.SIZE = [0.9, 0.9]

# Channel order the model takes: "BGR", "RGB", "YUV-BT.601" or any PIL mode ("L", ...).
_C.INPUT.FORMAT = "BGR"
# "polygon" or "bitmask": how instance masks are kept in the data pipeline.
_C.INPUT.MASK_FORMAT = "polygon"


# -----------------------------------------------------------------------------
# Dataset
# -----------------------------------------------------------------------------
_C.DATASETS = CN()
# Names of registered datasets (DatasetCatalog).
_C.DATASETS.TRAIN = ()
# Precomputed proposal files, one per training dataset, in the same order.
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
# How many precomputed proposals to read per image.
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.TEST = ()
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000


# -----------------------------------------------------------------------------
# DataLoader
# -----------------------------------------------------------------------------
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# Batch images of similar aspect ratio (all wide or all tall) to waste less padding.
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
# "TrainingSampler" or "RepeatFactorTrainingSampler".
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
# Repeat threshold and rule of RepeatFactorTrainingSampler (LVIS-style rare-class oversampling).
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.REPEAT_SQRT = True
# Drop training images without usable annotations.
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True


# ---------------------------------------------------------------------------- #
# Backbone options
# ---------------------------------------------------------------------------- #
_C.MODEL.BACKBONE = CN()

# A name in BACKBONE_REGISTRY.
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# Freeze the first N stages (stem = 1, res2 = 2, ...): no gradient, FrozenBN. 0 trains all.
_C.MODEL.BACKBONE.FREEZE_AT = 2


# ---------------------------------------------------------------------------- #
# FPN options
# ---------------------------------------------------------------------------- #
_C.MODEL.FPN = CN()
# Backbone features FPN builds on, e.g. ["res2", "res3", "res4", "res5"].
_C.MODEL.FPN.IN_FEATURES = []
_C.MODEL.FPN.OUT_CHANNELS = 256

# "" (no norm), "GN", "SyncBN", ...
_C.MODEL.FPN.NORM = ""

# How top-down and lateral features are fused: "sum" or "avg".
_C.MODEL.FPN.FUSE_TYPE = "sum"


# ---------------------------------------------------------------------------- #
# Proposal generator options
# ---------------------------------------------------------------------------- #
_C.MODEL.PROPOSAL_GENERATOR = CN()
# "RPN", "RRPN" or "PrecomputedProposals".
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
# Proposals with either side smaller than this (in input-image pixels) are dropped.
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0


# ---------------------------------------------------------------------------- #
# Anchor generator options
# ---------------------------------------------------------------------------- #
_C.MODEL.ANCHOR_GENERATOR = CN()
# A name in ANCHOR_GENERATOR_REGISTRY.
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
# Anchor sizes (sqrt of area, absolute pixels): a list per feature map. With a single inner
# list, every feature map uses it.
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
# Height / width ratios, with the same list-per-feature-map rule.
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
# Angles in degrees (rotated anchors only), same rule.
_C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
# Anchor centres sit at (offset * stride) from the feature cell corner; 0.0 or 0.5.
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0


# ---------------------------------------------------------------------------- #
# RPN options
# ---------------------------------------------------------------------------- #
_C.MODEL.RPN = CN()
# A name in RPN_HEAD_REGISTRY.
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"

# Feature maps the RPN runs on.
_C.MODEL.RPN.IN_FEATURES = ["res4"]
# Anchors reaching more than this many pixels outside the image are ignored in training;
# -1 keeps them all.
_C.MODEL.RPN.BOUNDARY_THRESH = -1
# Anchor labelling by IoU with ground truth: < 0.3 negative (0), 0.3-0.7 ignored (-1),
# >= 0.7 positive (1); each GT's best anchor is positive too.
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
# Anchors sampled per image for the loss, and the positive fraction among them.
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
# "smooth_l1", "giou", "diou" or "ciou".
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
# Weights (wx, wy, ww, wh) of the box coder.
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Beta of the smooth L1 loss; 0 means plain L1.
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# Proposals kept per feature map before NMS, and per image after it. With FPN the post-NMS
# count is per image (Detectron1 used it per batch in training).
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
# Channels of the StandardRPNHead convs; [-1] means one conv as wide as its input.
_C.MODEL.RPN.CONV_DIMS = [-1]


# ---------------------------------------------------------------------------- #
# ROI HEADS options
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_HEADS = CN()
# A name in ROI_HEADS_REGISTRY: "Res5ROIHeads" (C4), "StandardROIHeads", "CascadeROIHeads".
_C.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
# Foreground classes (background not counted).
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
# Feature maps the box/mask/keypoint heads pool from.
_C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
# Proposal labelling by IoU with ground truth: < 0.5 background, >= 0.5 foreground.
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
# RoIs sampled per image for the losses, and the foreground fraction among them.
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25

# Inference: drop detections below this score, then per-class NMS at this IoU.
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
# Add the ground-truth boxes to the proposals in training.
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True


# ---------------------------------------------------------------------------- #
# Box Head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_BOX_HEAD = CN()
# A name in ROI_BOX_HEAD_REGISTRY ("FastRCNNConvFCHead"); "" for the C4 heads.
_C.MODEL.ROI_BOX_HEAD.NAME = ""
# "smooth_l1", "giou", "diou" or "ciou".
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
# Box coder weights (wx, wy, ww, wh); 10, 10, 5, 5 as in Detectron1.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
# Samples per bin in ROIAlign; 0 means adaptive (ceil(roi_size / output_size)).
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
# "ROIAlignV2" (aligned, half-pixel shift), "ROIAlign", "ROIPool" or "ROIAlignRotated".
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"

# Layers of FastRCNNConvFCHead: NUM_CONV convs of CONV_DIM channels, then NUM_FC fcs of FC_DIM.
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
# Norm of the convs: "", "GN", "SyncBN", ...
_C.MODEL.ROI_BOX_HEAD.NORM = ""
# One box regression for all classes instead of one per class.
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
# Train the second and later cascade stages on the previous stage's predicted boxes.
_C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False

# Sigmoid cross entropy (one binary classifier per class) instead of softmax.
_C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
# Federated loss (LVIS): only a sampled subset of classes takes part in the sigmoid loss.
_C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50


# ---------------------------------------------------------------------------- #
# Cascaded Box Head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_BOX_CASCADE_HEAD = CN()
# One box coder per stage, finer at each stage.
_C.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = (
    (10.0, 10.0, 5.0, 5.0),
    (20.0, 20.0, 10.0, 10.0),
    (30.0, 30.0, 15.0, 15.0),
)
# Foreground IoU threshold of each stage.
_C.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = (0.5, 0.6, 0.7)


# ---------------------------------------------------------------------------- #
# Mask Head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
# Convs before the upsampling deconv, and their width.
_C.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
_C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.NORM = ""
# One mask for all classes instead of one per class.
_C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
_C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"


# ---------------------------------------------------------------------------- #
# Keypoint Head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_KEYPOINT_HEAD = CN()
_C.MODEL.ROI_KEYPOINT_HEAD.NAME = "KRCNNConvDeconvUpsampleHead"
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
# Eight 3x3 convs of 512 channels, as in Detectron1.
_C.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = tuple(512 for _ in range(8))
_C.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17  # COCO person keypoints

# Images with fewer visible keypoints than this are dropped from training.
_C.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1
# Normalise the keypoint loss by the number of visible keypoints in the batch (True), or by
# the constant expected count per image, BATCH_SIZE_PER_IMAGE * NUM_KEYPOINTS *
# POSITIVE_FRACTION (False; LOSS_WEIGHT then usually needs tuning).
_C.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
_C.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlignV2"


# ---------------------------------------------------------------------------- #
# Semantic Segmentation Head
# ---------------------------------------------------------------------------- #
_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
# Label of pixels ignored by the loss (unlabelled pixels of the sem-seg maps).
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
# Stuff classes plus one class for all things in Panoptic FPN (COCO: 53 + 1).
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
# Channels of the per-level conv towers.
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
# Stride of the head's output, relative to the input image.
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0

_C.MODEL.PANOPTIC_FPN = CN()
# Scale of the instance (detection) losses relative to the semantic loss.
_C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0

# Combining instance and semantic outputs into a panoptic map at inference.
_C.MODEL.PANOPTIC_FPN.COMBINE = CN({"ENABLED": True})
_C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
_C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
_C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5


# ---------------------------------------------------------------------------- #
# RetinaNet Head
# ---------------------------------------------------------------------------- #
_C.MODEL.RETINANET = CN()

# Foreground classes.
_C.MODEL.RETINANET.NUM_CLASSES = 80

_C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]

# Convs in each of the classification and regression subnets.
_C.MODEL.RETINANET.NUM_CONVS = 4

# Anchor labelling: IoU < 0.4 negative, 0.4-0.5 ignored, >= 0.5 positive.
_C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
_C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]

# Initial foreground probability of the classifier (bias init), for stable focal-loss training.
_C.MODEL.RETINANET.PRIOR_PROB = 0.01

# Inference: score threshold, top candidates per level before NMS, NMS IoU.
_C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
_C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
_C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5

# Box coder weights.
_C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)

# Focal loss parameters.
_C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
_C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
_C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
# "smooth_l1" or "giou".
_C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"

# Norm of the head convs: "" or "BN", "SyncBN", "GN", ... (BN statistics are per level).
_C.MODEL.RETINANET.NORM = ""


# ---------------------------------------------------------------------------- #
# ResNet / ResNeXt options, for the backbone and for the res5 head of C4 models
# ---------------------------------------------------------------------------- #
_C.MODEL.RESNETS = CN()

_C.MODEL.RESNETS.DEPTH = 50
# Stages to output: "stem", "res2", ..., "res5". C4 models output res4 and use res5 in the head.
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]

# 1 for ResNet, > 1 for ResNeXt (e.g. 32 with WIDTH_PER_GROUP 8 for X-101-32x8d).
_C.MODEL.RESNETS.NUM_GROUPS = 1

# "FrozenBN", "GN", "SyncBN", "BN".
_C.MODEL.RESNETS.NORM = "FrozenBN"

# Bottleneck width of res2 = NUM_GROUPS * WIDTH_PER_GROUP; later stages double it.
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64

# Put the stride-2 in the 1x1 conv of each bottleneck (MSRA models) rather than the 3x3
# (torchvision / Facebook models).
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True

# Dilation of res5 (2 for the DilatedC5 models, which then keep stride 16).
_C.MODEL.RESNETS.RES5_DILATION = 1

# Output channels of res2; later stages double it. 64 for R18/R34.
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64

# Deformable convs in the 3x3 of the bottlenecks of res2..res5.
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
# Modulated (DCNv2) rather than plain (DCNv1) deformable convolution.
_C.MODEL.RESNETS.DEFORM_MODULATED = False
# Offset groups of the deformable convs.
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1


# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CN()

# "WarmupMultiStepLR", "WarmupCosineLR" or "WarmupStepWithFixedGammaLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"

_C.SOLVER.MAX_ITER = 40000

_C.SOLVER.BASE_LR = 0.001
# The end learning rate of the cosine schedule.
_C.SOLVER.BASE_LR_END = 0.0

_C.SOLVER.MOMENTUM = 0.9

_C.SOLVER.NESTEROV = False

_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of the normalisation layers' parameters.
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0

# Step schedule: multiply the learning rate by GAMMA at each iteration of STEPS.
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (30000,)
# Number of decays of WarmupStepWithFixedGammaLR.
_C.SOLVER.NUM_DECAYS = 3

# The warm-up ramps from BASE_LR * WARMUP_FACTOR to BASE_LR over WARMUP_ITERS iterations;
# WARMUP_METHOD is "linear" or "constant".
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"
# Whether to rescale the decay intervals of WarmupStepWithFixedGammaLR to the full schedule.
_C.SOLVER.RESCALE_INTERVAL = False

# Save a checkpoint every this many iterations.
_C.SOLVER.CHECKPOINT_PERIOD = 5000

# Images per batch across all workers; with 8 GPUs, 16 means 2 per GPU.
_C.SOLVER.IMS_PER_BATCH = 16

# If > 0, the number of workers the config was written for: on a different world size the
# batch size, learning rate and schedule are scaled linearly (DefaultTrainer.auto_scale_workers).
_C.SOLVER.REFERENCE_WORLD_SIZE = 0

# Learning rate and weight decay of biases: BASE_LR * BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS
# (None: same as WEIGHT_DECAY).
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.WEIGHT_DECAY_BIAS = None

# Gradient clipping: "value" clips each element to +-CLIP_VALUE; "norm" clips each parameter's
# gradient to norm CLIP_VALUE (NORM_TYPE: p of the norm, inf for the max norm).
_C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0

# Mixed-precision training (used by AMPTrainer).
_C.SOLVER.AMP = CN({"ENABLED": False})


# ---------------------------------------------------------------------------- #
# Test / evaluation options
# ---------------------------------------------------------------------------- #
_C.TEST = CN()
# Expected results for the regression tests: [[task, metric, value, tolerance], ...].
_C.TEST.EXPECTED_RESULTS = []
# Evaluate every this many training iterations; 0 disables periodic evaluation.
_C.TEST.EVAL_PERIOD = 0
# Per-keypoint sigmas of the COCO keypoint (OKS) evaluation; empty means the COCO defaults.
_C.TEST.KEYPOINT_OKS_SIGMAS = []
# Detections kept per image (after NMS).
_C.TEST.DETECTIONS_PER_IMAGE = 100

# Test-time augmentation: several short-edge sizes, optionally flipped.
_C.TEST.AUG = CN({"ENABLED": False})
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True

# Recompute BatchNorm statistics on NUM_ITER training batches before evaluating.
_C.TEST.PRECISE_BN = CN({"ENABLED": False})
_C.TEST.PRECISE_BN.NUM_ITER = 200


# ---------------------------------------------------------------------------- #
# Other options
# ---------------------------------------------------------------------------- #
# Where checkpoints, logs and evaluation results go.
_C.OUTPUT_DIR = "./output"
# Seed of every random generator; negative means a different random seed each run.
_C.SEED = -1
# Let cuDNN benchmark convolution algorithms (faster for fixed input sizes).
_C.CUDNN_BENCHMARK = False
# float32 matmul precision passed to torch.set_float32_matmul_precision ("" leaves it alone).
_C.FLOAT32_PRECISION = ""
# Visualise training inputs and proposals to the event storage every this many iterations;
# 0 disables it.
_C.VIS_PERIOD = 0

# Global config for quick hacks; research code may put anything here without touching the
# schema. Do not rely on it in library code.
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0


def get_cfg() -> CN:
    """A fresh, mutable copy of the default config (never the shared ``_C``)."""
    cfg = _C.clone()
    cfg.defrost()
    return cfg


# A process-wide config for quick research hacks (set by ``set_global_cfg``); library code must
# not read it, as Detectron2 recommends.
global_cfg = CN()


def set_global_cfg(cfg: CN) -> None:
    """Replace the content of :data:`global_cfg` with ``cfg`` (the same object stays shared).

    Use it for experiments only: ``from torchdet.config import global_cfg; print(global_cfg.X)``.
    """
    global_cfg.defrost()
    global_cfg.clear()
    global_cfg.update(cfg)
