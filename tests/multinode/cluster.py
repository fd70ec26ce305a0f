"""Helpers of the two-node tests: run a command on a node, follow a SLURM job of the two-node cluster."""

import subprocess
import time

NODE_IPS = ("10.77.0.1", "10.77.0.2")


def on_node(i: int, cmd: list[str]) -> list[str]:
    """`cmd` run "on node i" (1-based): in its network namespace, same filesystem."""
    return ["nsenter", f"--net=/var/run/netns/mwcn{i}", *cmd]


def job_state(job_id: str, env: dict) -> dict:
    out = subprocess.run(["scontrol", "show", "job", job_id, "-o"], capture_output=True, text=True, env=env).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def wait_for_job(job_id: str, env: dict, timeout: float = 300) -> dict:
    """The job's final state. A requeued job waits ~2 minutes before it may start again (SLURM's requeue delay):
    the test lets it start now (`scontrol update StartTime=now`), which changes when it runs, not what it does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = job_state(job_id, env)
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        if info.get("JobState") == "PENDING" and int(info.get("Restarts", "0")) > 0:
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env, capture_output=True)
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job_state(job_id, env).get('JobState')} after {timeout} s")
