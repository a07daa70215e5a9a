"""The SLURM profile: what every job asks for, in a dry run and from a real one-node SLURM on this machine.

The real test starts munged, slurmctld and slurmd (Debian's packages; `.ci/run` installs them) with a config it
writes to /etc/slurm (the executor plugin's job step ignores SLURM_CONF), runs the tiny demo through
`--profile profiles/slurm`, reads what each job requested from `scontrol show job`, and stops the daemons.
It skips, saying why, where it cannot: not root, packages missing, or a SLURM configuration of someone else's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, snakemake, tiny_demo_config

pytest.importorskip("snakemake_executor_plugin_slurm")

PROFILES = ROOT / "profiles"


def _jobs(stdout: str) -> dict[str, list[dict]]:
    """rule -> its jobs in a dry run: {'threads': n, resource: value, ...} each."""
    jobs: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?(?:rule|checkpoint) )", stdout):
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, flags=re.M)
        res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, flags=re.M)
        if rule and res:
            job = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
            job["threads"] = int(threads.group(1)) if threads else 1
            jobs.setdefault(rule.group(1), []).append(job)
    return jobs


def test_slurm_dry_run_asks_for_what_each_job_uses(tmp_path):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["extract"]["run"].update(decode_workers=3, threads=2)
    cfg["train"].update(threads=2, num_workers=1)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = snakemake(ROOT, tmp_path, "--profile", str(PROFILES / "slurm"), "-n", "--cores", "64",
                    "results/demo/metrics.json").stdout
    jobs = _jobs(out)
    for shard in jobs["extract_shard"]:  # 3 decode processes + 2 torch threads
        assert shard["threads"] == 5 and shard["gpu"] == "1" and shard["slurm_partition"] == "gpu", shard
        assert shard["mem_mb"] == "2500" and shard["runtime"] == "30", shard  # the tiny backbone's figures
    assert "--workers 3" in out and "--threads 2 " in out
    assert len(jobs["train"]) == 3
    for train in jobs["train"] + jobs["predict"]:
        assert train["gpu"] == "1" and train["slurm_partition"] == "gpu" and "mem_mb" in train, train
    assert all(t["threads"] == 3 for t in jobs["train"])  # 2 torch threads + 1 DataLoader worker
    for rule in ("demo_data_demo", "evaluate_run", "random_baseline"):  # CPU-only jobs: CPU partition, no GPU
        for job in jobs[rule]:
            assert job["slurm_partition"] == "cpu" and "gpu" not in job and "mem_mb" in job, (rule, job)


def test_profiles_document_every_key():
    for name in ("default", "slurm"):
        lines = (PROFILES / name / "config.yaml").read_text().splitlines()
        for i, line in enumerate(lines):
            # every key, nested ones too, has a comment right above it (or above the block it opens)
            if re.match(r"^\s*[a-z_-]+:", line):
                above = lines[i - 1].strip()
                assert above.startswith("#") or above.endswith(":"), f"profiles/{name}: {line!r} has no comment"


def test_default_profile_does_not_override_the_slurm_profile():
    """Snakemake reads profiles/default (the workflow profile) under `--profile profiles/slurm` too, and its
    keys win: a key in both would silently replace the SLURM value."""
    default = yaml.safe_load((PROFILES / "default" / "config.yaml").read_text())
    slurm = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    assert not set(default) & set(slurm), sorted(set(default) & set(slurm))
    from snakemake.cli import parse_args

    _, args = parse_args(["-s", str(ROOT / "Snakefile"), "--profile", str(PROFILES / "slurm"), "-n"])
    assert args.executor == "slurm" and args.latency_wait == slurm["latency-wait"]
    assert args.retries == default["retries"]  # the workflow profile's keys apply too


# --- a real SLURM on this machine --------------------------------------------------------------------------
CONF_DIR = Path("/etc/slurm")
MARK = "# written by tests/test_slurm.py"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


def _why_no_slurm() -> str | None:
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root (CI runs as root)"
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing:
        return (f"{', '.join(missing)} not installed (apt-get install --no-install-recommends slurmctld slurmd "
                "slurm-client munge; .ci/run does it)")
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and MARK not in conf.read_text(errors="replace"):
        return f"{conf} exists and is not this test's: a real SLURM configuration is left alone"
    if not Path("/etc/munge/munge.key").is_file():
        return "/etc/munge/munge.key missing (the munge package creates it)"
    return None


def _slurm_conf(state: Path, host: str) -> str:
    # The node offers 16 CPUs and 16 GB whatever this machine has (config_overrides): the tiny jobs use far less
    # than they ask, and their requests are what the test checks. Two GPUs without hardware (gres.conf gives
    # /dev/null and /dev/zero as their device files), so the two extraction shards can run at once.
    return f"""{MARK}
ClusterName=sdsttest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""


