#!/bin/bash
# The train-throughput benchmark as run on a GPU machine (docs/performance.md has the latest rows): small fp32, then the Pythia-410M shape in bf16.
set -e
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=.:$PYTHONPATH
nvidia-smi --query-gpu=name --format=csv,noheader || true
for args in "" "--d_model=1024 --n_layers=24 --n_heads=16 --vocab_size=50304 --batch_size=16 --seq_len=512 --dtype=bfloat16 --peak_tflops=989"; do
  echo "== benchmarks/train_throughput.py $args"
  python benchmarks/train_throughput.py $args 2>&1 | grep -E "devices|tokens/s|MFU|per round|RESULT|Error|error"
done
