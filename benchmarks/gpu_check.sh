#!/usr/bin/env bash
# The GPU check (issues 14 and 31): one CUDA GPU, nothing downloaded:
#   benchmarks/gpu_check.sh OUT_DIR        (e.g. benchmarks/results: writes gpu.md, gpu.json)
#   GPU_CHECK_PARTS="tests chain" benchmarks/gpu_check.sh OUT_DIR   (a subset; env always runs)
# The parts in order of what they prove: tests (kernel and device tests on CUDA), chain (the
# paper's ResNet-19 w8 through teacher/distill with AMP, export with the emulation on CUDA
# equal bit for bit to the CPU's, parity, report: benchmarks/gpu_chain.py), exact, digits,
# neuron, distill. Limits add up to ~19 minutes; a 15-minute device lease runs
# GPU_CHECK_PARTS="tests chain exact digits".
# Needs CUDA torch (with the triton it brings) in .venv, then scripts/setup.sh; peers that
# are not installed (spikingjelly, cupy) are skipped with a note. Every part has a time
# limit, writes its JSON as soon as it ends, and a part that fails does not stop the rest.
set -uo pipefail
OUT="${1:?usage: benchmarks/gpu_check.sh OUT_DIR}"
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"
export TRITON_INTERPRET=0 PYTHONHASHSEED=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
: > "$OUT/parts.txt"
PARTS="${GPU_CHECK_PARTS:-tests chain exact digits neuron distill_small distill_large}"
part() {  # part NAME SECONDS COMMAND...: run with a limit, log, record exit code and time
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  if [ "$name" != env ] && [[ " $PARTS " != *" $name "* ]]; then return 0; fi
  echo "[gpu_check] $name (limit ${limit} s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >> "$OUT/parts.txt"
  tail -n 3 "$OUT/$name.log"
  return $rc
}
B=benchmarks/gpu_bench.py
part env 30 "$PY" $B env --out "$OUT" || { echo "[gpu_check] no usable GPU/Triton: stop"; exit 2; }
part tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_triton_kernel.py tests/test_fused.py \
  tests/test_devices.py
part chain 480 "$PY" benchmarks/gpu_chain.py --out "$OUT"
part exact 40 "$PY" $B exact --out "$OUT"
part digits 140 "$PY" $B digits --out "$OUT"
part neuron 70 "$PY" $B neuron --out "$OUT" --rounds 2
part distill_small 70 "$PY" $B distill --workload small --out "$OUT" --rounds 1
part distill_large 100 "$PY" $B distill --workload large --amp --out "$OUT" --rounds 1
"$PY" $B report --out "$OUT" > /dev/null && echo "[gpu_check] $OUT/gpu.md, $OUT/gpu.json ($SECONDS s)"
