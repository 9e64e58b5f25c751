"""sinabs 3.1: ``sinabs.from_nir(g, batch_size=B)`` (runs/nir_peers/sinabs/venv).

sinabs' layers are "Squeeze" layers: one call takes the whole sequence as ``(B*T, ...)``
(batch and time merged, batch-major) and keeps the membrane inside the layer."""
import sys
import warnings
from pathlib import Path

import nir
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import imported, main  # noqa: E402
from _torch import first, in_float64, recorder  # noqa: E402


def _bt(y, B, T):
    """(B*T, ...) -> (T, B, ...)."""
    return y.reshape(B, T, *y.shape[1:]).transpose(0, 1)


def run_case(path, x, record):
    import sinabs
    T, B = x.shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = imported(sinabs.from_nir, nir.read(path), batch_size=B)
    model = in_float64(model)
    rec = recorder(model, record)
    xt = torch.from_numpy(x).transpose(0, 1).reshape(B * T, *x.shape[2:])
    with torch.no_grad():
        out = first(model(xt))
    return (_bt(out, B, T).numpy(),
            {k: _bt(v[0], B, T).double().numpy() for k, v in rec.items() if v})


if __name__ == "__main__":
    sys.exit(main(run_case, ("sinabs", "nirtorch", "nir"), "float64"))
