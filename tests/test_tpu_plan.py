"""tpu_plan compiles a run's programs for TPU slices with libtpu's compiler, no TPU attached, and reports what the
compiler says: checked against the compiled programs' own analyses and against an independent program."""

import os
import re
import subprocess
import sys

import jax
import pytest

from iml_jax import compile_plan, compiled_plan, experiment, sharding, tpu_types
from iml_jax.errors import IMLError
from test_experiment import ROOT

TINY = "configs/default.py:tiny"
# The tests' persistent compilation cache holds no executable compiled without its devices: JAX says so and compiles.
pytestmark = pytest.mark.filterwarnings("ignore:Error reading persistent compilation cache entry")


def _tiny_config(grad_accum: int = 1):
  config = experiment.load_config(TINY)
  config.stages.stage1.grad_accum = grad_accum
  return config


def _tpu_plan(*flags: str, config: str = TINY, timeout: int = 300) -> subprocess.CompletedProcess:
  """`python -m iml_jax.tpu_plan --config=CONFIG FLAGS...` from the checkout."""
  command = [sys.executable, "-m", "iml_jax.tpu_plan", f"--config={config}", *flags]
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_runs():
  return {accum: compile_plan.run_shape(_tiny_config(accum)) for accum in (1, 2)}


def _memory_total(compiled) -> int:
  memory = compiled.memory_analysis()
  return (
    memory.argument_size_in_bytes
    + memory.output_size_in_bytes
    - memory.alias_size_in_bytes
    + memory.temp_size_in_bytes
    + memory.generated_code_size_in_bytes
  )


# v4-8 (megacore chips, a 3D torus) slow: CI plans the same programs for v5e chips
@pytest.mark.parametrize("name", ["v5litepod-4", pytest.param("v4-8", marks=pytest.mark.slow)])
def test_plan_reports_the_compiled_programs_memory_and_counts_every_accumulation_pass(tiny_runs, name):
  kind = tpu_types.tpu_type(name)
  plans = {accum: compiled_plan.plan_for(run, kind) for accum, run in tiny_runs.items()}
  plan = plans[2]
  assert plan.mesh_shape == {"data": kind.devices, "fsdp": 1, "tensor": 1}

  # The memory it reports is the compiled program's, program by program.
  mesh = sharding.make_mesh(_tiny_config().mesh.shape, tpu_types.topology_devices(kind))
  rules = sharding.rules_for("dp")
  run = tiny_runs[2]
  step, parts = compile_plan.train_step_lowered(run, run.stages[0], mesh, rules)
  compiled_step = step.compile()
  assert plan.programs[0].stats.total_bytes == _memory_total(compiled_step)
  assert plan.programs[-1].stats.total_bytes == _memory_total(compile_plan.decode_lowered(run, mesh, rules).compile())

  # An accumulating step's FLOPs: two micro-batch passes and the update, compiled alone; they equal those of the
  # same step on the whole batch at once, one program (the adds of the accumulation aside).
  (one_pass, passes), (update, _) = parts
  assert passes == 2
  flops = [p.compile().cost_analysis()["flops"] for p in (one_pass, update)]
  assert plan.programs[0].stats.partitioned_flops == pytest.approx(2 * flops[0] + flops[1])
  assert plan.programs[0].stats.partitioned_flops == pytest.approx(
    plans[1].programs[0].stats.partitioned_flops, rel=0.05
  )
  # The FLOPs the bound uses are the program's own (test_a_step_counts_its_model_s_flops_...), the same either way.
  assert plan.programs[0].stats.flops == compile_plan.train_step_flops(run, run.stages[0], rules, mesh)
  assert plan.programs[0].stats.flops == pytest.approx(plans[1].programs[0].stats.flops, rel=0.01)

  # Stage 2 has its own batch; the run's bound adds every stage's steps over all its runs.
  bounds = [
    max(p.stats.flops / kind.device_peak_flops, p.stats.bytes_accessed / kind.device_hbm_bytes_per_s)
    for p in plan.programs[:2]
  ]
  expected = sum(b * s.steps * s.runs for b, s in zip(bounds, run.stages))
  assert plan.run_step_seconds == pytest.approx(expected)
  config = _tiny_config()
  assert [s.runs for s in run.stages] == [config.n_seeds, config.n_seeds * config.n_seeds_stage2]


def test_a_step_counts_its_model_s_flops_shared_by_the_devices():
  """A decoder sharded over 4 chips (`fsdp`): the plan's FLOPs per chip are the model's, 6 per weight of a product
  and token plus attention's 12 per layer, width, position and token, over the chips (elementwise work aside)."""
  config = _tiny_config()
  config.model.d_model, config.model.d_mlp, config.model.n_heads = 1024, 4096, 4
  config.mesh.shape, config.mesh.rules = (1, -1, 1), "fsdp"
  run = compile_plan.run_shape(config)
  cfg, stage = run.model.cfg, run.stages[0]
  plan = compiled_plan.plan_for(run, tpu_types.tpu_type("v5litepod-4"), ("train",))
  assert plan.mesh_shape == {"data": 1, "fsdp": 4, "tensor": 1}
  positions = config.data.block_size - 1
  tokens = stage.batch_size * positions
  weights = cfg.n_layers * (4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_mlp) + cfg.d_model * cfg.vocab_size
  model_flops = 6 * weights * tokens + 12 * cfg.n_layers * cfg.d_model * positions * tokens
  assert plan.programs[0].stats.flops == pytest.approx(model_flops / 4, rel=0.05)


