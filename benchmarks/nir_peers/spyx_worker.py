"""spyx 1.0 (JAX): ``spyx.nir.from_nir(g, x, dt=metadata['dt'])`` (runs/nir_peers/spyx/venv).

spyx runs channels-last: (C,H,W) inputs are given as (H,W,C), as its own ``to_nir``
expects (``_nir_to_spyx_shape``).  ``from_nir`` builds the model and runs the whole
time-major sequence ``(T, B, ...)`` in one ``jax.lax.scan``.  Parameters are float32
(nnx's default param dtype), so it runs in float32."""
import sys
from pathlib import Path

import nir
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ImportStageError, main  # noqa: E402


def run_case(path, x, record):
    import jax.numpy as jnp
    import spyx.nir
    g = nir.read(path)
    if x.ndim == 5:  # (T, B, C, H, W) -> (T, B, H, W, C)
        x = x.transpose(0, 1, 3, 4, 2)
    try:  # from_nir builds and runs in one call: split the stages for the report
        model = spyx.nir._build_model(g, float(g.metadata["dt"]), spyx.nir.nnx.Rngs(0))
    except Exception as exc:  # noqa: BLE001
        raise ImportStageError(exc) from exc
    del model
    _, out = spyx.nir.from_nir(g, jnp.asarray(x, dtype=jnp.float32),
                               dt=float(g.metadata["dt"]))
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 5:  # channels-last back to (C, H, W)
        out = out.transpose(0, 1, 4, 2, 3)
    return out, {}


if __name__ == "__main__":
    sys.exit(main(run_case, ("spyx", "flax", "jax", "nir"), "float32"))
