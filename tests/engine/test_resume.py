"""Acceptance tests of exact resume: a training process killed with SIGKILL and resumed with
``DefaultTrainer.resume_or_load(resume=True)`` ends with bitwise the same weights as an
uninterrupted run. The runs are subprocesses of ``_tiny_train.py`` (a tiny model whose
dropout, flip and noise augmentations draw from torch's, python's and numpy's generators).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("_tiny_train.py")
MAX_ITER, PERIOD = 12, 4


def _run(out: Path, *args: str, expect_kill: bool = False) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--output", str(out), "--max-iter", str(MAX_ITER)]
    cmd += ["--period", str(PERIOD), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if expect_kill:
        assert proc.returncode == -signal.SIGKILL, proc.stdout[-3000:] + proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _weights(out: Path) -> dict:
    return torch.load(out / "final_weights.pt", weights_only=True)


def _bitwise_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    _run(out)
    return out


def test_sigkill_and_resume_is_bitwise_exact(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    _run(out, "--kill-at", "6", expect_kill=True)  # iterations 4 and 5 are lost
    assert (out / "last_checkpoint").read_text() == "model_0000003.pth"
    control = tmp_path / "control"
    shutil.copytree(out, control)

    _run(out, "--resume")
    assert _bitwise_equal(_weights(out), _weights(uninterrupted))
    # The resumed run's losses (iterations 4..11) are those of the uninterrupted run.
    full = json.loads((uninterrupted / "losses.json").read_text())["total_loss"]
    resumed = json.loads((out / "losses.json").read_text())["total_loss"]
    assert [i for _, i in resumed] == list(range(4, MAX_ITER))
    assert resumed == full[4:]

    # Control: the same resume without the saved generator states diverges, so the equality
    # above is owed to them (and this test would catch their loss).
    ckpt_path = control / "model_0000003.pth"
    ckpt = torch.load(ckpt_path, weights_only=True)
    del ckpt["trainer"]["_trainer"]["rng_states"]
    torch.save(ckpt, ckpt_path)
    _run(control, "--resume")
    assert not _bitwise_equal(_weights(control), _weights(uninterrupted))


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(uninterrupted, tmp_path):
    out = tmp_path / "killed_in_save"
    _run(out, "--kill-in-save", "2", expect_kill=True)  # while writing model_0000007.pth
    assert (out / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (out / "model_0000007.pth").exists()
    ckpt = torch.load(out / "model_0000003.pth", weights_only=True)  # complete and loadable
    assert ckpt["iteration"] == 3 and ckpt["trainer"]["iteration"] == 3
    _run(out, "--resume")
    assert _bitwise_equal(_weights(out), _weights(uninterrupted))


def test_seeded_runs_are_reproducible(uninterrupted, tmp_path):
    out = tmp_path / "again"
    _run(out)
    assert _bitwise_equal(_weights(out), _weights(uninterrupted))


def test_nan_loss_stops_training(tmp_path):
    out = tmp_path / "nan"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--output", str(out), "--nan-at", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "FloatingPointError: Loss became infinite or NaN at iteration=5" in proc.stderr
    assert "Non-finite terms: {'loss_l1': nan}" in proc.stderr


@pytest.mark.slow
def test_two_process_sigkill_and_resume_is_bitwise_exact(tmp_path):
    """Every rank's generators are gathered into the checkpoint and each rank restores its own."""
    full, killed = tmp_path / "full2", tmp_path / "killed2"
    _run(full, "--num-procs", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--output", str(killed), "--max-iter", str(MAX_ITER)]
    cmd += ["--period", str(PERIOD), "--num-procs", "2", "--kill-at", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0  # the launcher reports its killed workers
    ckpt = torch.load(killed / "model_0000003.pth", weights_only=True)["trainer"]["_trainer"]
    assert len(ckpt["rng_states"]) == 2
    assert ckpt["data_loader"]["sampler"]["num_yielded"] == 4 * 2  # per rank: 4 iterations x 2
    _run(killed, "--num-procs", "2", "--resume")
    assert _bitwise_equal(_weights(killed), _weights(full))


@pytest.mark.slow
def test_sigkill_and_resume_with_workers_and_grouping_is_bitwise_exact(tmp_path):
    """2 DataLoader workers and aspect-ratio grouping: items are seeded by stream position and
    the images waiting in the grouping buckets are checkpointed and read again on resume.
    """
    opts = ("--workers", "2", "--grouping")
    full, killed = tmp_path / "full_wg", tmp_path / "killed_wg"
    _run(full, *opts)
    _run(killed, *opts, "--kill-at", "6", expect_kill=True)
    loader_state = torch.load(killed / "model_0000003.pth", weights_only=True)["trainer"]
    loader_state = loader_state["_trainer"]["data_loader"]
    assert loader_state["sampler"]["num_yielded"] == 4 * 4  # 4 iterations x 4 images
    (grouping,) = loader_state["grouping"]  # one rank
    waiting = len(grouping["pending"][0]) + len(grouping["pending"][1])
    assert waiting > 0 and grouping["next_position"] == 16 + waiting  # images were waiting
    _run(killed, *opts, "--resume")
    assert _bitwise_equal(_weights(killed), _weights(full))
    full_losses = json.loads((full / "losses.json").read_text())["total_loss"]
    resumed = json.loads((killed / "losses.json").read_text())["total_loss"]
    assert resumed == full_losses[4:]


@pytest.mark.slow
def test_two_process_resume_with_workers_and_grouping_is_bitwise_exact(tmp_path):
    """Each rank's grouping buckets are gathered into the checkpoint; each rank restores its own."""
    opts = ("--num-procs", "2", "--workers", "2", "--grouping")
    full, killed = tmp_path / "full2wg", tmp_path / "killed2wg"
    _run(full, *opts)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--output", str(killed), "--max-iter", str(MAX_ITER)]
    cmd += ["--period", str(PERIOD), *opts, "--kill-at", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0  # the launcher reports its killed workers
    ckpt = torch.load(killed / "model_0000003.pth", weights_only=True)["trainer"]["_trainer"]
    assert len(ckpt["data_loader"]["grouping"]) == 2  # one state per rank
    _run(killed, *opts, "--resume")
    assert _bitwise_equal(_weights(killed), _weights(full))
