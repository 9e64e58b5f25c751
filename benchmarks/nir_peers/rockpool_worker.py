"""rockpool 3.1: ``rockpool.nn.modules.from_nir`` (torch backend; runs/nir_peers/rockpool/venv).

rockpool's torch modules take the whole sequence as ``(B, T, N)`` in one call and keep
their state inside; the converted graph is nirtorch's GraphExecutor.  It runs in float32:
rockpool's modules keep float32 parameters that ``.double()`` does not convert (a float64
input fails in ``lif_torch.py`` forward)."""
import sys
import warnings
from pathlib import Path

import nir
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import imported, main  # noqa: E402
from _torch import first, recorder  # noqa: E402


def run_case(path, x, record):
    from rockpool.nn.modules import from_nir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = imported(from_nir, nir.read(path))
    rec = recorder(model, record)
    xt = torch.from_numpy(x).float().transpose(0, 1).contiguous()  # (B, T, ...)
    with torch.no_grad():
        out = first(model(xt))
    return (out.transpose(0, 1).double().numpy(),
            {k: v[0].transpose(0, 1).double().numpy() for k, v in rec.items() if v})


if __name__ == "__main__":
    sys.exit(main(run_case, ("rockpool", "nirtorch", "nir"), "float32"))
