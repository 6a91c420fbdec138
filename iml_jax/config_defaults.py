"""Building blocks for `configs/*.py`: every field a run reads, with the study's defaults.

Config files start from these and change what their experiment changes, so each file reads as the
list of its differences from the study's setup.
"""
import ml_collections

from iml_jax.errors import IMLError


def parse_arg(arg: str | None) -> dict[str, str]:
  """`configs/x.py:a=1,flag` → {"a": "1", "flag": ""}."""
  parsed = {}
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    parsed[key.strip()] = value.strip()
  return parsed


def check_arg(parsed: dict, known: tuple[str, ...], config_file: str) -> None:
  unknown = sorted(set(parsed) - set(known))
  if unknown:
    raise IMLError(f"{config_file}: unknown config argument(s) {unknown}; known: {list(known)}")


def optimizer(name: str = "adafactor", lr: float = 5e-5, warmup_frac: float = 0.0, b1: float = 0.9,
              b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              grad_clip: float = 1.0) -> ml_collections.ConfigDict:
  """Defaults are the study's: HF Adafactor at lr 5e-5, no warm-up, global grad-norm clip 1.0."""
  return ml_collections.ConfigDict(dict(name=name, lr=lr, warmup_frac=warmup_frac, b1=b1, b2=b2, eps=eps,
                                        weight_decay=weight_decay, grad_clip=grad_clip))


def stage(train_subset: str, epochs: int, batch_size: int, optimizer_config=None, grad_accum: int = 1,
          eval_every: int = 1, trainable: str = "all") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      train_subset=train_subset, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum,
      optimizer=optimizer_config or optimizer(), eval_every=eval_every, trainable=trainable))


def numeric_data(**overrides) -> ml_collections.ConfigDict:
  """Set inclusion as in the study's Pythia-70M config (STUDY.md §5.3)."""
  data = ml_collections.ConfigDict(dict(
      num_x=8000, n_nums=8, n_intersection=1, n_qs=24, p_label_flip=0.0, max_x=99,
      separate_token_per_var=True, all_alias_tokens=True, redraw_train_questions=False,
      fractions=dict(qd1consis=0.4, qd2incons=0.4, q=0.0, d1consis=0.1, d2consis=0.1, d3consis=0.0),
      block_size=16))
  data.update(overrides)
  return data


def define_data(**overrides) -> ml_collections.ConfigDict:
  """The define experiment as in the main ICML config (STUDY.md §3.3, with tag 3)."""
  data = ml_collections.ConfigDict(dict(
      knowledge_base="synthetic", kb_seed=0, cvdb_path="", cvdb_encoding="ISO-8859-1",
      equalize_gender=True, num_entities=4000,
      fractions=dict(q_no_replacement_baseline=0.1, qd1consis=0.25, qd1incons=0.0, qd2consis=0.0,
                     qd2incons=0.25, qd4consis=0.0, q=0.1, d1consis=0.08, d2consis=0.08, d3consis=0.08,
                     no_qd_baseline=0.06),
      def_order="tve", alias_length=5, tag_length=6, tag1_name="", tag2_name="", tag3_name="",
      test_frac=0.1666666, entity_association_test_sets=False, letter_test_sets=False, block_size=48))
  data.update(overrides)
  return data


def gpt_neox(**overrides) -> ml_collections.ConfigDict:
  """Pythia-70M's shape by default (random init); vocab size comes from the tokenizer."""
  model = ml_collections.ConfigDict(dict(
      name="gpt_neox", init_from="", d_model=512, n_layers=6, n_heads=8, d_mlp=2048, rotary_pct=0.25,
      rotary_base=10000.0, parallel_residual=True, position_embedding="rotary", layer_norm_eps=1e-5,
      init_std=0.02, embedding_init_std=0.02, dtype="float32"))
  model.update(overrides)
  return model


def base(task: str, data, model, stages: dict, **overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      task=task, seed=0, n_seeds=1, n_seeds_stage2=1, data=data, model=model,
      tokenizer=dict(vocab_size=2048),
      loss=dict(mask_prompt=False, mask_padding=False, exclude_alias_tokens=False),
      stage_names=tuple(stages), stages=stages,
      eval=dict(batch_size=256, max_new_tokens=8, subsets="all", prompt_bucket=8),
      mesh=dict(shape=(-1, 1, 1), rules="dp"),
      checkpoint=dict(every_steps=0, max_to_keep=0),
      log_every=50, progress_bar=True, tensorboard=True))
  config.update(overrides)
  return config
