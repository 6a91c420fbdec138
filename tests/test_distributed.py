"""Two local processes (jax.distributed on 127.0.0.1, gloo CPU collectives) train like one process."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import injected_main
import test_train
import xla_flags
from iml_jax import evaluate, preemption, sharding
from test_experiment import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
  out, port = str(tmp_path / "two_processes.npz"), _free_port()
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])}
  workers = [
    subprocess.Popen(
      [sys.executable, os.path.join(HERE, "distributed_worker.py"), str(i), str(port), out],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  logs = [w.communicate(timeout=240)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], "\n".join(logs)
  two = np.load(out)

  mesh = test_train._one_device_mesh()
  model, state, step, layout = test_train._setup(
    mesh, rules="fsdp", opt=test_train.blocks.optimizer(name="sgd", lr=0.5)
  )
  losses = []
  for i in range(3):
    state, loss = step(state, {k: sharding.put_global_batch(v, layout[k]) for k, v in test_train._batch(i).items()})
    losses.append(float(loss))
  np.testing.assert_allclose(two["losses"], losses, rtol=1e-5)
  for path, value in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params)):
    np.testing.assert_allclose(two[jax.tree_util.keystr(path)], value, atol=1e-5)
  prompts = test_train._batch(7)["tokens"][:6, :5]
  np.testing.assert_array_equal(
    two["generated"], evaluate.generate(model, state.params, prompts, 4, 3, 0, mesh, sharding.rules_for("fsdp"))
  )


# slow (two tiny runs, one of them as two processes, on 2 cores): run with `-m slow`
@pytest.mark.slow
def test_two_processes_write_one_bucket_workdir_like_one_local_process(gcs, tmp_path):
  """A pod's workdir in a bucket (tests/fake_gcs.py): both processes write their checkpoint shards into it,
  process 0 everything else, and the results are those of one local process on as many devices."""
  command = [
    sys.executable,
    "-m",
    "iml_jax.main",
    "--config=configs/default.py:tiny",
    "--config.progress_bar=False",
    "--config.n_seeds=1",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags.for_tests(devices=2)}
  port = _free_port()
  workers = [
    subprocess.Popen(
      command + ["--workdir=gs://bucket/pod", "--distributed"],
      cwd=ROOT,
      text=True,
      env={**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)},
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
    )
    for i in range(2)
  ]
  logs = [w.communicate(timeout=300)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)
  single = subprocess.run(
    command + [f"--workdir={tmp_path}"],
    cwd=ROOT,
    env={**env, "XLA_FLAGS": xla_flags.for_tests(devices=4)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert single.returncode == 0, single.stderr[-3000:]
  for name in ("results.csv", "summary.json", "seed_0/s2seed_0/stage2/predictions.jsonl"):
    assert gcs.read(f"gs://bucket/pod/{name}") == (tmp_path / name).read_bytes(), name
  shards = {n.split("/")[6] for n in gcs.names(prefix="pod/seed_0/stage1/checkpoints/") if "/params/ocdbt." in n}
  assert shards == {"ocdbt.process_0", "ocdbt.process_1"}


# tiny, one seed, a line per step; stage 1 = 80 steps: a SIGTERM at step 3 lands mid-stage (JAX polls once a second)
TINY = [
  "--config=configs/default.py:tiny",
  "--config.progress_bar=False",
  "--config.n_seeds=1",
  "--config.log_every=1",
  "--config.stages.stage1.epochs=4",
]


def _main_on_two_processes(workdir, faults_to_inject=(None, None), events=False) -> list:
  """`python -m iml_jax.main --distributed` as the 2 processes of one run on this machine (2 CPU devices each),
  each process's output in workdir.<process>.log; through tests/injected_main.py, with
  IML_JAX_FAULT per process; `events`: each process's steps and collectives logged to workdir.<process>.events."""
  port = _free_port()
  processes = []
  for i, fault in enumerate(faults_to_inject):
    env = {k: v for k, v in os.environ.items() if k != "IML_JAX_FAULT"}
    env.update(
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=xla_flags.for_tests(devices=2),
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID=str(i),
      **({"IML_JAX_FAULT": fault} if fault else {}),
    )
    launcher = [os.path.join(HERE, "injected_main.py"), *([f"--events={workdir}.{i}.events"] if events else [])]
    with open(f"{workdir}.{i}.log", "w") as log:
      command = [sys.executable, *launcher, *TINY, f"--workdir={workdir}", "--distributed"]
      processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
  return processes


