"""The benchmarks run end to end at tiny shapes on CPU and print what the README quotes (no timing asserts:
timing is what they measure, on the machine that runs them)."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script: str, *args: str) -> str:
  done = subprocess.run(
    [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _ratio(out: str, name: str) -> float:
  last = out.strip().splitlines()[-1]
  match = re.fullmatch(rf"RESULT {name} ratio=(\d+\.\d\d)", last)
  assert match, last
  return float(match.group(1))


@pytest.mark.slow
def test_study_step_times_both_sides_with_the_study_optimizer():
  out = _run(
    "study_step.py",
    "--model=pythia-14m",
    "--vocab_size=512",
    "--batch_size=4",
    "--grad_accum=2",
    "--steps=1",
    "--rounds=2",
    "--dtype=float32",
    "--peak_tflops=1",
    "--host_malloc=reuse",
  )
  assert "float32 compute over fp32 weights, study Adafactor + clip 1.0" in out and "host malloc: reuse" in out
  assert "our attention: auto (einsum here)" in out  # the default, as it resolves on CPU
  assert re.search(r"iml-jax +\d+ tokens/s per device .* GFLOP/s = \d+% of the matmul's, \d+ host page faults", out)
  assert re.search(r"transformers \+ torch +\d+ tokens/s per device", out)
  assert "FLOPs/token = 6 N + 12 L d T" in out and "iml-jax MFU:" in out
  rounds = re.search(r"ratio per round \(the sides alternating\): (\d+\.\d\d) (\d+\.\d\d)\n", out)
  assert rounds, out
  per_round = [float(ratio) for ratio in rounds.groups()]
  assert _ratio(out, "study_step") == pytest.approx(sum(per_round) / 2, abs=0.011)  # their median


@pytest.mark.slow
def test_study_eval_scores_every_eval_set_like_the_pipeline():
  out = _run(
    "study_eval.py",
    "--model=pythia-14m",
    "--vocab_size=1024",
    "--config=configs/define_synthetic.py:tiny",
    "--num_entities=60",
    "--max_prompts=8",
    "--batch_size=8",
  )
  assert re.search(r"identical predictions: pipeline 1\.000, generate 1\.000", out), out
  assert re.search(r"\d+ eval sets of configs/define_synthetic.py:tiny", out)
  for side in ("iml-jax evaluate.evaluate", "transformers pipeline", "transformers batch generate"):
    assert re.search(rf"{side} +\d+\.\d prompts/s", out), side
  assert _ratio(out, "study_eval") > 0


def test_generate_decodes_alike_and_times_the_sides_pass_by_pass():
  out = _run(
    "generate.py",
    "--num_prompts=6",
    "--batch_size=3",
    "--d_model=16",
    "--n_layers=1",
    "--n_heads=2",
    "--vocab_size=64",
    "--rounds=3",
  )
  assert "identical generations: 1.000 of prompts" in out, out
  for side in ("iml-jax greedy_decode:", "transformers generate:"):
    assert re.search(rf"{side} +\d+\.\d prompts/s \(\d\.\d{{3}} s per pass\), \d+ GFLOP/s\n", out), side
  rounds = re.search(r"ratio per round \(the sides alternating\): (\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d)\n", out)
  assert rounds, out
  assert _ratio(out, "generate") == sorted(float(ratio) for ratio in rounds.groups())[1]  # their median


def test_tpu_products_sums_each_product_of_the_model_as_often_as_the_model_runs_it():
  """Pythia-70M's products (6 layers) for 128 tokens on a v5e chip: the model's FLOPs (6 per weight and token)
  and the bytes of operands and results, each layer's products counted once per layer."""
  out = _run("tpu_products.py", "--model=pythia-70m", "--tokens=128", "--vocab_size=1024")
  fields = dict(item.split("=") for item in out.strip().splitlines()[-1].split()[2:])
  d, layers, tokens, vocab = 512, 6, 128, 1024
  weights = layers * (4 * d * d + 2 * d * 4 * d) + d * vocab
  assert float(fields["tflop"]) * 1e12 == pytest.approx(6 * weights * tokens, rel=1e-3)
  layer_moved = 4 * (2 * tokens * d + d * d) + 2 * (tokens * d + tokens * 4 * d + 4 * d * d)
  moved = 2 * 3 * (layers * layer_moved + tokens * d + d * vocab + tokens * vocab)
  assert float(fields["operands_gb"]) * 1e9 == pytest.approx(moved, rel=1e-3)
  assert float(fields["xla_gb"]) >= float(fields["operands_gb"]) * 0.99  # XLA reads every operand at least once
  assert 0 < float(fields["peak_share"]) <= 1


