"""A real single-node SLURM cluster for tests: munged + slurmctld + slurmd, all bound to 127.0.0.1.

Started by the ``slurm_cluster`` fixture (tests/test_slurm.py) when Debian's ``slurmctld``, ``slurmd``, ``munge``
and ``slurm-client`` packages are installed (``.ci/run`` installs them). Everything lives in a temporary folder
(own munge key and socket, own ports, state, spool and logs); the daemons are stopped by PID at teardown.

The executor plugin's inner ``srun`` does not pass ``SLURM_CONF`` on, so ``/etc/slurm/slurm.conf`` is pointed at
this cluster's file while it runs (an existing file is moved aside and restored), under a lock so that two test
sessions on one machine do not fight over it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
LOCK = Path("/tmp/adaspx-slurm-test.lock")
# Partition names match profiles/slurm/config.yaml; the node has no GPU, so "gpu" is a partition without GPUs.
PARTITIONS = ("cpu", "gpu")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


SLURM_CONF = """\
ClusterName=adaspxtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
# squeue must still see finished jobs when Snakemake polls (the plugin wants >= 3 x its first status interval)
MinJobAge=3600
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} RealMemory=64000 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: int = 30) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)

    def slurmd_log(self) -> str:
        log = self.root / "slurmd.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def slurmctld_log(self) -> str:
        log = self.root / "slurmctld.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def logs(self) -> str:
        return f"--- slurmctld.log\n{self.slurmctld_log()[-3000:]}\n--- slurmd.log\n{self.slurmd_log()[-3000:]}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def slurm_cluster(root: Path, cpus: int | None = None, start_timeout: float = 60) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd under ``root``; yield the cluster; stop them (by PID) on exit."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    munge_socket = root / "munge" / "munge.socket"
    ctld_port, slurmd_port = _free_ports(2)
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            root=root,
            munge_socket=munge_socket,
            ctld_port=ctld_port,
            slurmd_port=slurmd_port,
            cpus=cpus or os.cpu_count() or 1,
        )
    )
    cluster = SlurmCluster(root=root, conf=conf)
    LOCK.touch(exist_ok=True)
    with open(LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        backup = None
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            backup = SYSTEM_CONF.with_name(f"slurm.conf.adaspx-test-{os.getpid()}")
            SYSTEM_CONF.rename(backup)
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(conf)
        try:
            daemons = {
                "munged": [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--key-file={key}",
                    f"--socket={munge_socket}",
                    f"--pid-file={root}/munge/munged.pid",
                    f"--log-file={root}/munge/munged.log",
                    f"--seed-file={root}/munge/munged.seed",
                ],  # fmt: skip
                "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],
                "slurmd": ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
            }
            for name, cmd in daemons.items():
                out = open(root / f"{name}.stdout", "w")  # noqa: SIM115 (closed with the process)
                cluster.procs[name] = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=cluster.env, start_new_session=True
                )
                if name == "munged":
                    _wait(lambda: munge_socket.exists(), start_timeout, "munged socket", cluster)
                if name == "slurmctld":
                    _wait(lambda: cluster.run("scontrol", "ping").returncode == 0, start_timeout, "slurmctld", cluster)
            _wait(lambda: _node_idle(cluster), start_timeout, "node localhost to become idle", cluster)
            yield cluster
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                if name in cluster.procs:
                    _stop(cluster.procs[name])
            if SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF) == str(conf):
                SYSTEM_CONF.unlink()
            if backup is not None:
                backup.rename(SYSTEM_CONF)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _node_idle(cluster: SlurmCluster) -> bool:
    proc = cluster.run("sinfo", "-h", "-N", "-o", "%T")
    return proc.returncode == 0 and proc.stdout.split() != [] and all(s == "idle" for s in proc.stdout.split())


def _wait(predicate, timeout: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                out = (cluster.root / f"{name}.stdout").read_text(errors="replace")
                raise RuntimeError(
                    f"{name} exited ({proc.returncode}) while waiting for {what}:\n{out}\n{cluster.logs()}"
                )
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{cluster.logs()}")
