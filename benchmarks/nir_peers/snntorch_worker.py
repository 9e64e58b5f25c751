"""snntorch 1.0: ``snntorch.import_nir.import_from_nir`` (main venv), one call per step."""
import sys
from pathlib import Path

import nir
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import imported, main, quiet  # noqa: E402
from _torch import first, in_float64, recorder  # noqa: E402


def run_case(path, x, record):
    from snntorch.import_nir import import_from_nir
    with quiet():  # import_from_nir print()s every w_scale array
        model = imported(import_from_nir, nir.read(path))
    model = in_float64(model)
    rec = recorder(model, record)
    xt = torch.from_numpy(x)
    with torch.no_grad(), quiet():
        outs = [first(model(xt[t])) for t in range(xt.shape[0])]
    return (torch.stack(outs).numpy(),
            {k: torch.stack(v).double().numpy() for k, v in rec.items() if v})


if __name__ == "__main__":
    sys.exit(main(run_case, ("snntorch", "nirtorch", "nir"), "float64"))
