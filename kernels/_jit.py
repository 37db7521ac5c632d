"""Numba wrapper and small helpers shared by every kernel module.

Compilation is lazy (first call per type signature) and cached on disk with numba's documented
``cache=True`` in the directory named by numba's ``NUMBA_CACHE_DIR`` setting, which this module
sets before any kernel is defined: ``<root>/kernels-<hash of kernels/*.py>``. ``<root>`` is
``$STOCKRAY_NUMBA_CACHE_DIR`` if set, else ``$STOCKRAY_DATA_DIR/cache/numba`` if the data dir
is set in the environment, else numba's own default place, ``kernels/__pycache__``, when it is
writable, else ``~/.cache/stockray/numba``. numba keys a cache entry on its own file only, so an engine tick
function that inlines a helper from another kernels file would keep the old helper after that
file changed; a directory per package hash means any edit to kernels/ starts from a fresh
cache. ``import kernels`` costs only numba's own import; the first call of each kernel in a
fresh cache compiles it (:func:`kernels.warmup` pays that once at process start, e.g. in a Ray
actor's ``__init__``), later processes load the cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path

_PKG_DIR = Path(__file__).resolve().parent


def _package_stamp() -> str:
    """sha256 over every kernels/*.py: one edit changes the cache directory."""
    h = hashlib.sha256()
    for f in sorted(_PKG_DIR.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    given = os.environ.get("STOCKRAY_NUMBA_CACHE_DIR")
    if given:
        return Path(given)
    data_dir = os.environ.get("STOCKRAY_DATA_DIR")
    if data_dir:
        return Path(data_dir).resolve() / "cache" / "numba"
    in_tree = _PKG_DIR / "__pycache__"
    try:
        in_tree.mkdir(exist_ok=True)
        if os.access(in_tree, os.W_OK):
            return in_tree
    except OSError:
        pass
    return Path.home() / ".cache" / "stockray" / "numba"


def cache_dir() -> Path:
    """Where this version of the kernels caches its compiled code."""
    return _cache_root() / f"kernels-{_package_stamp()}"


os.environ["NUMBA_CACHE_DIR"] = str(cache_dir())
if "numba.core.config" in sys.modules:  # numba read its settings already: re-read them
    sys.modules["numba.core.config"].reload_config()

import numpy as np
from llvmlite import ir as _ir
from numba import njit as _njit
from numba.core import types as _types
from numba.extending import intrinsic as _intrinsic

__all__ = ["any_nan", "as_f64", "cache_dir", "fma", "njit", "segments"]


def njit(fn):
    """Compile ``fn`` with the flags every kernel uses.

    ``error_model="numpy"`` makes ``x / 0.0`` give inf/NaN like numpy instead of raising, so the
    batch kernel, the incremental state and the engine agree on degenerate inputs.
    ``nogil=True`` lets threaded callers (Ray actors with threads) run kernels in parallel.
    """
    return _njit(cache=True, nogil=True, error_model="numpy")(fn)


@_intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (IEEE 754 fusedMultiplyAdd, LLVM's ``llvm.fma.f64``).

    Recursive smoothers (EMA, Wilder's RSI/ATR, MACD) are bound by the latency of their
    ``prev * (1 - k) + x * k`` chain: a separate multiply and add cost 8 cycles per bar, one
    fused op 4 (TA-Lib 0.6 runs its own recursions as FMAs on CPUs that have them). Unlike
    ``fastmath`` contraction, the intrinsic is explicit, so the batch kernel, the ``*State``
    step and the engine round identically; without hardware FMA LLVM calls libm's ``fma``,
    which is exact too. NaN and inf propagate as in IEEE arithmetic.
    """
    if not all(isinstance(t, (_types.Float, _types.Integer)) for t in (a, b, c)):
        return None
    sig = _types.float64(a, b, c)

    def codegen(context, builder, signature, args):
        vals = [
            context.cast(builder, v, t, _types.float64)
            for v, t in zip(args, signature.args, strict=True)
        ]
        dbl = _ir.DoubleType()
        fn = builder.module.declare_intrinsic(
            "llvm.fma", [dbl], _ir.FunctionType(dbl, [dbl, dbl, dbl])
        )
        return builder.call(fn, vals)

    return sig, codegen


@njit
def any_nan(x):
    """True if the 1-D float array ``x`` holds a NaN.

    A branch-free OR over the whole array (LLVM vectorises it: 8 us per 100k values) so that
    kernels can take a vectorised path for NaN-free input; an early ``return`` on the first
    NaN would keep the loop scalar.
    """
    bad = False
    for i in range(x.shape[0]):
        bad |= math.isnan(x[i])
    return bad


def as_f64(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a contiguous 1-D float64 array (no copy when it already is one).

    Raises:
        ValueError: if ``x`` is not one-dimensional.
    """
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    return a


def same_length(*arrays: np.ndarray) -> None:
    """Raise ValueError unless all arrays have the same length."""
    n = arrays[0].shape[0]
    for a in arrays:
        if a.shape[0] != n:  # a loop, not a set of lengths: 0.1 us a call instead of 0.4
            lengths = sorted({b.shape[0] for b in arrays})
            raise ValueError(f"input arrays must have the same length, got {lengths}")


def check_length(length: int, minimum: int = 1, name: str = "length") -> int:
    """Validate a window length and return it as ``int``."""
    if int(length) != length or length < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {length!r}")
    return int(length)


def segments(valid: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` runs where ``valid`` is True (used by the ``*_ref`` specs)."""
    v = np.concatenate([[False], np.asarray(valid, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(v.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def by_segment(fn, out_count: int, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Apply ``fn`` to each NaN-free run of ``inputs`` and stitch the results (reference helper).

    This is the NaN policy stated in code: a NaN in any input splits the series, and every
    NaN-free run is treated as a fresh series with its own warm-up.
    """
    n = inputs[0].shape[0]
    outs = tuple(np.full(n, np.nan) for _ in range(out_count))
    valid = np.ones(n, dtype=bool)
    for a in inputs:
        valid &= ~np.isnan(a)
    for a, b in segments(valid):
        res = fn(*(x[a:b] for x in inputs))
        if out_count == 1:
            res = (res,)
        for o, r in zip(outs, res, strict=True):
            o[a:b] = r
    return outs
