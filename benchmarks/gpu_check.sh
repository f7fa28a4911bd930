#!/usr/bin/env bash
# The GPU check, under 10 minutes on one GPU, from the repository root:
#   1. the unpadded encoder against the Hugging Face model (tests/test_encoder.py: eval logits and losses, 20
#      training steps' losses and gradients, no host sync; BERT, RoBERTa, XLM-R, ELECTRA) and a pack of 4
#      learning rates against its 4 solo runs (tests/test_packs.py) on the device, in float32 and under bf16
#      autocast; fp16 with its gradient scaler (tests/test_trainer_options.py);
#   2. train throughput of every miniature at batch sizes 8 and 32 -> results/throughput.csv (the dry run's cost
#      model then uses these instead of its FLOP guess);
#   3. the 20-configuration BERT-Tiny SST-2 grid (benchmarks/grid-sst2.toml) through `glue-bench sweep` with 1, 4
#      and 8 workers sharing the GPU, solo and in packs of 4 learning rates, against the Trainer run once per
#      configuration; nvidia-smi samples the GPU's utilization and memory every second meanwhile (gpu-usage.csv);
#   4. under bf16 autocast: benchmarks/speed_guard.py's ratio (glue-bench's solo default against the Trainer with
#      dynamic padding, SST-2's first 4,800 rows; then in float32) and the packs grid (grid-sst2-bf16.toml).
#
#     benchmarks/gpu_check.sh                         # on a machine with a GPU
#     benchmarks/gpu_check.sh --device cpu --small    # the same steps, small, on a CPU (the slow CI stage runs this)
#
# Options: --device cuda|cpu, --small, --data DIR (default ../shared/glue_data), --out DIR (default
# benchmarks/results/gpu-check, or $OUT when set): one log per step, throughput.csv and grid.csv land there.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda small=0 data=../shared/glue_data out="${OUT:-benchmarks/results/gpu-check}"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --small) small=1; shift ;;
        --data) data="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "gpu_check.sh: unknown option '$1' (options: --device cuda|cpu, --small, --data DIR, --out DIR)" >&2
           exit 2 ;;
    esac
done
case "$device" in
    cuda) python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
              echo "gpu_check.sh: torch sees no CUDA device here; on a CPU run: benchmarks/gpu_check.sh --device cpu --small" >&2
              exit 2; } ;;
    cpu) export CUDA_VISIBLE_DEVICES="" ;;  # every step, the sweep's workers included, then runs on the CPU
    *) echo "gpu_check.sh: --device must be cuda or cpu, not '$device'" >&2; exit 2 ;;
esac
[ -d "$data" ] || { echo "gpu_check.sh: no GLUE data at $data (pass --data DIR: the original TSV layout)" >&2; exit 2; }
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started_all=$SECONDS
step() { echo "== $1"; step_started=$SECONDS; }
done_step() { echo "   $1: $((SECONDS - step_started))s"; }

step "1. exactness on $device: float32, then bf16 autocast; packs; fp16"
encoder="match_hf or host_sync" packs="four_steps"
if [ "$small" -eq 1 ]; then  # the CPU rehearsal: one model's cases (the fast suite runs them all in float32)
    encoder="(match_hf and random-L2-H128) or host_sync" packs="four_steps and random and sst2"
fi
for precision in fp32 bf16; do
    for check in encoder packs; do
        log="$out/exactness-$check-$precision.log"
        if [ "$check" = encoder ]; then tests=(tests/test_encoder.py -k "$encoder"); \
        else tests=(tests/test_packs.py -k "$packs"); fi
        if ! GLUE_BENCH_TEST_DEVICE="$device" GLUE_BENCH_TEST_AUTOCAST="$precision" \
            python -m pytest -q -n 0 -p no:cacheprovider "${tests[@]}" >"$log" 2>&1; then
            tail -20 "$log"
            echo "gpu_check.sh: the $check exactness tests failed in $precision on $device (whole log: $log)" >&2
            exit 1
        fi
        echo "   $check $precision: $(tail -1 "$log")"
    done
done
log="$out/fp16.log"
if [ "$small" -eq 0 ] && ! python -m pytest -q -n 0 -p no:cacheprovider -m slow tests/test_trainer_options.py -k fp16 \
    >"$log" 2>&1; then
    tail -20 "$log"; echo "gpu_check.sh: the fp16 test failed on $device (whole log: $log)" >&2; exit 1
fi
[ "$small" -eq 0 ] && echo "   fp16: $(tail -1 "$log")"
done_step "step 1"

step "2. train throughput per miniature, batch sizes 8 and 32"
if [ "$small" -eq 1 ]; then
    python benchmarks/throughput.py --models L-2_H-128,L-4_H-256 --seconds 0.5 --out "$out/throughput.csv"
else
    python benchmarks/throughput.py --threads 1 --out results/throughput.csv
    cp results/throughput.csv "$out/throughput.csv"
fi
done_step "step 2"

step "3. the grid: glue-bench sweep (1, 4, 8 workers; solo and packs of 4) against the Trainer once per configuration"
if command -v nvidia-smi >/dev/null && [ "$device" = cuda ]; then  # utilization and memory, every second
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 >"$out/gpu-usage.csv" &
    sampler=$!
fi
if [ "$small" -eq 1 ]; then
    python benchmarks/grid.py --sweep benchmarks/grid-small.toml --data "$data" \
        --arms glue-bench,glue-bench:2,glue-bench+pack2,trainer-dynamic --out "$out/grid.csv"
else
    python benchmarks/grid.py --sweep benchmarks/grid-sst2.toml --data "$data" \
        --arms glue-bench,glue-bench:4,glue-bench:8,glue-bench+pack4,glue-bench:4+pack4,glue-bench:8+pack4,trainer-dynamic \
        --out "$out/grid.csv"
fi
done_step "step 3"

step "4. bf16: the speed guard's comparison (solo default against the Trainer, dynamic padding) and the packs grid"
if [ "$device" = cuda ]; then
    # benchmarks/speed_guard.py's arms on the GPU under bf16 autocast in both loops; the ratio is reported, not
    # judged (--min-ratio 0: the CPU's threshold says nothing about a GPU), then float32 for the same ratio
    python benchmarks/speed_guard.py --data "$data" --bf16 --min-ratio 0 | tee "$out/speed-guard-bf16.log"
    python benchmarks/speed_guard.py --data "$data" --min-ratio 0 | tee "$out/speed-guard-fp32.log"
    python benchmarks/grid.py --sweep benchmarks/grid-sst2-bf16.toml --data "$data" \
        --arms glue-bench,glue-bench+pack4,glue-bench:4+pack4,trainer-dynamic --out "$out/grid-bf16.csv"
else
    echo "   step 4 skipped on $device: bf16 autocast is a GPU's (the recipe's bf16 does nothing on a CPU)"
fi
[ -n "${sampler:-}" ] && kill "$sampler"
done_step "step 4"
echo "== gpu_check.sh on $device: $((SECONDS - started_all))s; results in $out"
