"""A real single-node SLURM (munge + slurmctld + slurmd) started for these tests and stopped by pid.

The daemons come from Debian's slurm-wlm and munge (`make test` installs them); the scripts beside this
file are ../shared/recipes/slurm's. Jobs run as root on localhost with 2 CPUs.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    if shutil.which("slurmctld") is None or shutil.which("munged") is None and not Path("/usr/sbin/munged").exists():
        pytest.fail("SLURM is not installed: `make test` installs it (apt-get install slurm-wlm munge)")
    # not under pytest's tmp (mode 0700): munged runs as the munge user and must reach its socket folder
    base = Path(tempfile.mkdtemp(prefix="mwc-slurm-", dir="/tmp"))
    base.chmod(0o755)
    env = dict(os.environ, BASE=str(base))
    subprocess.run(["bash", str(HERE / "slurm_up.sh")], env=env, check=True, capture_output=True, timeout=60)
    os.environ["SLURM_CONF"] = str(base / "slurm.conf")
    try:
        yield base
    finally:
        subprocess.run(["bash", str(HERE / "slurm_down.sh")], env=env, capture_output=True, timeout=60)
        os.environ.pop("SLURM_CONF", None)
        shutil.rmtree(base, ignore_errors=True)


def job_state(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", job_id, "-o"], capture_output=True, text=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def wait_for(
    job_id: str,
    states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"),
    timeout: float = 300,
) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = job_state(job_id)
        if info.get("JobState") in states:
            return info
        if info.get("JobState") == "PENDING" and int(info.get("Restarts", "0")) > 0:
            # SLURM holds a requeued job ~2 minutes before it may start: let it start now (when, not what, it runs)
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job_state(job_id).get('JobState')} after {timeout} s")


def sbatch(*args: str, env: dict | None = None, cwd: Path | None = None) -> str:
    out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]
