r"""The study's main experiment: Pythia-2.8B on CVDB, two stages (STUDY.md §3, §7.3, §11.2).

Command: (needs the CVDB file, Pythia weights and an accelerator)
  python -m iml_jax.main --config=configs/pythia_cvdb_2stage.py --workdir=$WORKDIR \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv

The study's model-size sweep and other decoder families run the same experiment with `model=`:
  --config=configs/pythia_cvdb_2stage.py:model=pythia-410m   (pythia-70m … pythia-6.9b, gpt-neo-125M,
  gpt-neo-1.3B, gpt-neo-2.7B, gpt-j-6b, llama-2-7b, gpt2; see iml_jax/config_defaults.py PRETRAINED)
The study's GPT-Neo sweep names "gpt-neo-6B", which is not a hub id; EleutherAI's 6B model is GPT-J
(`model=gpt-j-6b`, STUDY.md §7.1); the study ran its 6B points with 32 x 8 seeds (§4.7):
  --config.n_seeds=32 --config.n_seeds_stage2=8

Data: the 4,000 most-read CVDB people (2,000 men, 2,000 women), fractions q_no_repl .1 / qd1consis .25 /
qd2incons .25 / q .1 / d1 .08 / d2 .08 / d3 .08 / no_qd .06 (400/1000/1000/400/320/320/320/240 entities),
`tve` definitions, entity-association test sets. Stage 1: 16,000 examples, 20 epochs; stage 2: 960 definitions,
10 epochs; batch 256 (128 x 2 accumulation); HF Adafactor lr 5e-5 linear to 0, clip 1.0; bf16 compute;
block 48, 8 new tokens; 20 stage-1 seeds (600-619) x 5 stage-2 seeds.

Weights: `model.init_from` names Pythia-2.8B-deduped (downloaded when the hub is reachable); offline, point it at
a local copy of the model folder: --config.model.init_from=/models/pythia-2.8b-deduped
Study's result (poster, ±0.005): after stage 2 EM d1consis ≈ 0.31 > d3consis ≈ 0.30 > d2consis ≈ 0.28;
entity-association "name" gap ≈ +0.11. Hardware: one 80 GB accelerator per seed (not timed here).
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  args = cd.parse_arg(arg)
  cd.check_arg(args, ("model",), "configs/pythia_cvdb_2stage.py")
  return cd.cvdb_two_stage(cd.pretrained(args.get("model") or "pythia-2.8b", dtype="bfloat16"))
