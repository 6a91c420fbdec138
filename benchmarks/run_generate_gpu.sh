#!/bin/bash
# The generate benchmark at several model and batch sizes, as run on a GPU machine (docs/performance.md has the latest rows).
set -e
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=.:$PYTHONPATH
nvidia-smi --query-gpu=name --format=csv,noheader || true
for args in "" "--batch_size=32 --d_model=64 --n_layers=2 --n_heads=4" "--batch_size=512 --num_prompts=2048" \
            "--d_model=512 --n_layers=6 --n_heads=8 --vocab_size=50304 --batch_size=256 --num_prompts=1024"; do
  echo "== benchmarks/generate.py $args"
  python benchmarks/generate.py $args 2>&1 | grep -E "devices|identical|prompts/s|per round|RESULT|Error|error"
done
