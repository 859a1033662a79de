"""A software prefetch hint for Numba kernels: ``prefetch(array, index)``.

Why: a kernel that does real work per element (the unigram counter's scattered
increments) keeps fewer loads of its input in flight than a plain sequential read, so
the hardware prefetcher alone leaves it short of memory bandwidth. Asking for the
cache line a few kilobytes ahead (``llvm.prefetch``, read access, non-temporal:
``prefetchnta`` on x86, so the stream read once does not push the kernel's own working
set, such as its histograms, out of the larger caches) lets the input arrive while the
increments run. A prefetch never faults, so an index past the end is harmless, but
callers keep it inside the array anyway.

Usable only inside ``@njit`` code. The intrinsic's name is given in the typed-pointer
spelling (``p0i8``), which LLVM upgrades to the opaque-pointer one where needed.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

_I32 = ir.IntType(32)


@intrinsic
def prefetch(typingctx, array, index):  # pragma: no cover - compiled
    """Hint the CPU to load the cache line holding ``array[index]`` (read access, non-temporal)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [address.type, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # (address, rw = 0: read, locality = 0: non-temporal, cache type = 1: data)
        builder.call(fn, [address, ir.Constant(_I32, 0), ir.Constant(_I32, 0), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return sig, codegen
