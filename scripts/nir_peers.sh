#!/usr/bin/env bash
# One virtual environment per third-party NIR importer, for benchmarks/nir_backends.py:
#   runs/nir_peers/<peer>/venv   (runs/ is git-ignored; the main .venv is never touched)
#
#   bash scripts/nir_peers.sh              # all peers: sinabs rockpool spyx
#   bash scripts/nir_peers.sh spyx         # one peer
#
# Exact pins.  Each venv gets nir==1.0.8 (what kdsnn writes with), and its own frameworks:
# - sinabs 3.1.3 declares nir<=1.0.4 and samna (Speck hardware), neither needed by its
#   from_nir: installed --no-deps next to the CPU torch 2.13 (pip.conf's find-links has it),
#   nirtorch 2.6 (its from_nir runs nirtorch's graph executor), pbr, matplotlib (imported
#   by sinabs/network.py at import time).
# - rockpool 3.1.0 (sdist) with its torch backend: torch 2.13 CPU, nir, nirtorch 2.6, scipy.
# - spyx 1.0.0 (JAX; needs numpy 2): jax/jaxlib 0.10.2 (CPU), flax 0.12.8, optax, numpy 2.4.6.
# A peer whose install fails is left without venv/bin/python-ok; the benchmark reports it as
# "not installed" with the log's last line.  Logs: runs/nir_peers/<peer>/install.log.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
PEERS=("$@")
[ ${#PEERS[@]} -eq 0 ] && PEERS=(sinabs rockpool spyx)

pins() {
  case "$1" in
    sinabs) echo "--no-deps sinabs==3.1.3"
            echo "nir==1.0.8 nirtorch==2.6 torch==2.13.0 numpy==1.26.4 pbr==7.1.3 matplotlib==3.11.2" ;;
    rockpool) echo "rockpool==3.1.0 nir==1.0.8 nirtorch==2.6 torch==2.13.0 numpy==1.26.4 scipy==1.17.1" ;;
    spyx) echo "spyx==1.0.0 nir==1.0.8 jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 numpy==2.4.6" ;;
    *) echo "unknown peer $1" >&2; return 1 ;;
  esac
}

status=0
for peer in "${PEERS[@]}"; do
  dir=$ROOT/runs/nir_peers/$peer
  mkdir -p "$dir"
  rm -f "$dir/ok"
  spec=$(pins "$peer") || { status=1; continue; }
  echo "[nir_peers] $peer: $spec"
  (
    [ -x "$dir/venv/bin/python" ] || "$PY" -m venv "$dir/venv"
    while read -r line; do  # one pip call per line of the pins
      # shellcheck disable=SC2086
      "$dir/venv/bin/pip" install -q --disable-pip-version-check $line || exit 1
    done <<<"$spec"
  ) >"$dir/install.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    "$dir/venv/bin/pip" freeze >"$dir/freeze.txt" 2>/dev/null
    touch "$dir/ok"
    echo "[nir_peers] $peer: ok ($dir/venv)"
  else
    status=1
    echo "[nir_peers] $peer: install failed (rc $rc): $(tail -n 1 "$dir/install.log")"
  fi
done
exit $status