def test_a_step_s_flops_do_not_depend_on_the_loops_it_is_written_with(tiny_runs):
  """Scanned layers and a chunked loss compute the same products in loops, whose bodies XLA's analysis counts once."""
  config = _tiny_config()
  config.model.update(n_layers=3, scan_layers=True, loss_chunk=3)
  looped = compile_plan.run_shape(config)
  mesh = sharding.make_mesh((-1, 1, 1), jax.devices("cpu")[:1])
  rules = sharding.rules_for("dp")
  config.model.update(scan_layers=False, loss_chunk=0)
  plain = compile_plan.run_shape(config)
  flops = [compile_plan.train_step_flops(r, r.stages[0], rules, mesh) for r in (looped, plain)]
  assert flops[0] == pytest.approx(flops[1], rel=1e-6)


def test_a_step_s_passes_are_shared_only_by_the_devices_that_split_them(tiny_runs):
  """A tensor axis the rules leave unused repeats the work of the devices along it."""
  run, devices = tiny_runs[1], tpu_types.topology_devices(tpu_types.tpu_type("v5litepod-4"))
  stage = run.stages[0]

  def flops(shape, preset):
    return compile_plan.train_step_flops(run, stage, sharding.rules_for(preset), sharding.make_mesh(shape, devices))

  spread, repeated = flops((1, 4, 1), "fsdp"), flops((1, 2, 2), "fsdp")
  assert flops((1, 2, 2), "fsdp_tensor") == pytest.approx(spread)
  update = 2 * spread - repeated  # passes / 4 + update = spread, passes / 2 + update = repeated
  assert 0 <= update < spread / 2


def test_xla_tpu_counts_part_of_a_collective_matmul_so_the_plan_counts_the_program():
  """Why the plan does not take XLA:TPU's FLOPs of a partitioned program: a product whose weight is sharded over
  8 chips compiles into a collective-matmul loop, and the compiler's count holds half of its work."""
  from jax.sharding import NamedSharding, PartitionSpec

  mesh = jax.sharding.Mesh(tpu_types.topology_devices(tpu_types.tpu_type("v5litepod-8")), ("fsdp",))
  split = NamedSharding(mesh, PartitionSpec("fsdp", None))
  tokens, width, out = 6144, 2560, 10240
  x, w = (jax.ShapeDtypeStruct(s, "bfloat16", sharding=split) for s in ((tokens, width), (width, out)))
  compiled = jax.jit(lambda x, w: x @ w, out_shardings=split).lower(x, w).compile()
  assert " while(" in compiled.as_text()
  # When a libtpu counts the whole loop this fails: the plan could then take the compiler's count again.
  assert compiled.cost_analysis()["flops"] < 0.6 * 2 * tokens * width * out / 8


def test_the_command_prints_a_table_and_a_result_line_per_type():
  result = _tpu_plan("--config.eval.batch_size=32", "--tpu=v5litepod-4")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert "compile-time estimates" in result.stdout
  results = [line for line in lines if line.startswith("RESULT tpu_plan")]
  assert len(results) == 1 and lines[-1] == results[0]
  fields = dict(item.split("=", 1) for item in results[0].split()[2:])
  assert fields["config"] == TINY and fields["tpu"] == "v5litepod-4" and fields["fits"] == "yes"
  totals = [float(row.split()[-4]) for row in lines if row.strip().startswith(("train ", "decode "))]
  assert float(fields["gib_per_chip"]) == pytest.approx(max(totals), abs=0.01)
  assert float(fields["step_seconds_bound"]) > 0 and float(fields["run_chip_hours_bound"]) >= 0


@pytest.mark.parametrize(
  "flag, expected",
  [("--tpu=v9-8", "--tpu=v9-8: unknown TPU type; expected one of"), ("--tpu=v4-6", "--tpu=v4-6: unknown TPU type")],
)
def test_an_unknown_tpu_type_is_one_line(flag, expected):
  result = _tpu_plan(flag)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert result.stderr.startswith(f"tpu_plan: error: {expected}")


def test_without_libtpu_it_says_which_extra_installs_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "libtpu", None)  # `import libtpu` raises ImportError
  with pytest.raises(IMLError, match=re.escape('pip install -e ".[tpu]"')):
    tpu_types.topology_devices(tpu_types.tpu_type("v5litepod-8"))