@pytest.mark.slow
def test_profile_step_lists_the_operations_of_the_step_with_their_model_code(tmp_path):
  out = _run(
    "profile_step.py",
    "--model=pythia-14m",
    "--batch_size=2",
    "--dtype=float32",
    "--steps=1",
    "--top=5",
    f"--trace_dir={tmp_path}",
  )
  rows = [line for line in out.splitlines() if re.match(r" +\d+\.\d\d ms +\d+\.\d%", line)]
  assert len(rows) == 5 and any("embed_out" in row for row in rows), out
  assert re.search(r"matrix products \(operations whose HLO is or fuses a dot\): \d+\.\d%", out)
  assert re.search(r"some operation runs \d+\.\d ms per step; summed operation time / that = \d\.\d\d", out), out


@pytest.fixture
def profile_step(monkeypatch):
  monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
  import profile_step

  return profile_step


def test_a_program_run_on_the_clients_own_thread_is_in_the_profile(profile_step, tmp_path):
  # XLA:CPU runs a program of a few operations inline on the client's thread, not in the intra-op pool
  step = jax.jit(lambda x: jnp.sin(x) * 2 + 1)
  x = jnp.ones((64, 64))
  step(x).block_until_ready()
  with jax.profiler.trace(str(tmp_path)):
    for _ in range(3):
      step(x).block_until_ready()
  events = profile_step.op_events(str(tmp_path))
  assert len(events) == 3 and len({name for name, _, _ in events}) == 1, events
  assert all(duration > 0 for _, _, duration in events)


def test_busy_time_counts_overlapping_operations_once(profile_step):
  events = [("c", 20, 5), ("a", 0, 10), ("d", 21, 2), ("b", 5, 10), ("e", 40, 3)]
  assert profile_step.busy_ns(events) == 15 + 5 + 3


def test_the_sides_alternate_round_by_round_and_the_ratio_is_the_median_of_the_rounds(monkeypatch):
  monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
  import common

  calls = []

  def side(name, seconds_per_round):
    def run(steps):
      calls.append(name)
      return seconds_per_round[sum(call == name for call in calls) - 1] * steps

    return common.Side(run, parameters=1, peak_memory_mib=lambda: None)

  ours = side("ours", [1.0, 2.0, 1.0])
  reference = side("reference", [1.0, 1.0, 3.0])
  comparison = common.time_side_by_side(ours, reference, steps=4, rounds=3)
  assert calls == ["ours", "reference", "reference", "ours", "ours", "reference"]
  assert comparison.ratios == [1.0, 0.5, 3.0] and comparison.ratio == 1.0
  assert comparison.ours.seconds_per_step == 1.0 and comparison.reference.seconds_per_step == 1.0


def _flags_defined_in(path: str) -> set[str]:
  with open(path) as f:
    return set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", f.read()))


@pytest.mark.parametrize(
  "script", sorted(name for name in os.listdir(os.path.join(ROOT, "benchmarks")) if name.endswith("_gpu.sh"))
)
def test_the_gpu_scripts_pass_only_flags_their_benchmarks_define(script):
  # a misspelt flag would cost a lent accelerator's scarce minutes
  with open(os.path.join(ROOT, "benchmarks", script)) as f:
    commands = [line for line in f.read().replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#")]
  invoked = {name for line in commands for name in re.findall(r"benchmarks/(\w+\.py)", line)}
  defined = set().union(
    *(_flags_defined_in(os.path.join(ROOT, "benchmarks", name)) for name in invoked | {"common.py"}),
    _flags_defined_in(os.path.join(ROOT, "benchmarks", "host_malloc.py")),
  )
  passed = {
    name
    for line in commands
    if "benchmarks/" in line or line.lstrip().startswith("for args in")
    for name in re.findall(r"(?<![\w-])--(\w+)=", line)
  }
  assert invoked and passed, script
  assert passed <= defined, sorted(passed - defined)
