"""Triton neuron kernel == reference ``cuba_multistep`` (spikes exactly, grads to a bound).

The kernel tests (marker ``gpu_kernel``) need the optional triton package and either a
CUDA device or Triton's CPU interpreter: ``make test-gpu-kernel`` installs triton and runs
them with ``TRITON_INTERPRET=1``.  Without triton, or without both, they are skipped, so
the default suite stays fast.  The backend-selection tests need neither.

Exactness: the kernel does the reference's elementwise float32 operations in the same
order, with no fused multiply-add (``enable_fp_fusion=False``; checked in the PTX), so
spikes are equal bit for bit by construction, on any machine.

Gradient bound: per step the kernel's g = dL/dv differs from autograd's only by the order
of <= 4 additions and by the surrogate's expression (``c / (1 + z^2)`` vs autograd's
reciprocal-times-constant, the exp of the sigmoid): a few float32 ulps, ~1e-7 relative.
The reverse recurrence is a contraction (|alpha|, |beta| <= 1, masks in {0, 1}), so these
errors add up linearly over T: <= T * few ulp * max|g| ~ 1e-6 for T = 4 and |g| of a few.
1e-5 (absolute and relative, as tests/test_fused.py) leaves a 10x margin; T = 37 gets
1e-4.  16-bit inputs: the kernel's float32 gradient is rounded once to the input dtype,
so the bound adds half an ulp of it (2^-8 relative for bfloat16, 2^-11 for float16).
"""
import json
import os
import subprocess
import sys
import warnings
import zlib

import pytest
import torch

from kd_snn.neurons import fused
from kd_snn.neurons.functional import cuba_multistep
from kd_snn.neurons.fused import cuba_multistep_fused
from kd_snn.neurons.surrogate import get_surrogate
from test_fused import SHAPE, _params

HAS_TRITON = fused.load_triton() is not None
INTERPRETED = HAS_TRITON and fused._TRITON.interpreted()
DEVICE = "cpu" if INTERPRETED or not torch.cuda.is_available() else "cuda"
kernel = pytest.mark.gpu_kernel
needs_kernel = pytest.mark.skipif(
    not HAS_TRITON or not (INTERPRETED or torch.cuda.is_available()),
    reason="triton not installed (optional)" if not HAS_TRITON else
    "no CUDA device and not TRITON_INTERPRET=1 (run: make test-gpu-kernel)")
SURROGATES = [("atan", 1.0), ("sigmoid", 0.7), ("triangle", 1.5)]
LAYOUTS = ["scalar-lif", "scalar-cuba", "tensor-scalar", "neuron-lif", "neuron-cuba", "channel"]


def _to(p, device):
    return p.to(device) if torch.is_tensor(p) else p


def _run(x, params, surrogate, width, detach, gy, ref_x=None):
    """((s, dx, dbias) of the reference on ``ref_x`` (default x), same of the kernel)."""
    alpha, beta, thr, bias = params
    out = []
    for fused_run in (False, True):
        xi = (x if fused_run or ref_x is None else ref_x).detach().clone().requires_grad_()
        bi = bias
        if torch.is_tensor(bias):
            bi = bias.detach().clone().requires_grad_()
        elif bias is not None:
            bi = torch.tensor(float(bias), device=x.device, requires_grad=True)
        if fused_run:
            s = cuba_multistep_fused(xi, alpha, beta, thr, bi, surrogate, width,
                                     backend="triton", detach_reset=detach)
        else:
            s, _ = cuba_multistep(xi, alpha, beta, thr, bi, get_surrogate(surrogate, width),
                                  detach_reset=detach)
        (s * gy).sum().backward()
        out.append((s.detach(), xi.grad, None if bi is None else bi.grad))
    return out


