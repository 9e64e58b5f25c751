#!/usr/bin/env bash
# The GPU check of issue 14: one CUDA GPU, about 8 minutes (the parts' limits add up to 9),
# nothing downloaded:
#   benchmarks/gpu_check.sh OUT_DIR        (e.g. benchmarks/results: writes gpu.md, gpu.json)
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
part() {  # part NAME SECONDS COMMAND...: run with a limit, log, record exit code and time
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  echo "[gpu_check] $name (limit ${limit} s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >> "$OUT/parts.txt"
  tail -n 3 "$OUT/$name.log"
  return $rc
}
B=benchmarks/gpu_bench.py
part env 30 "$PY" $B env --out "$OUT" || { echo "[gpu_check] no usable GPU/Triton: stop"; exit 2; }
part tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_triton_kernel.py tests/test_fused.py
part exact 40 "$PY" $B exact --out "$OUT"
part neuron 70 "$PY" $B neuron --out "$OUT" --rounds 2
part distill_small 70 "$PY" $B distill --workload small --out "$OUT" --rounds 1
part distill_large 100 "$PY" $B distill --workload large --amp --out "$OUT" --rounds 1
part digits 140 "$PY" $B digits --out "$OUT"
"$PY" $B report --out "$OUT" > /dev/null && echo "[gpu_check] $OUT/gpu.md, $OUT/gpu.json ($SECONDS s)"