def test_attention_auto_compiles_splash_for_a_tpu_mesh_from_a_cpu_machine():
  from iml_jax.models import layers

  assert layers.resolve_attention("auto", True, 128, 64, "bfloat16") == "einsum"  # this machine: CPU
  mesh = sharding.make_mesh((-1, 1, 1), tpu_types.topology_devices(tpu_types.tpu_type("v5litepod-4")))
  with jax.set_mesh(mesh):
    assert layers.resolve_attention("auto", True, 128, 64, "bfloat16") == "splash"
    assert layers.resolve_attention("auto", True, 48, 64, "bfloat16") == "einsum"  # mostly padding at 128
  # A run whose model reads 128 positions (blocks of 129 tokens) trains through Splash's Mosaic kernels, compiled
  # for the TPU (not interpreted): the forward pass and the backward pass of each layer.
  config = _tiny_config()
  config.data.block_size = 129
  run = compile_plan.run_shape(config)
  step, _ = compile_plan.train_step_lowered(run, run.stages[0], mesh, sharding.rules_for("dp"))
  assert step.compile().as_text().count('custom_call_target="tpu_custom_call"') >= 2 * config.model.n_layers


def test_a_program_too_large_for_the_chip_is_named_with_what_to_change():
  """Decoding 2^24 prompts at once needs far more than a v5e chip's 16 GiB: the table says which program and by
  how much, the RESULT line fits=no, and the last line what to change (the tiny model is replicated: shard it)."""
  result = _tpu_plan(f"--config.eval.batch_size={2**24}", "--programs=decode", "--tpu=v5litepod-4")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert any(line.strip().startswith("decode (16777216 prompts") and "DOES NOT FIT" in line for line in lines)
  over = next(line for line in lines if line.startswith("  does not fit: decode (16777216 prompts"))
  needed = float(re.search(r"tokens\): ([\d.]+) GiB, ([\d.]+) over", over).group(1))
  assert needed > 16 and f"{needed - 16:.2f} over" in over
  assert " fits=no " in next(line for line in lines if line.startswith("RESULT tpu_plan"))
  assert lines[-1].startswith("no planned type fits with the state replicated") and "mesh.rules=fsdp" in lines[-1]


def _programs(config: str) -> tuple:
  """What decides every program tpu_plan compiles for `config`: the model, the training arrays, each stage's step,
  decoding's batch and lengths, the alignment statistics and the mesh (not step counts or learning rates)."""
  run = compile_plan.run_shape(experiment.load_config(os.path.join(ROOT, config)))
  arrays = tuple(sorted((name, tuple(shape), str(dtype)) for name, (shape, dtype) in run.array_shapes.items()))
  stages = tuple(stage.program_key for stage in run.stages)
  return (run.model, arrays, stages, run.eval_batch, run.prompt_width, run.max_new_tokens, run.alignment, run.mesh)


@pytest.mark.parametrize(
  "config, pinned",
  [
    ("configs/definition_order.py:order=vte", "configs/pythia_cvdb_2stage.py"),
    ("configs/tag_correlation.py:alpha=0.8", "configs/pythia_cvdb_2stage.py"),
    ("configs/probes.py:order=vte", "configs/data_amount.py:num_ents=500"),
    ("configs/definition_order.py:order=vte,passes=1", "configs/pythia_cvdb_2stage.py:passes=1"),
    ("configs/tag_correlation.py:alpha=0.8,passes=1", "configs/pythia_cvdb_2stage.py:passes=1"),
  ],
)
def test_a_study_config_runs_the_programs_of_one_whose_fit_is_pinned(config, pinned):
  """These configs compile exactly the programs of a config the slow test below compiles: its fit is theirs."""
  assert _programs(config) == _programs(pinned)


def test_a_different_decode_length_makes_different_programs():
  assert _programs("configs/three_stage.py") != _programs("configs/pythia_cvdb_2stage.py")  # 20 new tokens, not 8


# slow (3 to 10 minutes each on 2 cores: one to a few billion parameters to compile): every study config fits the TPU
# type the README's configs table and its docstring give it (the others compile these same programs: see above)
@pytest.mark.slow
@pytest.mark.parametrize(
  "config, tpu",
  [
    ("configs/pythia_cvdb_2stage.py", "v5litepod-8"),
    ("configs/pythia_cvdb_2stage.py:passes=1", "v5litepod-8"),
    ("configs/t5_cvdb_2stage.py", "v4-8"),
    ("configs/numeric_scratch.py", "v5litepod-8"),
    ("configs/data_amount.py:num_ents=500", "v5litepod-8"),
    ("configs/batch_size.py:batch=256", "v5litepod-8"),
    ("configs/grad_alignment.py:batch=128", "v5litepod-8"),
    ("configs/is_isnt.py:defn=is_isnt", "v5litepod-8"),
    ("configs/three_stage.py", "v5litepod-8"),
    ("configs/incontext.py", "v5litepod-8"),
    ("configs/trex_2stage.py", "v5litepod-8"),
    ("configs/three_stage.py:passes=1", "v5litepod-8"),
    ("configs/incontext.py:passes=1", "v5litepod-8"),
    ("configs/trex_2stage.py:passes=1", "v5litepod-8"),
  ],
)
def test_the_study_configs_fit_the_tpu_types_they_recommend(config, tpu):
  result = _tpu_plan(f"--tpu={tpu}", config=config, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f" tpu={tpu} fits=yes " in result.stdout.splitlines()[-1], result.stdout
