#!/usr/bin/env bash
# The main job on the embedded default data set (scikit-learn digits):
# ANN teacher -> SAMD + NLD spiking student -> Loihi fixed point -> NIR / ONNX / Lava
# export -> Lava parity -> energy report.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${1:-runs/demo}"
PARITY_SAMPLES="${PARITY_SAMPLES:-60}"
K=.venv/bin/kdsnn
$K teacher --config digits "$RUN" --force
$K distill "$RUN" --force
$K export "$RUN" --target all
$K parity "$RUN" --samples "$PARITY_SAMPLES"  # fast synapse models; the stock ones re-check 2 samples
$K report "$RUN" --source both --html  # Lava spikes: those parity kept
echo
echo "== summary ($RUN/metrics.json) =="
.venv/bin/python - "$RUN" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
print(f"teacher (ANN) test accuracy:        {m['teacher']['test_accuracy'] * 100:.2f} %")
print(f"student (SNN, SAMD+NLD) accuracy:   {m['student']['test_accuracy'] * 100:.2f} %")
q = m.get("quantized", {})
print(f"Loihi fixed point (emulation):      {q.get('quantized', 0) * 100:.2f} % on {q.get('samples')} samples")
p = m.get("parity", {})
print(f"Lava fixed_pt on {p.get('samples')} samples:          {p['accuracy']['lava'] * 100:.2f} % "
      f"(bit-exact vs emulation: {p.get('bit_exact')})")
PY
