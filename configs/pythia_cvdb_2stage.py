r"""The study's main experiment: Pythia-2.8B on CVDB, two stages (docs/study.md §3, §7.3, §11.2).

Command: (needs the CVDB file, Pythia weights and an accelerator)
  python -m iml_jax.main --config=configs/pythia_cvdb_2stage.py --workdir=$WORKDIR \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv

The study's model-size sweep (docs/study.md §4.7) is `model=`: the same experiment without tag 3 (q_no_repl .1 /
qd1consis .25 / qd2incons .25 / q .1 / d1 .1 / d2 .1 / no_qd .1), 10 stage-1 seeds from 600 x 5 stage-2 seeds:
  --config=configs/pythia_cvdb_2stage.py:model=pythia-410m   (pythia-70m … pythia-6.9b, gpt-neo-125M,
  gpt-neo-350M (the hub may no longer serve it: then give a local copy), gpt-neo-1.3B, gpt-neo-2.7B, gpt-j-6b;
  llama-2-7b and gpt2 run too, with that deviation listed)
The study's GPT-Neo sweep names "gpt-neo-6B", which is not a hub id; EleutherAI's 6B model is GPT-J
(`model=gpt-j-6b`, docs/study.md §7.1). The 6B-class models ran batch 256 as 32 x 8 accumulation (§4.7), the others
as 128 x 2.

Data: the 4,000 most-read CVDB people (2,000 men, 2,000 women), fractions q_no_repl .1 / qd1consis .25 /
qd2incons .25 / q .1 / d1 .08 / d2 .08 / d3 .08 / no_qd .06 (400/1000/1000/400/320/320/320/240 entities),
`tve` definitions, entity-association test sets. Stage 1: 16,000 examples, 20 epochs; stage 2: 960 definitions,
10 epochs; batch 256 (128 x 2 accumulation); HF Adafactor lr 5e-5 linear to 0, clip 1.0; bf16 compute;
block 48, 8 new tokens; 20 stage-1 seeds (600-619) x 5 stage-2 seeds.

Weights: `model.init_from` names Pythia-2.8B-deduped (downloaded when the hub is reachable); offline, point it at
a local copy of the model folder: --config.model.init_from=/models/pythia-2.8b-deduped
Study's result (poster, ±0.005): after stage 2 EM d1consis ≈ 0.31 > d3consis ≈ 0.30 > d2consis ≈ 0.28;
entity-association "name" gap ≈ +0.11. Hardware: one 80 GB accelerator per seed (not timed here).

On a TPU slice run each step's 256 in one pass, `:passes=1` (listed as a deviation; the update is the same,
since the loss is token-weighted over the whole batch however it is split): `fsdp` spreads the batch over the
chips, so one pass fits, and it gathers the sharded weights once a step instead of twice. TPU plan (compile-time
estimates, `python -m iml_jax.tpu_plan --config=configs/pythia_cvdb_2stage.py:passes=1 --tpu=v5litepod-8`): 11.1 GiB
per chip on a v5litepod-8 (mesh.rules fsdp over its 8 chips), 24.0 TFLOP per chip and step, a step bound of 262 ms
by XLA's byte count (FLOP-bound at 122 ms by the HBM estimate, docs/tpu_plan.md), 17 chip-hours for the 20 x 5
seeds; the study's two passes: 10.9 GiB, 439 ms, 28 chip-hours.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="", passes=0), "configs/pythia_cvdb_2stage.py")
  if args["model"]:
    config = blocks.model_size_sweep(args["model"], "cvdb")
  else:
    config = blocks.study_define(study_settings.cvdb_main())
  return blocks.in_passes(config, args["passes"])