# --------------------------------------------------------------------------- kernel
@kernel
@needs_kernel
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "undetached"])
@pytest.mark.parametrize("surrogate,width", SURROGATES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_reference(layout, surrogate, width, detach):
    gen = torch.Generator().manual_seed(zlib.crc32(f"triton/{surrogate}/{layout}".encode()))
    x = (1.2 * torch.randn(SHAPE, generator=gen)).to(DEVICE)
    params = tuple(_to(p, DEVICE) for p in _params(layout, gen))
    gy = torch.randn(SHAPE, generator=gen).to(DEVICE)
    (s_ref, gx_ref, gb_ref), (s, gx, gb) = _run(x, params, surrogate, width, detach, gy)
    assert s.dtype == s_ref.dtype and s.shape == s_ref.shape
    assert torch.equal(s, s_ref)                      # spikes exactly
    assert 0.05 < s.float().mean() < 0.95             # spikes and resets both exercised
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)
    if gb_ref is not None:
        assert gb.shape == gb_ref.shape
        torch.testing.assert_close(gb, gb_ref, atol=1e-5, rtol=1e-5)


@kernel
@needs_kernel
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "undetached"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("layout", ["scalar-cuba", "neuron-lif", "channel"])
def test_half_inputs_float32_state(layout, dtype, detach):
    """16-bit x (autocast): the state is float32, so spikes equal the reference on x.float()."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"half/{dtype}/{layout}".encode()))
    x = (1.2 * torch.randn(SHAPE, generator=gen)).to(dtype).to(DEVICE)
    params = tuple(_to(p, DEVICE) for p in _params(layout, gen))
    gy = torch.randn(SHAPE, generator=gen).to(dtype).to(DEVICE)  # exact in both dtypes
    (s_ref, gx_ref, gb_ref), (s, gx, gb) = _run(x, params, "atan", 1.0, detach, gy.float(),
                                                 ref_x=x.float())
    assert s.dtype == dtype and gx.dtype == dtype
    assert torch.equal(s.float(), s_ref)
    rtol = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11   # half an ulp
    torch.testing.assert_close(gx.float(), gx_ref, atol=1e-5, rtol=rtol + 1e-5)
    if gb_ref is not None:
        torch.testing.assert_close(gb.float(), gb_ref, atol=1e-5, rtol=1e-5)


@kernel
@needs_kernel
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "undetached"])
def test_long_T_several_blocks(detach):
    """T > 32 and N over two blocks, the last one partial (masked lanes)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(37, 2, 2500, generator=gen).to(DEVICE)
    gy = torch.randn(x.shape, generator=gen).to(DEVICE)
    params = (0.5, 0.9, 1.0, None)
    (s_ref, gx_ref, _), (s, gx, _) = _run(x, params, "sigmoid", 1.0, detach, gy)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(gx, gx_ref, atol=1e-4, rtol=1e-4)


@kernel
@needs_kernel
def test_threshold_edge_is_strict_and_empty():
    x = torch.tensor([[1.0, 0.1, 0.3, 1.0000001], [0.0, 0.1, 0.3, 0.0]], device=DEVICE)
    for thr in (1.0, 0.1, 0.3):
        ref, _ = cuba_multistep(x, 0.0, 0.5, thr)
        assert torch.equal(cuba_multistep_fused(x, 0.0, 0.5, thr, backend="triton"), ref)
    e = torch.zeros(3, 2, 0, device=DEVICE, requires_grad=True)   # no neurons: no launch
    s = cuba_multistep_fused(e, 0.3, 0.5, 1.0, backend="triton")
    s.sum().backward()
    assert s.shape == e.shape and e.grad.shape == e.shape


