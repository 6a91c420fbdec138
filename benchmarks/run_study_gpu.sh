#!/bin/bash
# The study-workload benchmarks on one GPU in about 10 minutes (section limits add up to 630 s; the last is optional).
# Every figure goes to a file under $OUT (default ./study_gpu_out): one log per section, summary.txt with the
# lines the README and docs/performance.md quote. Each section has its own time limit, so a slow one cannot starve
# the rest.
#   bash benchmarks/run_study_gpu.sh
# On this workplace's GPU machine (device tool), whose image lacks ml-collections and tensorboardX, carry their
# wheels: here, `python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
# ml-collections==1.1.0 tensorboardX==2.6.5` (.whl/ ignored by git), then run with carry [".whl"]:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   && bash benchmarks/run_study_gpu.sh
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=.:$PYTHONPATH PYTHONUNBUFFERED=1
OUT=${OUT:-study_gpu_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; } >"$SUMMARY" 2>&1

section() {  # name, seconds, command...
  local name=$1 seconds=$2
  shift 2
  echo "== $name: $*" | tee -a "$SUMMARY"
  local start=$SECONDS
  timeout -k 30 "$seconds" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -E "devices|tokens/s|prompts/s|examples/s|identical|MFU|memory|FLOP|compiled|per round|RESULT| ms |products|Error|error:" \
    "$OUT/$name.log" | grep -v Warning | tee -a "$SUMMARY"
  echo "   (exit $rc, $((SECONDS - start)) s)" | tee -a "$SUMMARY"
  return $rc
}
crashed() {  # the last section failed, other than by its time limit
  local rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ]
}

# 1. The study's training step: batch 128 x accumulation 2 of 48 tokens, bf16 over fp32, HF Adafactor. Our
#    attention is the default, auto: cuDNN's flash attention here (first run on a GPU; einsum if it fails).
for model_seconds in pythia-70m:60 pythia-410m:80 pythia-1b:100; do
  model=${model_seconds%:*}
  step=($PY benchmarks/study_step.py --model=$model --batch_size=128 --grad_accum=2 --steps=2 --rounds=3 --peak_tflops=989)
  section "study_step_$model" "${model_seconds#*:}" "${step[@]}"
  crashed && section "study_step_${model}_einsum" "${model_seconds#*:}" "${step[@]}" --attention=einsum
done
# 2. Greedy EM evaluation of every eval set of a define experiment (4,000 entities): ours vs pipeline.
section study_eval_pythia-70m 50 $PY benchmarks/study_eval.py --model=pythia-70m
section study_eval_pythia-410m 50 $PY benchmarks/study_eval.py --model=pythia-410m
# 3. Gradient alignment, both vocabulary-sized matrices' gradients factored; memory per chunk (XLA's account on
#    CPU, README: 1.7 GB at 70M chunk 4, 6.2 GB at 410M chunk 4, 3.2 GB at 1B chunk 1).
section grad_alignment_pythia-70m 40 $PY benchmarks/grad_alignment.py --model=pythia-70m --chunk=8
section grad_alignment_pythia-410m 50 $PY benchmarks/grad_alignment.py --model=pythia-410m --chunk=4
section grad_alignment_pythia-1b 50 $PY benchmarks/grad_alignment.py --model=pythia-1b --chunk=4
# 4. Where the 1B step spends its time: the top operations of a profiler trace.
section profile_step_pythia-1b 40 $PY benchmarks/profile_step.py --model=pythia-1b --batch_size=128 --grad_accum=2
# 5. The study's from-scratch set-inclusion run as the study ran it (seed 630, stage-2 seed 0), time-boxed:
#    its log gives tokens/s every 50 steps and each evaluation's time (180,800 examples); a later session resumes
#    it from the same workdir if carried.
scratch=($PY -m iml_jax.main --config=configs/numeric_scratch.py --config.n_seeds=1 --config.n_seeds_stage2=1
  --config.progress_bar=False)
section numeric_scratch 50 "${scratch[@]}" --workdir="$OUT/numeric_scratch"
crashed && section numeric_scratch_einsum 50 "${scratch[@]}" --workdir="$OUT/numeric_scratch_einsum" \
  --config.model.attention=einsum
find "$OUT"/numeric_scratch* -name checkpoints -prune -o -type f -name "*.jsonl" -print 2>/dev/null | sort \
  | tee -a "$SUMMARY"
# 6. Last, as the run may reach its 10 minutes here: the 1B step with the loss computed 16 positions at a time
#    (the [B, 47, 50,304] float32 logits never whole), against section 1's memory and speed.
section study_step_pythia-1b_loss_chunk16 60 $PY benchmarks/study_step.py --model=pythia-1b --batch_size=128 \
  --grad_accum=2 --steps=2 --rounds=3 --peak_tflops=989 --loss_chunk=16
