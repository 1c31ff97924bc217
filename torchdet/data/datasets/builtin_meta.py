"""Category tables of the builtin datasets and the metadata dicts derived from them.

Facts only: COCO panoptic categories (ids, names, ``isthing`` and the visualisation colours of
panopticapi's ``panoptic_coco_categories.json``), the 17 COCO person keypoints with their
horizontal-flip pairs and drawing rules, the 19 Cityscapes train classes and the 150 ADE20K
SceneParsing classes.

Dataset ids are those of the annotation files; models use contiguous ids ``[0, K)``. For
"separated" panoptic (Panoptic FPN) the semantic head predicts ``things`` (id 0) plus the stuff
classes, so the stuff map sends dataset id 0 to 0 and stuff class i to i + 1.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COCO_CATEGORIES",
    "COCO_PERSON_KEYPOINT_NAMES",
    "COCO_PERSON_KEYPOINT_FLIP_MAP",
    "KEYPOINT_CONNECTION_RULES",
    "CITYSCAPES_CATEGORIES",
    "ADE20K_SEM_SEG_CATEGORIES",
    "get_builtin_metadata",
    "_get_builtin_metadata",
]

# (id, isthing, colour RGB, name); 80 things then 53 stuff classes, sorted by id
# fmt: off
_COCO_TABLE = [
    (1, 1, (220, 20, 60), "person"), (2, 1, (119, 11, 32), "bicycle"),
    (3, 1, (0, 0, 142), "car"), (4, 1, (0, 0, 230), "motorcycle"),
    (5, 1, (106, 0, 228), "airplane"), (6, 1, (0, 60, 100), "bus"),
    (7, 1, (0, 80, 100), "train"), (8, 1, (0, 0, 70), "truck"),
    (9, 1, (0, 0, 192), "boat"), (10, 1, (250, 170, 30), "traffic light"),
    (11, 1, (100, 170, 30), "fire hydrant"), (13, 1, (220, 220, 0), "stop sign"),
    (14, 1, (175, 116, 175), "parking meter"), (15, 1, (250, 0, 30), "bench"),
    (16, 1, (165, 42, 42), "bird"), (17, 1, (255, 77, 255), "cat"),
    (18, 1, (0, 226, 252), "dog"), (19, 1, (182, 182, 255), "horse"),
    (20, 1, (0, 82, 0), "sheep"), (21, 1, (120, 166, 157), "cow"),
    (22, 1, (110, 76, 0), "elephant"), (23, 1, (174, 57, 255), "bear"),
    (24, 1, (199, 100, 0), "zebra"), (25, 1, (72, 0, 118), "giraffe"),
    (27, 1, (255, 179, 240), "backpack"), (28, 1, (0, 125, 92), "umbrella"),
    (31, 1, (209, 0, 151), "handbag"), (32, 1, (188, 208, 182), "tie"),
    (33, 1, (0, 220, 176), "suitcase"), (34, 1, (255, 99, 164), "frisbee"),
    (35, 1, (92, 0, 73), "skis"), (36, 1, (133, 129, 255), "snowboard"),
    (37, 1, (78, 180, 255), "sports ball"), (38, 1, (0, 228, 0), "kite"),
    (39, 1, (174, 255, 243), "baseball bat"), (40, 1, (45, 89, 255), "baseball glove"),
    (41, 1, (134, 134, 103), "skateboard"), (42, 1, (145, 148, 174), "surfboard"),
    (43, 1, (255, 208, 186), "tennis racket"), (44, 1, (197, 226, 255), "bottle"),
    (46, 1, (171, 134, 1), "wine glass"), (47, 1, (109, 63, 54), "cup"),
    (48, 1, (207, 138, 255), "fork"), (49, 1, (151, 0, 95), "knife"),
    (50, 1, (9, 80, 61), "spoon"), (51, 1, (84, 105, 51), "bowl"),
    (52, 1, (74, 65, 105), "banana"), (53, 1, (166, 196, 102), "apple"),
    (54, 1, (208, 195, 210), "sandwich"), (55, 1, (255, 109, 65), "orange"),
    (56, 1, (0, 143, 149), "broccoli"), (57, 1, (179, 0, 194), "carrot"),
    (58, 1, (209, 99, 106), "hot dog"), (59, 1, (5, 121, 0), "pizza"),
    (60, 1, (227, 255, 205), "donut"), (61, 1, (147, 186, 208), "cake"),
    (62, 1, (153, 69, 1), "chair"), (63, 1, (3, 95, 161), "couch"),
    (64, 1, (163, 255, 0), "potted plant"), (65, 1, (119, 0, 170), "bed"),
    (67, 1, (0, 182, 199), "dining table"), (70, 1, (0, 165, 120), "toilet"),
    (72, 1, (183, 130, 88), "tv"), (73, 1, (95, 32, 0), "laptop"),
    (74, 1, (130, 114, 135), "mouse"), (75, 1, (110, 129, 133), "remote"),
    (76, 1, (166, 74, 118), "keyboard"), (77, 1, (219, 142, 185), "cell phone"),
    (78, 1, (79, 210, 114), "microwave"), (79, 1, (178, 90, 62), "oven"),
    (80, 1, (65, 70, 15), "toaster"), (81, 1, (127, 167, 115), "sink"),
    (82, 1, (59, 105, 106), "refrigerator"), (84, 1, (142, 108, 45), "book"),
    (85, 1, (196, 172, 0), "clock"), (86, 1, (95, 54, 80), "vase"),
    (87, 1, (128, 76, 255), "scissors"), (88, 1, (201, 57, 1), "teddy bear"),
    (89, 1, (246, 0, 122), "hair drier"), (90, 1, (191, 162, 208), "toothbrush"),
    (92, 0, (255, 255, 128), "banner"), (93, 0, (147, 211, 203), "blanket"),
    (95, 0, (150, 100, 100), "bridge"), (100, 0, (168, 171, 172), "cardboard"),
    (107, 0, (146, 112, 198), "counter"), (109, 0, (210, 170, 100), "curtain"),
    (112, 0, (92, 136, 89), "door-stuff"), (118, 0, (218, 88, 184), "floor-wood"),
    (119, 0, (241, 129, 0), "flower"), (122, 0, (217, 17, 255), "fruit"),
    (125, 0, (124, 74, 181), "gravel"), (128, 0, (70, 70, 70), "house"),
    (130, 0, (255, 228, 255), "light"), (133, 0, (154, 208, 0), "mirror-stuff"),
    (138, 0, (193, 0, 92), "net"), (141, 0, (76, 91, 113), "pillow"),
    (144, 0, (255, 180, 195), "platform"), (145, 0, (106, 154, 176), "playingfield"),
    (147, 0, (230, 150, 140), "railroad"), (148, 0, (60, 143, 255), "river"),
    (149, 0, (128, 64, 128), "road"), (151, 0, (92, 82, 55), "roof"),
    (154, 0, (254, 212, 124), "sand"), (155, 0, (73, 77, 174), "sea"),
    (156, 0, (255, 160, 98), "shelf"), (159, 0, (255, 255, 255), "snow"),
    (161, 0, (104, 84, 109), "stairs"), (166, 0, (169, 164, 131), "tent"),
    (168, 0, (225, 199, 255), "towel"), (171, 0, (137, 54, 74), "wall-brick"),
    (175, 0, (135, 158, 223), "wall-stone"), (176, 0, (7, 246, 231), "wall-tile"),
    (177, 0, (107, 255, 200), "wall-wood"), (178, 0, (58, 41, 149), "water-other"),
    (180, 0, (183, 121, 142), "window-blind"), (181, 0, (255, 73, 97), "window-other"),
    (184, 0, (107, 142, 35), "tree-merged"), (185, 0, (190, 153, 153), "fence-merged"),
    (186, 0, (146, 139, 141), "ceiling-merged"), (187, 0, (70, 130, 180), "sky-other-merged"),
    (188, 0, (134, 199, 156), "cabinet-merged"), (189, 0, (209, 226, 140), "table-merged"),
    (190, 0, (96, 36, 108), "floor-other-merged"), (191, 0, (96, 96, 96), "pavement-merged"),
    (192, 0, (64, 170, 64), "mountain-merged"), (193, 0, (152, 251, 152), "grass-merged"),
    (194, 0, (208, 229, 228), "dirt-merged"), (195, 0, (206, 186, 171), "paper-merged"),
    (196, 0, (152, 161, 64), "food-other-merged"),
    (197, 0, (116, 112, 0), "building-other-merged"),
    (198, 0, (0, 114, 143), "rock-merged"), (199, 0, (102, 102, 156), "wall-other-merged"),
    (200, 0, (250, 141, 255), "rug-merged"),
]
# fmt: on

#: The 133 COCO panoptic categories as dicts with ``id``, ``name``, ``isthing`` and ``color``.
COCO_CATEGORIES: list[dict[str, Any]] = [
    {"color": list(color), "isthing": isthing, "id": cid, "name": name}
    for cid, isthing, color, name in _COCO_TABLE
]

# fmt: off
COCO_PERSON_KEYPOINT_NAMES = (
    "nose",
    "left_eye", "right_eye",
    "left_ear", "right_ear",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)
# fmt: on

#: Keypoint pairs exchanged by a horizontal flip.
COCO_PERSON_KEYPOINT_FLIP_MAP = tuple(
    (f"left_{part}", f"right_{part}")
    for part in ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle")
)

#: (keypoint a, keypoint b, RGB colour): the limbs a visualiser draws between keypoints.
KEYPOINT_CONNECTION_RULES = [
    # face
    ("left_ear", "left_eye", (102, 204, 255)),
    ("right_ear", "right_eye", (51, 153, 255)),
    ("left_eye", "nose", (102, 0, 204)),
    ("nose", "right_eye", (51, 102, 255)),
    # upper body
    ("left_shoulder", "right_shoulder", (255, 128, 0)),
    ("left_shoulder", "left_elbow", (153, 255, 204)),
    ("right_shoulder", "right_elbow", (128, 229, 255)),
    ("left_elbow", "left_wrist", (153, 255, 153)),
    ("right_elbow", "right_wrist", (102, 255, 224)),
    # lower body
    ("left_hip", "right_hip", (255, 102, 0)),
    ("left_hip", "left_knee", (255, 255, 77)),
    ("right_hip", "right_knee", (153, 255, 204)),
    ("left_knee", "left_ankle", (191, 255, 128)),
    ("right_knee", "right_ankle", (255, 195, 77)),
]

# (label id, train id, isthing, colour RGB, name) of the 19 evaluated Cityscapes classes
# fmt: off
_CITYSCAPES_TABLE = [
    (7, 0, 0, (128, 64, 128), "road"), (8, 1, 0, (244, 35, 232), "sidewalk"),
    (11, 2, 0, (70, 70, 70), "building"), (12, 3, 0, (102, 102, 156), "wall"),
    (13, 4, 0, (190, 153, 153), "fence"), (17, 5, 0, (153, 153, 153), "pole"),
    (19, 6, 0, (250, 170, 30), "traffic light"), (20, 7, 0, (220, 220, 0), "traffic sign"),
    (21, 8, 0, (107, 142, 35), "vegetation"), (22, 9, 0, (152, 251, 152), "terrain"),
    (23, 10, 0, (70, 130, 180), "sky"), (24, 11, 1, (220, 20, 60), "person"),
    (25, 12, 1, (255, 0, 0), "rider"), (26, 13, 1, (0, 0, 142), "car"),
    (27, 14, 1, (0, 0, 70), "truck"), (28, 15, 1, (0, 60, 100), "bus"),
    (31, 16, 1, (0, 80, 100), "train"), (32, 17, 1, (0, 0, 230), "motorcycle"),
    (33, 18, 1, (119, 11, 32), "bicycle"),
]
# fmt: on

#: The 19 Cityscapes classes with ``id`` (label id), ``trainId``, ``isthing``, ``color``, ``name``.
CITYSCAPES_CATEGORIES: list[dict[str, Any]] = [
    {"color": color, "isthing": isthing, "id": cid, "trainId": train_id, "name": name}
    for cid, train_id, isthing, color, name in _CITYSCAPES_TABLE
]

#: The 150 ADE20K SceneParsing classes; label i + 1 of the raw PNGs is class i (0 is ignored and
#: becomes 255 in ``annotations_detectron2``).
# fmt: off
ADE20K_SEM_SEG_CATEGORIES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road, route", "bed", "window ",
    "grass", "cabinet", "sidewalk, pavement", "person", "earth, ground", "door", "table",
    "mountain, mount", "plant", "curtain", "chair", "car", "water", "painting, picture", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock, stone", "wardrobe, closet, press", "lamp", "tub", "rail", "cushion",
    "base, pedestal, stand", "box", "column, pillar", "signboard, sign",
    "chest of drawers, chest, bureau, dresser", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator, icebox", "grandstand, covered stand", "path", "stairs", "runway",
    "case, display case, showcase, vitrine", "pool table, billiard table, snooker table",
    "pillow", "screen door, screen", "stairway, staircase", "river", "bridge, span", "bookcase",
    "blind, screen", "coffee table",
    "toilet, can, commode, crapper, pot, potty, stool, throne", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm, palm tree", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel, hut, hutch, shack, shanty", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning, sunshade, sunblind",
    "street lamp", "booth", "tv", "plane", "dirt track", "clothes", "pole",
    "land, ground, soil", "bannister, banister, balustrade, balusters, handrail",
    "escalator, moving staircase, moving stairway", "ottoman, pouf, pouffe, puff, hassock",
    "bottle", "buffet, counter, sideboard", "poster, posting, placard, notice, bill, card",
    "stage", "van", "ship", "fountain",
    "conveyer belt, conveyor belt, conveyer, conveyor, transporter", "canopy",
    "washer, automatic washer, washing machine", "plaything, toy", "pool", "stool",
    "barrel, cask", "basket, handbasket", "falls", "tent", "bag", "minibike, motorbike",
    "cradle", "oven", "ball", "food, solid food", "step, stair", "tank, storage tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket, cover", "sculpture", "hood, exhaust hood", "sconce", "vase", "traffic light",
    "tray", "trash can", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board",
    "shower", "radiator", "glass, drinking glass", "clock", "flag",
]
# fmt: on


def _coco_instances_meta() -> dict[str, Any]:
    things = [c for c in COCO_CATEGORIES if c["isthing"] == 1]
    return {
        # the non-contiguous COCO ids (1..90) to [0, 80)
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "thing_classes": [c["name"] for c in things],
        "thing_colors": [c["color"] for c in things],
    }


def _coco_panoptic_separated_meta() -> dict[str, Any]:
    stuff = [c for c in COCO_CATEGORIES if c["isthing"] == 0]
    # contiguous id 0 is the extra "things" class of the semantic head
    stuff_map = {c["id"]: i + 1 for i, c in enumerate(stuff)}
    stuff_map[0] = 0
    ret = {
        "stuff_dataset_id_to_contiguous_id": stuff_map,
        "stuff_classes": ["things"]
        + [c["name"].replace("-other", "").replace("-merged", "") for c in stuff],
        # an arbitrary colour for the "things" class
        "stuff_colors": [[82, 18, 128]] + [c["color"] for c in stuff],
    }
    ret.update(_coco_instances_meta())
    return ret


def _coco_panoptic_standard_meta() -> dict[str, Any]:
    # All 133 classes share one contiguous space [0, 133) listed under both thing_* and stuff_*,
    # which is what the panoptic visualiser and Panoptic-DeepLab expect.
    names = [c["name"] for c in COCO_CATEGORIES]
    colors = [c["color"] for c in COCO_CATEGORIES]
    return {
        "thing_classes": names,
        "thing_colors": colors,
        "stuff_classes": list(names),
        "stuff_colors": list(colors),
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(COCO_CATEGORIES) if c["isthing"]
        },
        "stuff_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(COCO_CATEGORIES) if not c["isthing"]
        },
    }


def get_builtin_metadata(dataset_name: str) -> dict[str, Any]:
    """Metadata dict of a builtin dataset family.

    Args:
        dataset_name: one of "coco", "coco_panoptic_separated", "coco_panoptic_standard",
            "coco_person", "cityscapes".

    Returns:
        Fresh dict (safe to modify) of metadata keys such as ``thing_classes``.

    Raises:
        KeyError: unknown family.
    """
    if dataset_name == "coco":
        return _coco_instances_meta()
    if dataset_name == "coco_panoptic_separated":
        return _coco_panoptic_separated_meta()
    if dataset_name == "coco_panoptic_standard":
        return _coco_panoptic_standard_meta()
    if dataset_name == "coco_person":
        return {
            "thing_classes": ["person"],
            "keypoint_names": COCO_PERSON_KEYPOINT_NAMES,
            "keypoint_flip_map": COCO_PERSON_KEYPOINT_FLIP_MAP,
            "keypoint_connection_rules": KEYPOINT_CONNECTION_RULES,
        }
    if dataset_name == "cityscapes":
        return {
            "thing_classes": [c["name"] for c in CITYSCAPES_CATEGORIES if c["isthing"]],
            "stuff_classes": [c["name"] for c in CITYSCAPES_CATEGORIES],
        }
    raise KeyError(
        f"No built-in metadata for dataset '{dataset_name}'; known: coco, "
        "coco_panoptic_separated, coco_panoptic_standard, coco_person, cityscapes"
    )


# Detectron2's (private) spelling, kept for code ported from it.
_get_builtin_metadata = get_builtin_metadata
