#!/usr/bin/env bash
# The main job on the embedded default data set (scikit-learn digits).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${1:-runs/demo}"
K=(.venv/bin/kdsnn)
"${K[@]}" teacher --config digits "$RUN" --force
"${K[@]}" distill "$RUN" --force
