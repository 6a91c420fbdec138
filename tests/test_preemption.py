"""Killed anywhere, a rerun finishes with exactly the outputs of an uninterrupted run; SIGTERM checkpoints."""

import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.numpy

from iml_jax import preemption
from test_experiment import ROOT

# the logs too: a step a killed process logged and the resumed one replays is recorded once
OUTPUTS = (
  "results.csv",
  "summary.json",
  "metrics.jsonl",
  *(
    f"{stage}/{name}"
    for stage in ("seed_0/stage1", "seed_0/s2seed_0/stage2")
    for name in ("eval.jsonl", "predictions.jsonl", "DONE")
  ),
)


def command(workdir, fault=None):
  """The tiny default, one seed: stage 1 = 8 steps (epochs of 4), stage 2 = 4 steps (epochs of 2); a checkpoint
  every 2 steps. A `fault` (tests/injected_main.py) runs it through the injecting launcher."""
  return [
    sys.executable,
    *([os.path.join(os.path.dirname(__file__), "injected_main.py")] if fault else ["-m", "iml_jax.main"]),
    "--config=configs/default.py:tiny",
    f"--workdir={workdir}",
    "--config.progress_bar=False",
    "--config.n_seeds=1",
    "--config.checkpoint.every_steps=2",
  ]


