r"""The define experiment from scratch on the offline synthetic knowledge base (docs/study.md §3).

Command:
  python -m iml_jax.main --config=configs/define_synthetic.py --workdir=/tmp/iml_define

A from-scratch model knows nothing about the entities, so a first stage (`entity_facts`) teaches every
entity's six facts under its real name — the role pretraining plays for the study's LLMs. Then the study's
stage 1 (QA about aliases + tag-1 consistent / tag-2 inconsistent definitions) and stage 2 (definitions of
new aliases with tags 1, 2 and 3) run as in the main config, at CPU scale: 1,000 entities, the main
config's fractions, a 4-layer d=128 GPT-NeoX with a byte-level BPE tokenizer (1,024 tokens) built from the
generated data, AdamW instead of the study's Adafactor at lr 5e-5 (too slow from scratch).

Measured (2 CPU cores, 1 seed, the command above): 707 s wall time. The entities stage teaches the facts
(EM 0.79 on them by name). Stage 1 reaches q_no_replacement_baseline 0.48, but aliased QA stays at
qd1consis 0.28 ≈ qd2incons 0.28 ≈ q 0.29: the definitions give no out-of-context benefit at this scale.
After stage 2: d1consis 0.190, d2consis 0.158, d3consis 0.173, no_qd_baseline (never-seen aliases) 0.192,
so d1 - d2 = +0.03 is not internalisation (d1 does not beat unseen aliases; d1 - d2 was already +0.02 at
the end of stage 1). No IML at this scale; the study's effect needs pretrained 1B+ models (docs/study.md §4.7).
Argument `tiny` shrinks everything for tests: configs/define_synthetic.py:tiny
"""

from iml_jax import config_blocks as blocks


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(tiny=False), "configs/define_synthetic.py")
  adamw = lambda lr: blocks.optimizer(name="adamw", lr=lr, b2=0.98, warmup_frac=0.02)
  stages = dict(
    entities=blocks.stage("entity_facts", epochs=30, batch_size=64, eval_every=10, optimizer_config=adamw(1e-3)),
    stage1=blocks.stage("stage1", epochs=20, batch_size=64, eval_every=5, optimizer_config=adamw(1e-3)),
    stage2=blocks.stage("stage2", epochs=10, batch_size=64, eval_every=5, optimizer_config=adamw(1e-3)),
  )
  model = blocks.gpt_neox(d_model=128, n_layers=4, n_heads=4, d_mlp=512)
  deviations = (
    "from scratch on the synthetic knowledge base, fewer entities, a small model with a BPE tokenizer built from "
    "the data, not pretrained Pythia-2.8B on CVDB [data.knowledge_base, data.num_entities, data.block_size, model*]",
    "an entity_facts stage first teaches every entity's facts under its real name, the role pretraining plays "
    "for the study's models; AdamW, smaller batches, other epoch counts [stage_names (count), stages.*]",
    "fp32, fewer seeds, no entity-association sets [model.dtype, seed, n_seeds, n_seeds_stage2, "
    "data.entity_association_test_sets]",
  )
  config = blocks.base(
    "define",
    blocks.define_data(num_entities=1000, block_size=40),
    model,
    stages,
    n_seeds=1,
    study="cvdb_main",
    deviations=deviations,
    tokenizer=dict(vocab_size=1024),
    eval=dict(batch_size=512),
  )
  if args["tiny"]:
    config.n_seeds = 1
    config.deviations = (*config.deviations, blocks.TINY_DEVIATION)
    config.data.num_entities = 120
    config.tokenizer.vocab_size = 400
    config.model.update(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
    for stage in config.stages.values():
      stage.update(epochs=1, batch_size=32, eval_every=1)
    config.eval.update(batch_size=64, max_new_tokens=4, subsets="d1consis,d2consis,qd1consis,entity_facts_q")
  return config