def _run(*cmd, check=False, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """A one-node SLURM (partitions cpu and gpu, two fake GPUs) on this machine, stopped afterwards."""
    why = _why_no_slurm()
    if why:
        pytest.skip(f"no local SLURM: {why}")
    state = tmp_path_factory.mktemp("slurm")
    (state / "ctld").mkdir()
    (state / "d").mkdir()
    host = socket.gethostname().split(".")[0]
    written = []
    for name, text in (("slurm.conf", _slurm_conf(state, host)),
                       ("gres.conf", f"{MARK}\nAutoDetect=off\nName=gpu File=/dev/null\nName=gpu File=/dev/zero\n")):
        path = CONF_DIR / name
        if path.exists() and MARK not in path.read_text(errors="replace"):
            pytest.skip(f"no local SLURM: {path} exists and is not this test's")
        CONF_DIR.mkdir(exist_ok=True)
        path.write_text(text)
        written.append(path)
    started: list[subprocess.Popen] = []

    def start(cmd, log, **kw):
        p = subprocess.Popen(cmd, stdout=open(state / log, "w"), stderr=subprocess.STDOUT, **kw)
        started.append(p)
        return p

    try:
        if _run("munge", "-n").returncode != 0:  # no munged answering yet: start one as the munge user
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            start(["munged", "--foreground"], "munged.out", user="munge", group="munge")
            for _ in range(50):
                if _run("munge", "-n").returncode == 0:
                    break
                time.sleep(0.1)
        start(["slurmctld", "-D", "-i"], "slurmctld.out")
        start(["slurmd", "-D"], "slurmd.out")
        deadline = time.monotonic() + 60
        while set(_run("sinfo", "-h", "-N", "-o", "%T").stdout.split()) != {"idle"}:  # one line per partition
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                logs = "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(state.glob("*.log*"))
                                 + sorted(state.glob("*.out")))
                pytest.fail(f"the local SLURM did not come up: sinfo says "
                            f"{_run('sinfo', '-N').stdout!r}\n{logs}")
            time.sleep(0.5)
        yield state
    finally:
        _run("scancel", "--user", "root")  # jobs of this test's cluster only: it is the only one configured here
        for _ in range(40):
            if not _run("squeue", "-h").stdout.strip():
                break
            time.sleep(0.5)
        for p in reversed(started):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for path in written:
            path.unlink(missing_ok=True)


def slurm_jobs() -> list[dict]:
    """Every job slurmctld knows (finished ones stay MinJobAge = 1 h), as scontrol's key=value fields."""
    out = _run("scontrol", "show", "job", "-o", check=True).stdout
    jobs = []
    for line in out.splitlines():
        if line.strip() and not line.startswith("No jobs"):
            jobs.append(dict(re.findall(r"(\w+(?:/\w+)?)=(\S*)", line)))
    return jobs


def mem_mb(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MGT]?)", value).groups()
    return int(number) * {"": 1, "M": 1, "G": 1024, "T": 1024**2}[unit]


@pytest.mark.slow
def test_real_slurm_jobs_request_what_they_use(local_slurm, tiny_demo, tmp_path):
    # extraction: 2 decode processes + 2 torch threads; training: 1 torch thread + 1 DataLoader worker
    cfg = tiny_demo_config(threads=1, num_workers=1)
    cfg["extract"]["run"].update(decode_workers=2, threads=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(tiny_demo, tmp_path / "resources")
    targets = ["results/demo/extraction.json", "results/demo/sdst/seed0/train_summary.json",
               "results/demo/random_baseline/metrics.json"]
    # no accounting database here: job states come from squeue, and there is no account to guess
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory",
           str(tmp_path), "--profile", str(PROFILES / "slurm"), "--slurm-status-command", "squeue",
           "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-keep-successful-logs", *targets]
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=480)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the SLURM run took over 8 min:\n{(err.stdout or b'')[-3000:]}\n{(err.stderr or b'')[-3000:]}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]

    jobs = {}
    for job in slurm_jobs():
        rule = re.match(r"rule_(\w+?)(?:_wildcards_|$)", job.get("Comment", ""))
        if rule:
            jobs.setdefault(rule.group(1), []).append(job)
    # the localrules (store creation, summary, copy) ran on this node; everything else was submitted (the demo's
    # videos were copied in, so demo_data did not run)
    assert sorted(jobs) == ["extract_shard", "random_baseline", "train"], sorted(jobs)
    assert [len(jobs["extract_shard"]), len(jobs["train"])] == [2, 1]
    for rule, rule_jobs in jobs.items():
        for job in rule_jobs:
            assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (rule, job)

    def requested(job, mem):
        """(partition, CPUs, memory, time limit, GPUs); the memory relative to `mem`, as the plugin adds 1-2 MB
        to the request of an array job (room for its task list)."""
        gpus = re.fullmatch(r"gres:gpu:(\d+)", job.get("TresPerJob", ""))
        extra = mem_mb(job["MinMemoryNode"]) - mem
        return (job["Partition"], int(job["NumCPUs"]), extra if not 0 < extra <= 16 else 0, job["TimeLimit"],
                int(gpus.group(1)) if gpus else 0)

    for job in jobs["extract_shard"]:  # 2 decode processes + 2 torch threads, one GPU, the tiny figures
        assert requested(job, 2500) == ("gpu", 4, 0, "00:30:00", 1), job
    assert requested(jobs["train"][0], 1500) == ("gpu", 2, 0, "00:30:00", 1), jobs["train"][0]
    assert requested(jobs["random_baseline"][0], 1000) == ("cpu", 1, 0, "00:15:00", 0), jobs["random_baseline"][0]

    extraction = json.loads((tmp_path / "results/demo/extraction.json").read_text())
    assert extraction["videos"]["total"] == 10 and extraction["videos"]["failed"] == 0
    summary = json.loads((tmp_path / "results/demo/sdst/seed0/train_summary.json").read_text())
    assert summary["epochs"] == 2 and (tmp_path / "results/demo/sdst/seed0/checkpoint_best.pt").is_file()
    baseline = json.loads((tmp_path / "results/demo/random_baseline/metrics.json").read_text())
    assert baseline
    # each job ran with the settings it asked CPUs for
    shard_logs = "".join(p.read_text() for p in (tmp_path / "logs/slurm").rglob("*.log"))
    assert "--workers 2" in shard_logs and "--threads 2 " in shard_logs and "--num-workers 1" in shard_logs
