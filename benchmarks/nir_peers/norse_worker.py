"""norse 1.1: ``norse.torch.from_nir(g, dt=metadata['dt'])`` (main venv), one call per step
with the state carried."""
import sys
import warnings
from pathlib import Path

import nir
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import imported, main  # noqa: E402
from _torch import in_float64, recorder  # noqa: E402


def run_case(path, x, record):
    import norse.torch as norse
    g = nir.read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = imported(norse.from_nir, g, dt=float(g.metadata["dt"]))
    model = in_float64(model)
    rec = recorder(model, record)
    xt = torch.from_numpy(x)
    outs, state = [], None
    with torch.no_grad():
        for t in range(xt.shape[0]):
            o, state = model(xt[t], state)
            outs.append(o.detach())
    return (torch.stack(outs).numpy(),
            {k: torch.stack(v).double().numpy() for k, v in rec.items() if v})


if __name__ == "__main__":
    sys.exit(main(run_case, ("norse", "nirtorch", "nir"), "float64"))
