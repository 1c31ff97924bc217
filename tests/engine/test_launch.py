"""launch() with two CPU processes (gloo): the comm helpers, and data-parallel training that
matches single-process training with the full batch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_comm_helpers_in_two_processes(tmp_path):
    _run([str(HERE / "_dist_comm.py"), str(tmp_path), "2"])
    r = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    for i in range(2):
        assert r[i]["rank"] == i and r[i]["world_size"] == 2
        assert r[i]["local_rank"] == i and r[i]["local_size"] == 2
        assert r[i]["is_main"] == (i == 0)
        assert r[i]["all_gather"] == [{"r": 0}, {"r": 1}]
        assert r[i]["backend"] == "gloo"
    assert r[1]["gather"] == [0, 10] and r[0]["gather"] == []  # only on dst
    assert r[0]["seed"] == r[1]["seed"]  # although each rank seeded numpy differently
    # reduce_dict averages on rank 0 (keys sorted): a = 10, b = (1 + 2) / 2
    assert r[0]["reduced"] == {"a": 10.0, "b": 1.5}
    assert r[0]["summed"] == 3.0


def _losses(out: Path) -> dict:
    return json.loads((out / "losses.json").read_text())


def test_two_processes_half_batch_match_one_process_full_batch(tmp_path):
    script = str(HERE / "_tiny_train.py")
    common = ["--deterministic", "--max-iter", "5", "--period", "100", "--batch", "4"]
    _run([script, "--output", str(tmp_path / "one"), *common])
    _run([script, "--output", str(tmp_path / "two"), "--num-procs", "2", *common])
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert set(one) == set(two) == {"total_loss", "loss_mse", "loss_l1"}
    for k in one:
        assert [i for _, i in two[k]] == list(range(5))
        # Each rank sees 2 of the 4 images; its loss is their mean, the logged loss the mean
        # over ranks, and DDP averages the gradients: the same numbers as the full batch.
        for (a, _), (b, _) in zip(one[k], two[k], strict=True):
            assert b == pytest.approx(a, rel=1e-5, abs=1e-7)
    # Training moved the weights (the losses are not all equal).
    assert len({round(v, 4) for v, _ in one["total_loss"]}) > 1


@pytest.mark.slow
def test_proposal_network_two_processes_match_one(tmp_path, shapes_dir, parity_dir):
    """A real model: the narrow ResNet-50/FPN ProposalNetwork of the parity config, trained 3
    iterations on shapes (same-size images, every anchor used, so nothing depends on how the
    batch is split): 2 processes x 1 image give the losses of 1 process x 2 images.
    """
    script = str(HERE / "_rpn_train.py")
    common = ["--shapes", str(shapes_dir), "--max-iter", "3"]
    common += ["--parity-config", str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "config.yaml")]
    _run([script, "--output", str(tmp_path / "one"), *common])
    _run([script, "--output", str(tmp_path / "two"), "--num-procs", "2", *common])
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert set(one) == {"total_loss", "loss_rpn_cls", "loss_rpn_loc"} == set(two)
    for k in one:
        assert len(one[k]) == 3
        assert two[k] == pytest.approx(one[k], rel=1e-4)
    assert one["total_loss"][2] < one["total_loss"][0]  # the weights moved