@kernel
@needs_kernel
def test_saves_only_the_input():
    """Recompute in backward: autograd keeps x and the parameters, no (T, N) state."""
    x = torch.randn(4, 2, 64, device=DEVICE, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s = cuba_multistep_fused(x, 0.3, 0.5, 1.0, torch.zeros(64, device=DEVICE),
                                 backend="triton")
    assert max(sizes) == x.numel() and sizes.count(x.numel()) == 1   # x, then (P,) params
    s.sum().backward()


_AOT = r"""
import json, os, subprocess, tempfile, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kd_snn.neurons import triton_kernel as K
assert not K.interpreted()
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
TYPES = {"c1": "fp32", "c2": "fp32", "T": "i32", "N": "i32", "P": "i32"}
out = {}
def build(name, elem, consts):
    fn = K.KERNELS[name]
    sig = {n: "constexpr" if n in consts else TYPES.get(n) or
           ("*" + elem if n in ("x_ptr", "s_ptr", "gs_ptr") else "*fp32") for n in fn.arg_names}
    # what a launch specialises: 16-byte aligned pointers, N and P multiples of 16
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if sig[n].startswith("*") or n in ("N", "P")}
    k = triton.compile(ASTSource(fn, sig, constexprs=consts, attrs=attrs),
                       target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": 4, "enable_fp_fusion": False})
    ptx = k.asm["ptx"]
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:   # the machine code (SASS)
        f.write(k.asm["cubin"])
        f.flush()
        sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    out[f"{name}/{elem}/{sorted(consts.items())}"] = {
        "fma": "fma." in ptx or "FFMA" in sass, "vector": "ld.global.v" in ptx,
        "sass_lines": len(sass.splitlines())}
for elem in ("fp32", "fp16", "bf16"):
    for plain in (True, False):
        build("forward", elem, {"PLAIN": plain, "VEC": True, "BIAS": True, "BLOCK": 1024})
for kind in (0, 1, 2):
    for detach in (True, False):
        build("backward", "bf16" if kind == 1 else "fp32",
              {"PLAIN": kind == 2, "VEC": kind != 0, "BIAS": True, "KIND": kind,
               "DETACH": detach, "NEED_GV": True, "BLOCK": 1024})
print("AOT " + json.dumps(out))
"""


@kernel
@needs_kernel
def test_compiles_for_cuda_without_fma():
    """Compile for sm_90 (H100/H200) without a GPU: every variant builds, neither the PTX nor
    the machine code (SASS, by the cuobjdump that triton ships) has a fused multiply-add
    (spikes stay exact), and loads are vectorised (the specialised launch)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _AOT], capture_output=True, text=True,
                         env=env, cwd=os.path.dirname(os.path.dirname(__file__)), timeout=600)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("AOT ")]
    assert res.returncode == 0 and lines, res.stderr[-3000:]
    out = json.loads(lines[-1][4:])
    assert len(out) == 12
    for tag, r in out.items():
        assert not r["fma"], tag
        assert r["vector"], tag
        assert r["sass_lines"] > 100, tag


# --------------------------------------------------------------------------- selection
@pytest.fixture
def no_triton(monkeypatch):
    monkeypatch.setattr(fused, "_TRITON", None)
    monkeypatch.setattr(fused, "_TRITON_ERROR", "ModuleNotFoundError: No module named 'triton'")
    monkeypatch.setattr(fused, "_TRITON_WARNED", False)


def test_auto_without_triton_warns_once(no_triton):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for dt in (torch.float32, torch.float16, torch.bfloat16, torch.float32):
            assert fused._select("cuda", dt, "auto") == "torch"
        assert fused._select("cpu", torch.float32, "auto") in ("cpp", "torch")
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)
            and "Triton" in str(x.message)]
    assert len(msgs) == 1 and "requirements-gpu-kernel.txt" in msgs[0]
    with pytest.raises(RuntimeError, match="optional triton"):
        fused._select("cuda", torch.float32, "triton")


def test_auto_picks_triton_on_cuda(monkeypatch):
    class Interp:
        @staticmethod
        def interpreted():
            return False
    monkeypatch.setattr(fused, "_TRITON", Interp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            assert fused._select("cuda", dt, "auto") == "triton"
        assert fused._select("cuda", torch.float64, "auto") == "torch"
        assert fused._select("cuda", torch.float32, "torch") == "torch"
        assert fused._select("cpu", torch.float32, "auto") != "triton"
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        fused._select("cpu", torch.float32, "triton")     # compiled kernels, CPU tensor
    with pytest.raises(RuntimeError, match="float32/float16/bfloat16"):
        fused._select("cuda", torch.float64, "triton")
    with pytest.raises(RuntimeError, match="cpp backend"):
        fused._select("cuda", torch.float32, "cpp")


def test_cpu_never_imports_triton(no_triton):
    """auto on CPU tensors keeps the C++/torch path and says nothing about Triton."""
    x = torch.randn(4, 2, 8, requires_grad=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = cuba_multistep_fused(x, 0.0, 0.5, 1.0, detach_reset=False)
        s.sum().backward()
    assert not [m for m in w if "Triton" in str(m.message)]
    assert fused._TRITON is None
