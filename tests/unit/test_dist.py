"""SLURM's variables -> torch's, and the device a SLURM task uses."""

import os

import pytest

from mwc_dist.dist import check_precision, local_device_index, slurm_env_to_torch


@pytest.mark.parametrize(
    "env, want",
    [
        ({"SLURM_LOCALID": "3", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, 3),  # every task sees the node's GPUs
        ({"SLURM_LOCALID": "3", "CUDA_VISIBLE_DEVICES": "5"}, 0),  # --gpu-bind: task 3 sees only its GPU, as cuda:0
        ({"SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "2,3", "SLURM_GPUS_PER_TASK": "2"}, 0),  # --gpus-per-task=2
        ({"SLURM_LOCALID": "1"}, 1),  # no GPUs named (CPU): the local id
    ],
)
def test_local_device_index(monkeypatch, env, want):
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what the code under test sets must not leak
    for var in ("SLURM_LOCALID", "CUDA_VISIBLE_DEVICES", "SLURM_GPUS_PER_TASK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert local_device_index() == want


def test_slurm_tasks_become_torch_ranks(monkeypatch):
    monkeypatch.setattr(os, "environ", os.environ.copy())  # slurm_env_to_torch sets RANK etc.: never in the real one
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_GPUS_PER_TASK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_NNODES": "2",
        "CUDA_VISIBLE_DEVICES": "6",
    }.items():
        monkeypatch.setenv(k, v)
    slurm_env_to_torch()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "0")
    assert "MASTER_ADDR" not in os.environ  # two nodes: it must come from the batch script (NodeAddr), not a guess


def test_fp16_on_cpu_names_the_key_and_the_alternative():
    with pytest.raises(ValueError, match=r"train.mixed_precision=fp16 .*train.mixed_precision=bf16"):
        check_precision("fp16", use_cpu=True)
    check_precision("fp16", use_cpu=False)
    check_precision("bf16", use_cpu=True)
