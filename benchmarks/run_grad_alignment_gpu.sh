#!/bin/bash
# The gradient-alignment benchmark at two model sizes, as run on a GPU machine (docs/performance.md has the latest rows).
set -e
export PYTHONPATH=.:$PYTHONPATH
nvidia-smi --query-gpu=name --format=csv,noheader || true
for args in "" "--d_model=512 --n_layers=6 --n_heads=8 --vocab_size=50304 --definitions=32 --chunk=4"; do
  echo "== benchmarks/grad_alignment.py $args"
  python benchmarks/grad_alignment.py $args 2>&1 | grep -E "devices|examples/s|RESULT|Error|error"
done
