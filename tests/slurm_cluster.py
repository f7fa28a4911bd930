"""A one-node SLURM cluster for the tests (tests/test_slurm.py): Debian's `slurm-wlm` and `munge`, started as
this process's own children on localhost, with a minimal slurm.conf written here (2 CPUs, one partition, no
cgroups, so that it runs in a container), and the sbatch / squeue / scontrol calls the tests make, each printed
as it runs (`pytest -s` shows them)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")

CONF = """\
ClusterName=gluebench
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
# cred_expire: a requeued job waits this long before it starts again (120 s by default: minutes of a test).
AuthInfo=socket={folder}/munge.sock,cred_expire=10
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
# No cgroups: a container has none to give. Processes are tracked by their parent (linuxproc).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
# As on a real cluster: SIGTERM, then SIGKILL 30 s later (a process that exits earlier ends it earlier).
KillWait=30
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    folder: Path
    env: dict  # os.environ with SLURM_CONF: what every SLURM command here runs with
    daemons: list = field(default_factory=list)

    def command(self, *args: str, env: dict | None = None, check: bool = True, echo: bool = True) -> str:
        """Run a SLURM command; print it and (echo) what it printed (the lines a closing note quotes)."""
        done = subprocess.run(args, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=60)
        out = (done.stdout + done.stderr).strip()
        print(f"$ {' '.join(args)}\n{out}" if out and echo else f"$ {' '.join(args)}", flush=True)
        if check and done.returncode:
            raise AssertionError(f"{args[0]} exited {done.returncode}: {out}")
        return done.stdout

    def sbatch(self, *args: str, env: dict | None = None) -> str:
        """Submit; the job id (for an array, the array's job id)."""
        return self.command("sbatch", "--parsable", *args, env=env).strip().split(";")[0]

    def queued(self, job: str) -> list[str]:
        """squeue's lines for the job (its array tasks): "JOBID STATE"; none once all have ended."""
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%i %T"], env=self.env, capture_output=True, text=True, timeout=60
        )
        return out.stdout.split("\n")[:-1] if out.returncode == 0 else []

    def wait_ended(self, job: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.queued(job):
            if time.monotonic() > end:
                self.command("squeue", "-j", job, check=False)
                raise AssertionError(f"job {job} still queued or running after {timeout:.0f}s")
            time.sleep(2)

    def tasks(self, job: str) -> dict[str, dict]:
        """`scontrol show job` per array task ("JOB_TASK", or the job id): its fields, and the line printed."""
        out = self.command("scontrol", "-o", "show", "job", job, echo=False)  # long lines: their fields below
        found = {}
        for line in out.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            name = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}" if "ArrayTaskId" in fields else fields["JobId"]
            found[name] = fields
        for name, fields in sorted(found.items()):
            print(
                f"scontrol: {name} JobId={fields['JobId']} JobState={fields['JobState']} "
                f"Reason={fields.get('Reason')} ExitCode={fields['ExitCode']} Restarts={fields.get('Restarts')} "
                f"RunTime={fields.get('RunTime')}",
                flush=True,
            )
        return found


def _wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.5)
    return False


def _start(cluster: Cluster, name: str, args: list[str]) -> None:
    log = (cluster.folder / f"{name}.out").open("w")
    cluster.daemons.append((name, subprocess.Popen(args, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)))


def _log_tails(folder: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        for path in sorted(folder.glob("*.out")) + sorted(folder.glob("*.log"))
    )


def running_cluster(folder: Path):
    """Start munged, slurmctld and slurmd as children of this process; yield the Cluster; stop them (by their
    own pids) and any job left. Skips when SLURM is not installed or this is not root (slurmd starts jobs as
    their user); a cluster that is installed but does not come up is an error, with the daemons' logs."""
    missing = [name for name in BINARIES if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} not found): apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("a one-node SLURM cluster needs root here (slurmd starts each job as its user)")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    host = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(CONF.format(host=host, folder=folder, ctld_port=_free_port(), slurmd_port=_free_port()))
    path = f"/usr/sbin:{os.environ.get('PATH', '')}"
    cluster = Cluster(folder, {**os.environ, "SLURM_CONF": str(conf), "PATH": path})
    key = folder / "munge.key"
    subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, env=cluster.env, capture_output=True)
    key.chmod(0o600)
    try:
        _start(
            cluster,
            "munged",
            ["munged", "-F", "--force", f"--socket={folder}/munge.sock", f"--key-file={key}"]
            + [f"--log-file={folder}/munged.log", f"--pid-file={folder}/munged.pid", f"--seed-file={folder}/seed"],
        )
        if not _wait(lambda: (folder / "munge.sock").exists(), 20):
            pytest.fail(f"munged did not start\n{_log_tails(folder)}")
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-c", "-f", str(conf)])
        _start(cluster, "slurmd", ["slurmd", "-D", "-f", str(conf), "-N", host])

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=cluster.env, capture_output=True, text=True)
            return out.stdout.strip() == "idle"

        if not _wait(idle, 60):
            pytest.fail(f"the SLURM node did not become idle in 60 s\n{_log_tails(folder)}")
        cluster.command("sinfo")
        yield cluster
    finally:
        # Jobs left by a failed test: cancelled, and given SLURM's KillWait to go, before slurmd goes.
        subprocess.run(["scancel", "--full", "--user", "root"], env=cluster.env, capture_output=True)
        _wait(lambda: not subprocess.run(["squeue", "-h"], env=cluster.env, capture_output=True).stdout.strip(), 40)
        for _, daemon in reversed(cluster.daemons):
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
