#!/usr/bin/env bash
# One idempotent set-up: a virtual environment in .venv with the whole kdsnn stack.
# Re-running reuses the environment and skips installing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV="${KDSNN_VENV:-.venv}"
STAMP="$VENV/.kdsnn-setup-stamp"
want="$(cat scripts/setup.sh scripts/constraints.txt scripts/requirements.txt scripts/requirements-nir-peers.txt scripts/requirements-docs.txt scripts/patch_lava.py pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=(pip_quiet "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# pip warns about every package missing from the machine's local mirrors: keep real messages only
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
C=(-c scripts/constraints.txt)
echo "[setup] torch (CPU build; a GPU user installs CUDA torch first, see README)"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "${C[@]}" torch==2.13.0
fi
echo "[setup] scientific stack"
"${PIP[@]}" "${C[@]}" -r scripts/requirements.txt
echo "[setup] norse without torchvision (its wheels are CUDA builds)"
"${PIP[@]}" "${C[@]}" --no-deps norse==1.1.0
echo "[setup] neurobench (test dependency: the report's NeuroBench block is checked against it)"
"${PIP[@]}" "${C[@]}" --no-deps neurobench==2.3.0
echo "[setup] NIR peers spikingjelly + sinabs (optional test deps; setup goes on without them)"
"${PIP[@]}" "${C[@]}" --no-deps -r scripts/requirements-nir-peers.txt ||
  echo "[setup] spikingjelly/sinabs not installed (their NIR import tests skip)"
echo "[setup] lava-nc 0.10.0 + lava-dl 0.6.0 (declared for Python < 3.11; patched below)"
"${PIP[@]}" "${C[@]}" --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
"$VENV/bin/python" scripts/patch_lava.py
echo "[setup] docs tooling (mkdocs-material, mkdocstrings, mkdocs-jupyter; pinned)"
"${PIP[@]}" "${C[@]}" -r scripts/requirements-docs.txt
echo "[setup] kdsnn (editable)"
"${PIP[@]}" "${C[@]}" --no-deps --no-build-isolation -e .
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[setup] Fashion-MNIST (Debian package dataset-fashion-mnist; optional)"
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
   { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) ||
   echo "[setup] dataset-fashion-mnist not installed (only the Fashion-MNIST configs need it)"
fi
echo "$want" > "$STAMP"
echo "[setup] done: $VENV"
