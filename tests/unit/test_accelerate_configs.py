"""Every file in accelerate_configs/ loads through accelerate's own config loader and says what we document;
each is launched by a test where this machine can run it (LAUNCHED_BY names the test)."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

ROOT = Path(__file__).parents[2]
CONFIGS = sorted(p.name for p in (ROOT / "accelerate_configs").glob("*.yaml"))

# file -> (distributed type, processes, machines, DeepSpeed ZeRO stage or None, the test that launches it)
EXPECTED = {
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1, None, "tests/distributed/test_train_2proc.py::test_launch_wrapper_cpu"),
    "single_gpu.yaml": ("NO", 1, 1, None, "tests/distributed/test_launch_configs.py"),
    "multi_gpu.yaml": ("MULTI_GPU", 8, 1, None, "tests/distributed/test_launch_configs.py (--num_processes 2)"),
    "multi_node.yaml": ("MULTI_GPU", 16, 2, None, "tests/multinode/test_two_nodes.py (sbatch --nodes=2)"),
    "zero2.yaml": (
        "DEEPSPEED",
        2,
        1,
        2,
        "tests/distributed/test_train_2proc.py::test_deepspeed_matches_ddp_and_resumes",
    ),
    "zero2_offload.yaml": ("DEEPSPEED", 2, 1, 2, "tests/distributed/test_launch_configs.py"),
    "zero3.yaml": ("DEEPSPEED", 2, 1, 3, "tests/distributed/test_deepspeed_guard.py"),
}


def test_every_file_is_known():
    assert CONFIGS == sorted(EXPECTED)


@pytest.mark.parametrize("name", CONFIGS)
def test_loads_with_accelerates_loader(name):
    cfg = load_config_from_file(str(ROOT / "accelerate_configs" / name))
    kind, processes, machines, stage, launched_by = EXPECTED[name]
    assert (str(getattr(cfg.distributed_type, "value", cfg.distributed_type)), cfg.num_processes, cfg.num_machines) == (
        kind,
        processes,
        machines,
    )
    assert (
        str(getattr(cfg.mixed_precision, "value", cfg.mixed_precision)) == "no"
    )  # precision comes from train.mixed_precision (tests/distributed/test_precision.py)
    if stage is not None:
        assert cfg.deepspeed_config["zero_stage"] == stage
        # "auto": filled from the mwc config (dist.build_accelerator), never two sources of truth
        assert cfg.deepspeed_config["gradient_accumulation_steps"] == "auto"
        assert cfg.deepspeed_config["gradient_clipping"] == "auto"
    if name == "zero2_offload.yaml":
        assert cfg.deepspeed_config["offload_optimizer_device"] == "cpu"
    # the named test launches it, directly or through the script it runs (launch/train.sh, slurm/train.sbatch)
    test_file = ROOT / launched_by.split("::")[0].split(" ")[0]
    assert test_file.is_file()
    texts = [
        test_file.read_text(),
        (ROOT / "launch" / "train.sh").read_text(),
        (ROOT / "slurm" / "train.sbatch").read_text(),
    ]
    assert any(name in t for t in texts)
