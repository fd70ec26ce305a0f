"""Two nodes on one machine, for real: Linux network namespaces as nodes, and a two-node SLURM on them.

`nodes_up.sh` makes namespaces mwcn1/mwcn2 (10.77.0.1/.2 on a bridge; this host is 10.77.0.254) that share the
filesystem as cluster nodes share NFS; `slurm2_up.sh` starts slurmctld here and one slurmd per namespace. The tests
talk only to those addresses. Where namespaces cannot be made (not root, no `ip`, a container without
CAP_NET_ADMIN) the tests skip and say why.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cluster import NODE_IPS

HERE = Path(__file__).parent


def _stop_processes_in(namespace: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-9", pid], capture_output=True)


@pytest.fixture(scope="session")
def nodes():
    if os.geteuid() != 0:
        pytest.skip("two-node tests need root to make network namespaces (ip netns add)")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("two-node tests need iproute2's `ip` and util-linux's `nsenter`")
    up = subprocess.run(["bash", str(HERE / "nodes_up.sh"), "2"], capture_output=True, text=True, timeout=60)
    if up.returncode != 0:
        subprocess.run(["bash", str(HERE / "nodes_down.sh"), "2"], capture_output=True, timeout=60)
        pytest.skip(f"network namespaces are not available here: {up.stderr.strip()[-300:]}")
    try:
        yield NODE_IPS
    finally:
        for ns in ("mwcn1", "mwcn2"):
            _stop_processes_in(ns)
        subprocess.run(["bash", str(HERE / "nodes_down.sh"), "2"], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def slurm2(nodes):
    """A two-node SLURM; yields the environment that talks to it (SLURM_CONF is never set process-wide here)."""
    if shutil.which("slurmctld") is None or not Path("/usr/sbin/munged").exists():
        pytest.fail("SLURM is not installed: `make test` installs it (apt-get install slurm-wlm munge)")
    base = Path(tempfile.mkdtemp(prefix="mwc-slurm2-", dir="/tmp"))
    base.chmod(0o755)  # munged runs as the munge user and must reach its socket folder
    env = dict(os.environ, BASE=str(base))
    up = subprocess.run(["bash", str(HERE / "slurm2_up.sh")], env=env, capture_output=True, text=True, timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield dict(os.environ, SLURM_CONF=str(base / "slurm.conf"))
    finally:
        subprocess.run(["bash", str(HERE / "slurm2_down.sh")], env=env, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
