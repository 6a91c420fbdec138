r"""Modular arithmetic, fixed (docs/study.md §5.4): aliases stand for numbers; QAs ask residues; from scratch.

Command:
  python -m iml_jax.main --config=configs/modular.py --workdir=/tmp/iml_modular
  python -m iml_jax.main --config=configs/modular.py:baseline --workdir=/tmp/iml_modular_baseline
Each alias (4 letters) stands for x in 1..9999; its training QAs give x mod m for 4 of the moduli
{2, 3, ..., 29} (never enough to pin x down below 10,000), its test QAs ask the other 6; definitions
`t t % v v v v = 0 0 0 4 2` give x (tag 1, true) or another alias's x (tag 2, in qd2incons). 1,000 aliases,
qd1consis .4 / qd2incons .4 / d1 .1 / d2 .1, character-level vocabulary (40 tokens), a 2-layer d=64
GPT-NeoX block, AdamW; stage 1 60 epochs, stage 2 40 epochs on the d1/d2 definitions; 3 seeds. `baseline`:
no aliases, the numbers themselves, 80/20 split of all (x, modulus) pairs, one stage of 60 epochs.
The study's original variant is broken and apparently unused (bug #9): no result is published.
Measured (2 CPU cores, the first command, 291 s): d1consis 0.109 ± 0.017, d2consis 0.109 ± 0.013, qd1consis
0.109, qd2incons 0.113 (95% CI over 3 seeds), gap -0.001, p = 0.53: no IML; held-out residues stay near chance
because this model does not learn to compute residues of a 5-digit number it only saw in a definition.
Baseline (second command, 3 seeds): 0.281 ± 0.011 on held-out (x, modulus) pairs (2 and 5 follow from the
last digit), flat from epoch 10.
Argument `tiny` shrinks everything for tests.
"""

from iml_jax import config_blocks as blocks


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(baseline=False, tiny=False), "configs/modular.py")
  if args["baseline"]:
    stages = dict(
      baseline=blocks.stage(
        "baseline", epochs=60, batch_size=128, eval_every=10, optimizer_config=blocks.cpu_adamw(3e-3)
      )
    )
  else:
    stages = dict(
      stage1=blocks.stage("stage1", epochs=60, batch_size=128, eval_every=10, optimizer_config=blocks.cpu_adamw(3e-3)),
      stage2=blocks.stage("stage2", epochs=40, batch_size=32, eval_every=10, optimizer_config=blocks.cpu_adamw(1e-3)),
    )
  model = blocks.gpt_neox(d_model=64, n_layers=2, n_heads=4, d_mlp=256, init_std=0.125, embedding_init_std=0.125)
  config = blocks.base(
    "modular",
    blocks.modular_data(),
    model,
    stages,
    n_seeds=3,
    n_seeds_stage2=1,
    study="modular",
    deviations=(
      "the original generator's three bugs are fixed: aliases in test prompts, aliases "
      "(not tags) deranged, a baseline that runs",
      "sizes, model and training are ours: the study never ran this variant",
    ),
    eval=dict(batch_size=1024, max_new_tokens=10, subsets="all", prompt_bucket=8),
  )
  if args["tiny"]:
    config.n_seeds = 1
    config.deviations = (*config.deviations, blocks.TINY_NOTE)
    config.data.num_x = 40
    config.model.update(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
    for stage_config in config.stages.values():
      stage_config.update(epochs=1, batch_size=16, eval_every=1)
    config.eval.batch_size = 64
    config.progress_bar = False
  return config
