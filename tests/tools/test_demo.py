"""The inference demo: images, folders, globs and videos in; drawings and predictions.json out."""

from __future__ import annotations

import json
import os

import cv2
import pytest
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import get_cfg
from torchdet.data.datasets.synthetic import generate_shapes_dataset
from torchdet.model_zoo import get_config_file
from torchdet.modeling import build_model
from torchdet.tools import demo

SIZE_OPTS = ["INPUT.MIN_SIZE_TEST", "96", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.fixture(autouse=True)
def _forget_registered_datasets():
    """Registrations are global: drop the datasets a test registered (other tests use other
    folders under the same names)."""
    from torchdet.data import DatasetCatalog, MetadataCatalog

    before = set(DatasetCatalog.list())
    yield
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    root = tmp / "shapes"
    generate_shapes_dataset(root, 1, split="train", image_size_range=((96, 96), (96, 96)))
    generate_shapes_dataset(root, 3, split="val", image_size_range=((96, 112), (96, 128)))
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("quickstart/mask_rcnn_R50_FPN_shapes.yaml"))
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp)).save("tiny")
    return root, str(tmp / "tiny.pth")


def run(args, weights):
    return demo.main(
        demo.get_parser().parse_args(args + ["--opts", "MODEL.WEIGHTS", weights] + SIZE_OPTS)
    )


def test_images_folder_glob_and_predictions_json(tiny_setup, tmp_path):
    root, weights = tiny_setup
    images = root / "val" / "images"
    names = sorted(os.listdir(images))
    out = tmp_path / "out"
    args = [
        "--config-file",
        "quickstart/mask_rcnn_R50_FPN_shapes.yaml",
        "--shapes-root",
        str(root),
        "--input",
        str(images / names[0]),  # a file
        str(images),  # a folder (the file again: kept once)
        str(images / "*.jpg"),  # a glob
        "--output",
        str(out),
        "--confidence-threshold",
        "0.0",
    ]
    records = run(args, weights)
    assert [os.path.basename(r["file_name"]) for r in records] == names
    saved = json.loads((out / "predictions.json").read_text())
    assert len(saved) == 3
    for rec, name in zip(saved, names):
        src = cv2.imread(str(images / name))
        drawn = cv2.imread(str(out / name))
        assert drawn.shape == src.shape == (rec["height"], rec["width"], 3)
        for inst in rec["instances"]:
            x0, y0, x1, y1 = inst["bbox"]
            assert 0 <= x0 <= x1 <= rec["width"] and 0 <= y0 <= y1 <= rec["height"]
            assert inst["category_name"] == ["circle", "square", "triangle"][inst["category_id"]]
            assert inst["segmentation"]["size"] == [rec["height"], rec["width"]]
            assert 0.0 <= inst["score"] <= 1.0
        if rec["instances"]:  # something was drawn
            assert (drawn.astype(int) != src.astype(int)).any()


def test_video_input(tiny_setup, tmp_path):
    root, weights = tiny_setup
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (128, 96))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    img = cv2.resize(cv2.imread(str(sorted((root / "val" / "images").glob("*.jpg"))[0])), (128, 96))
    for _ in range(3):
        writer.write(img)
    writer.release()
    out = tmp_path / "vout"
    args = ["--config-file", "quickstart/mask_rcnn_R50_FPN_shapes.yaml"]
    args += ["--video-input", str(video), "--output", str(out), "--confidence-threshold", "0.0"]
    assert run(args, weights) == 3
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 3


def test_bad_arguments(tiny_setup, tmp_path):
    _, weights = tiny_setup
    cfg = ["--config-file", "quickstart/mask_rcnn_R50_FPN_shapes.yaml"]
    with pytest.raises(FileNotFoundError, match="nothing|no such"):
        run(cfg + ["--input", str(tmp_path / "nope*.png")], weights)
    with pytest.raises(ValueError, match="exactly one"):
        run(cfg + ["--input", "a.jpg", "--webcam"], weights)
    with pytest.raises(ValueError, match="need --output"):
        run(cfg + ["--webcam"], weights)
    with pytest.raises(ValueError, match="confidence"):
        run(cfg + ["--input", "a.jpg", "--confidence-threshold", "2"], weights)


def test_visualize_data_annotation_and_dataloader(tiny_setup, tmp_path):
    from torchdet.tools import visualize_data

    root, _ = tiny_setup
    base = ["--config-file", "quickstart/mask_rcnn_R50_FPN_shapes.yaml", "--shapes-root", str(root)]
    out = visualize_data.main(
        visualize_data.get_parser().parse_args(
            base + ["--source", "annotation", "--output-dir", str(tmp_path / "a")]
        )
    )
    assert len(out) == 1  # the train split has one image
    src = cv2.imread(str(root / "train" / "images" / os.path.basename(out[0])))
    drawn = cv2.imread(out[0])
    assert drawn.shape == src.shape and (drawn != src).any()
    args = base + ["--source", "dataloader", "--output-dir", str(tmp_path / "b")]
    args += [
        "--max-images",
        "2",
        "--opts",
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "SOLVER.IMS_PER_BATCH",
        "2",
    ]
    out = visualize_data.main(visualize_data.get_parser().parse_args(args))
    assert len(out) == 2
    assert min(cv2.imread(out[0]).shape[:2]) == 64  # the loader's resized image


def test_visualize_json_results(tiny_setup, tmp_path):
    from torchdet.tools import visualize_json_results as vjr

    root, _ = tiny_setup
    gt = json.loads((root / "val" / "instances.json").read_text())
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]
    results.append(
        {"image_id": gt["images"][0]["id"], "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1}
    )
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    args = ["--input", str(path), "--dataset", "shapes_val", "--output", str(tmp_path / "o")]
    args += ["--shapes-root", str(root)]
    out = vjr.main(vjr.get_parser().parse_args(args))
    assert len(out) == 3
    first = gt["images"][0]
    drawn = cv2.imread(out[0])
    assert drawn.shape == (first["height"], 2 * first["width"], 3)
    inst = vjr.create_instances(results, (first["height"], first["width"]), 0.5, {1: 0, 2: 1, 3: 2})
    assert len(inst) == len(gt["annotations"])  # the 0.1-score box is dropped
    with pytest.raises(KeyError, match="category id 9"):
        vjr.create_instances(
            [{"bbox": [0, 0, 1, 1], "score": 1.0, "category_id": 9}], (5, 5), 0.5, {1: 0}
        )