def run(workdir, fault=None):
  env = {k: v for k, v in os.environ.items() if k != "IML_JAX_FAULT"}
  if fault:
    env["IML_JAX_FAULT"] = fault
  return subprocess.run(command(workdir, fault), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  result = run(workdir)
  assert result.returncode == 0, result.stderr
  return {name: open(workdir / name).read() for name in OUTPUTS}


def assert_same_outputs(workdir, expected):
  for name, text in expected.items():
    assert open(os.path.join(workdir, name)).read() == text, name


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_killed_at_every_phase_then_resumed_equals_uninterrupted(tmp_path, uninterrupted):
  """Each process dies at the next point (counted within that process); the last rerun finishes."""
  chain = [
    ("train_step:3", "mid stage 1, after the step-2 checkpoint"),
    ("checkpoint_saved:1", "right after a checkpoint (step 4), before its evaluation is followed up"),
    ("eval:1", "after the epoch-2 evaluation of stage 1 was appended, before its checkpoint"),
    ("stage_done:1", "between the stages: stage 1 DONE, stage 2 not started"),
    ("train_step:1", "at the first step of stage 2"),
    ("eval:1:TERM", "preempted (SIGTERM) at the first evaluation of stage 2"),
    ("report:1", "during the final report: results.csv written, summary.json not yet"),
  ]
  for fault, where in chain:
    result = run(tmp_path, fault)
    expected_status = preemption.PREEMPTED_EXIT_STATUS if fault.endswith("TERM") else -signal.SIGKILL
    assert result.returncode == expected_status, f"{fault} ({where}): {result.stderr[-2000:]}"
    if fault == "train_step:3":  # a checkpoint write killed half-way leaves Orbax's temporary directory
      (tmp_path / "seed_0" / "stage1" / "checkpoints" / "4.orbax-checkpoint-tmp-1234" / "params").mkdir(parents=True)
    if fault == "stage_done:1":
      assert os.path.exists(tmp_path / "seed_0" / "stage1" / "DONE")
      assert not os.path.exists(tmp_path / "seed_0" / "s2seed_0" / "stage2")
    if fault.endswith("TERM"):
      assert "preempted (SIGTERM) at step 2 of seed_0/s2seed_0/stage2" in result.stderr
  result = run(tmp_path)
  assert result.returncode == 0, result.stderr
  assert_same_outputs(tmp_path, uninterrupted)
  assert not any("orbax-checkpoint-tmp" in name for name in os.listdir(tmp_path / "seed_0" / "stage1" / "checkpoints"))


def _start_and_wait_for_training(workdir):
  process = subprocess.Popen(command(workdir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not os.path.exists(os.path.join(workdir, "seed_0", "stage1", "eval.jsonl")):
    assert process.poll() is None and time.time() < deadline, process.communicate()
    time.sleep(0.05)
  return process


def test_real_sigkill_then_rerun_equals_uninterrupted(tmp_path, uninterrupted):
  process = _start_and_wait_for_training(tmp_path)
  process.kill()
  process.communicate()
  assert not os.path.exists(tmp_path / "summary.json")
  result = run(tmp_path)
  assert result.returncode == 0, result.stderr
  assert_same_outputs(tmp_path, uninterrupted)


@pytest.mark.slow
def test_sigterm_while_starting_up_exits_143_and_the_rerun_finishes(tmp_path, uninterrupted):
  stopped = run(tmp_path, "start:1:TERM")
  assert stopped.returncode == preemption.PREEMPTED_EXIT_STATUS, stopped.stderr
  assert stopped.stderr.strip().splitlines()[-1] == (
    "iml_jax: preempted (SIGTERM) before seed_0/stage1 started: rerun the same command to resume"
  )
  assert os.listdir(tmp_path) == []  # nothing trained yet in a fresh workdir: left as found
  assert run(tmp_path).returncode == 0
  assert_same_outputs(tmp_path, uninterrupted)


def _sigterm_caught(pid) -> bool:
  """Whether process `pid` has a handler for SIGTERM (its caught-signals mask in /proc)."""
  with open(f"/proc/{pid}/status") as status:
    caught = next(line for line in status if line.startswith("SigCgt:"))
  return bool(int(caught.split()[1], 16) & 1 << (signal.SIGTERM - 1))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the signal mask from /proc")
def test_sigterm_at_the_first_moment_it_can_be_caught_exits_143(tmp_path, uninterrupted):
  """No injection: SIGTERM as soon as the process has a handler for it, before JAX is even loaded. Before that
  moment only the interpreter itself is starting, and SIGTERM's default action ends it as untouched."""
  process = subprocess.Popen(command(tmp_path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 60
  while not _sigterm_caught(process.pid):
    assert process.poll() is None and time.time() < deadline, process.communicate()
  with open(f"/proc/{process.pid}/maps") as maps:
    assert "jaxlib" not in maps.read(), "the handler was installed after JAX loaded"
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == preemption.PREEMPTED_EXIT_STATUS, stderr
  assert stderr.strip().splitlines()[-1] == (
    "iml_jax: preempted (SIGTERM) before seed_0/stage1 started: rerun the same command to resume"
  )
  assert os.listdir(tmp_path) == []
  assert run(tmp_path).returncode == 0
  assert_same_outputs(tmp_path, uninterrupted)


def test_a_checkpoint_killed_before_its_digest_is_discarded_and_retrained(tmp_path, uninterrupted):
  """A kill between Orbax's rename and the digest file leaves a checkpoint no digest vouches for; two flipped bits
  in its parameters were once restored unchecked (other results, or here a loss gone to inf). The rerun deletes it,
  says so in one line, and resumes from the checkpoint before it, so its outputs are the uninterrupted run's."""
  killed = run(tmp_path, "checkpoint_saved:2")  # stage 1's step-4 checkpoint saved, digest included
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  checkpoints = tmp_path / "seed_0" / "stage1" / "checkpoints"
  os.remove(checkpoints / "4.sha256.json")
  params = checkpoints / "4" / "params"
  victim = max((p for p in params.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0b11
  victim.write_bytes(bytes(data))
  result = run(tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_same_outputs(tmp_path, uninterrupted)
  assert (
    "seed_0/stage1: checkpoint step 4 had no digest file (its save did not finish) and was deleted; resuming "
    "from step 2" in result.stdout.splitlines()
  )


# slow (34 s with the suite running; CI refuses a busy workdir in test_workdir_lock): run with `-m slow`
@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_exits_at_once_and_the_first_finishes_unharmed(tmp_path, uninterrupted):
  first = _start_and_wait_for_training(tmp_path)
  second = run(tmp_path)
  assert second.returncode == 2
  assert (
    second.stderr.strip()
    .splitlines()[-1]
    .startswith(f"iml_jax: error: workdir {tmp_path} is in use by another run: pid {first.pid} on host ")
  )
  assert first.wait(timeout=300) == 0, first.communicate()
  assert_same_outputs(tmp_path, uninterrupted)
  assert not os.path.exists(tmp_path / "LOCK")


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_within_a_step(tmp_path, uninterrupted):
  process = _start_and_wait_for_training(tmp_path)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == preemption.PREEMPTED_EXIT_STATUS, stderr
  assert stderr.strip().splitlines()[-1].startswith("iml_jax: preempted (SIGTERM) at step ")
  assert "Traceback" not in stderr
  stage1 = tmp_path / "seed_0" / "stage1"
  step = int(stderr.split("preempted (SIGTERM) at step ")[1].split()[0])
  assert os.path.isdir(stage1 / "checkpoints" / str(step)) or os.path.exists(stage1 / "DONE")
  result = run(tmp_path)
  assert result.returncode == 0, result.stderr
  assert_same_outputs(tmp_path, uninterrupted)


# slow (71 s with the suite running; CI tests the path layer on the bucket, test_io_utils): run with `-m slow`
@pytest.mark.slow
def test_a_bucket_workdir_killed_then_resumed_equals_the_local_run(gcs, uninterrupted):
  """A gs:// workdir through the real clients (gcsfs, google-cloud-storage, TensorStore) and a stand-in GCS
  (tests/fake_gcs.py): killed right after a checkpoint reached the bucket, the rerun resumes from it and ends
  with the local run's outputs, byte for byte; every output is in the bucket, none half-written."""
  workdir = "gs://bucket/runs/tiny"
  result = run(workdir, "checkpoint_saved:2")
  assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
  stage1 = "runs/tiny/seed_0/stage1/"
  assert gcs.names(prefix=stage1 + "checkpoints/4/") and not gcs.names(prefix="runs/tiny/summary.json")
  before_resume = len(gcs.requests)
  result = run(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  restored = [
    path
    for method, path in gcs.requests[before_resume:]
    if method == "GET" and "alt=media" in path and "stage1%2Fcheckpoints%2F4%2Fparams" in path
  ]
  assert restored, "the rerun did not read the step-4 checkpoint from the bucket"
  for name, text in uninterrupted.items():
    assert gcs.read(f"{workdir}/{name}").decode() == text, name
  names = gcs.names(prefix="runs/tiny/")
  for expected in (
    "config.json",
    "metrics.jsonl",
    "report.md",
    "seed_0/tokenizer.json",
    "seed_0/stage1/DONE",
    "seed_0/stage1/eval.jsonl",
    "seed_0/s2seed_0/stage2/DONE",
    "plots/em_per_subset.png",
  ):
    assert f"runs/tiny/{expected}" in names, expected
  assert {n[len("runs/tiny/tensorboard/") :].rpartition("/")[0] for n in names if "/tensorboard/" in n} == {
    "seed_0/stage1",
    "seed_0/s2seed_0/stage2",
  }
  assert not [n for n in names if ".tmp" in n or "orbax-checkpoint-tmp" in n]
  assert not os.path.exists(os.path.join(ROOT, "gs:")), "a gs:// path was taken for a local directory"

  summary = gcs.read(f"{workdir}/summary.json")
  gcs.delete(f"{workdir}/summary.json")
  report = subprocess.run(
    [sys.executable, "-m", "iml_jax.report", f"--workdir={workdir}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert report.returncode == 0, report.stderr[-3000:]
  assert gcs.read(f"{workdir}/summary.json") == summary

  export = subprocess.run(
    [
      sys.executable,
      "-m",
      "iml_jax.export_hf",
      f"--workdir={workdir}",
      "--stage=seed_0/s2seed_0/stage2",
      "--out=gs://bucket/exported",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=180,
  )
  assert export.returncode == 0, export.stderr[-3000:]
  assert {"exported/config.json", "exported/model.safetensors", "exported/tokenizer.json"} <= set(
    gcs.names(prefix="exported/")
  )
  assert "gpt_neox.embed_in.weight" in safetensors.numpy.load(gcs.read("gs://bucket/exported/model.safetensors"))