def _finish(workdir, processes) -> tuple[list, list]:
  """Both processes' exit statuses and outputs."""
  statuses = [p.wait(timeout=300) for p in processes]
  return statuses, [open(f"{workdir}.{i}.log").read() for i in range(len(processes))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight") / "run"
  statuses, logs = _finish(workdir, _main_on_two_processes(workdir, events=True))
  assert statuses == [0, 0], "\n".join(log[-3000:] for log in logs)
  return {
    "results": (workdir / "results.csv").read_bytes(),
    "events": [open(f"{workdir}.{i}.events").read().split() for i in range(2)],
  }


def test_a_distributed_run_makes_no_collective_between_steps(uninterrupted):
  """The SIGTERM check after each step is JAX's preemption sync point, no collective: between two steps there is
  none, but where the step ends with an evaluation or a checkpoint, or is a stage's first (one all-gather).
  Process 0's log: only it reaches the `eval` phase (it writes the evaluations); process 1 makes the same calls."""
  events, other = uninterrupted["events"]
  named = lambda log: [e for e in log if e in injected_main.COLLECTIVES]
  assert named(events) == named(other)
  after_each_step = " ".join(events).split("train_step")[1:]
  plain = [s.split() for s in after_each_step if not {"eval", "checkpoint_saved", "stage_done"} & set(s.split())]
  assert len(plain) > 70, events  # of 84 steps (stage 1: 80, stage 2: 4)
  collectives = [len(named(between)) for between in plain]
  assert sum(collectives) <= 2 and max(collectives) <= 1, collectives  # a stage's first step at most


def _stopped(workdir, statuses, logs) -> tuple[int | None, str]:
  """The step (None: before it started) and stage at which both processes stopped, exit status 143; a step's
  checkpoint is saved."""
  assert statuses == [preemption.PREEMPTED_EXIT_STATUS] * 2, "\n".join(log[-3000:] for log in logs)
  assert not any("Traceback" in log for log in logs)
  stops = [re.findall(r"iml_jax: preempted \(SIGTERM\) (?:at step (\d+) of|before) ([\w/]+)", log) for log in logs]
  assert len(stops[0]) == 1 and stops[0] == stops[1], "\n".join(log[-3000:] for log in logs)
  step, label = stops[0][0]
  if step:
    assert os.path.isdir(workdir / label / "checkpoints" / step)
  return int(step) if step else None, label


def test_sigterm_to_one_process_checkpoints_one_step_on_both(tmp_path):
  """Only process 1 is preempted (it sends itself SIGTERM after its 3rd step): JAX's preemption notice reaches
  process 0 through the coordination service, both save the same step and exit 143 (resumed: the slow test)."""
  workdir = tmp_path / "run"
  step, label = _stopped(workdir, *_finish(workdir, _main_on_two_processes(workdir, (None, "train_step:3:TERM"))))
  assert label == "seed_0/stage1" and 3 <= step < 80


def _wait_for_line(path, text, processes, timeout=240):
  deadline = time.time() + timeout
  while not (os.path.exists(path) and text in open(path).read()):
    assert all(p.poll() is None for p in processes) and time.time() < deadline, f"no {text!r} in {path}"
    time.sleep(0.05)


# slow (four two-process runs besides the uninterrupted one, on 2 cores): run with `-m slow`
@pytest.mark.slow
def test_sigterm_to_both_processes_while_starting_up_or_between_stages_stops_both_and_the_rerun_finishes(
  tmp_path, uninterrupted
):
  """Preempted three times, the run resumes each time and ends with the uninterrupted run's results."""
  workdir = tmp_path / "run"
  processes = _main_on_two_processes(workdir)
  _wait_for_line(f"{workdir}.0.log", "seed_0/stage1: step 5/", processes)
  for process in processes:
    os.kill(process.pid, signal.SIGTERM)
  assert _stopped(workdir, *_finish(workdir, processes))[1] == "seed_0/stage1"

  # process 0 is preempted while it starts, before jax.distributed replaced our SIGTERM handler by JAX's
  stopped = _stopped(workdir, *_finish(workdir, _main_on_two_processes(workdir, ("start:1:TERM", None))))
  assert stopped == (None, "seed_0/stage1")

  # process 1 right after stage 1: JAX synchronised the notice on stage 1's steps, which stage 2 does not reach
  # (its steps start again at 0); the check at stage 2's start or first step stops both
  stopped = _stopped(workdir, *_finish(workdir, _main_on_two_processes(workdir, (None, "stage_done:1:TERM"))))
  assert stopped[1] == "seed_0/s2seed_0/stage2"  # before it or at step 1 (2 or 3 on a machine fast enough)

  statuses, logs = _finish(workdir, _main_on_two_processes(workdir))
  assert statuses == [0, 0], "\n".join(log[-3000:] for log in logs)
  assert (workdir / "results.csv").read_bytes() == uninterrupted["results"]
