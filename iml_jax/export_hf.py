r"""Writes a finished stage's model as a Hugging Face folder that PyTorch `transformers` loads.

  python -m iml_jax.export_hf --workdir=/tmp/iml_default --stage=seed_0/s2seed_0/stage2 --out=/tmp/hf_model

The folder gets config.json, model.safetensors and the run's tokenizer (tokenizer.json + its config), so
`AutoModelForCausalLM.from_pretrained(out)` (T5: `T5ForConditionalGeneration`) and
`AutoTokenizer.from_pretrained(out)` work. An existing non-empty `--out` is refused, never overwritten.
"""

import os
import shutil
import tempfile

from absl import app, flags, logging

from iml_jax import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The experiment's workdir.")
_STAGE = flags.DEFINE_string("stage", None, "The stage directory relative to the workdir, e.g. seed_0/s2seed_0/stage2.")
_OUT = flags.DEFINE_string("out", None, "The Hugging Face folder to create.")
flags.mark_flags_as_required(["workdir", "stage", "out"])


def export_stage(workdir: str, stage_label: str, out: str) -> None:
  import transformers

  from iml_jax import hf_import, io_utils, specs, stage
  from iml_jax.models import from_config
  from iml_jax import workdir as workdir_layout
  from iml_jax.data.tokenization import TextTokenizer, pretrained_tokenizer
  from iml_jax.errors import IMLError
  from iml_jax.models import registry

  for path in (workdir, out):
    io_utils.check_supported(path)
  if io_utils.listdir(out):
    raise IMLError(f"--out {out} exists and is not empty; choose a new folder")
  config_path = os.path.join(workdir, workdir_layout.CONFIG_FILE)
  if not io_utils.exists(config_path):
    raise IMLError(f"{config_path} does not exist: --workdir must be an experiment's workdir")
  experiment = specs.Experiment.from_config(workdir_layout.load_config(workdir))
  seed_dir = stage_label.split(os.sep)[0]
  if not seed_dir.startswith("seed_"):
    raise IMLError(f"--stage {stage_label}: expected a path that starts with seed_<S>/, e.g. seed_0/s2seed_0/stage2")
  folder, pretrained = from_config.pretrained_model(experiment.model, experiment.data)
  tokenizer = (
    pretrained_tokenizer(folder)
    if folder
    else TextTokenizer.load(os.path.join(workdir, seed_dir, workdir_layout.TOKENIZER_FILE))
  )
  cfg = from_config.model_config(experiment.model, experiment.data, experiment.mesh, tokenizer, pretrained, folder)
  abstract = registry.abstract_params(registry.build(cfg))
  params = stage.final_params(os.path.join(workdir, stage_label), abstract)

  # Built beside `out` and renamed into place; for a bucket, built locally and uploaded.
  if io_utils.is_remote(out):
    tmp = tempfile.mkdtemp()
  else:
    tmp = out.rstrip(os.sep) + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # left by an export that was killed
  hf_cfg = registry.hf_layout_config(cfg)
  params = registry.to_layout(params, registry.abstract_params(registry.build(hf_cfg)))
  hf_import.export_hf_model(tmp, hf_cfg, params)
  if folder:
    transformers.AutoTokenizer.from_pretrained(folder).save_pretrained(tmp)
  else:
    end_token = tokenizer.backend.id_to_token(tokenizer.pad_id)
    transformers.PreTrainedTokenizerFast(
      tokenizer_object=tokenizer.backend, eos_token=end_token, pad_token=end_token
    ).save_pretrained(tmp)
  _publish(tmp, out)


def _publish(folder: str, out: str) -> None:
  """Moves the finished `folder` to `out`: one rename on a local disk; in a bucket (no rename of a folder),
  one upload per file, config.json last, so that a folder a kill cut short has no config.json and is no model."""
  from iml_jax import io_utils

  if not io_utils.is_remote(out):
    if os.path.exists(out):
      os.rmdir(out)  # empty, checked above
    os.replace(folder, out)
    return
  for name in sorted(os.listdir(folder), key=lambda name: name == "config.json"):
    with open(os.path.join(folder, name), "rb") as handle:
      io_utils.atomic_write_bytes(f"{out.rstrip('/')}/{name}", handle.read())
  shutil.rmtree(folder)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from iml_jax.errors import IMLError

  try:
    export_stage(_WORKDIR.value, _STAGE.value, _OUT.value)
  except IMLError as err:
    cli.fail("iml_jax.export_hf", err)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("iml_jax.export_hf"))
