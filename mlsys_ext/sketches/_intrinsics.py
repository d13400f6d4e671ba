"""Three machine instructions numba does not expose, as numba intrinsics.

- ``mulhi64(a, b)``: the high 64 bits of the 128-bit product, one ``mul``. It maps a
  uniform 64-bit hash onto ``range(b)`` without the bias of ``a % b`` and without a
  division (Lemire's multiply-shift range reduction).
- ``atomic_or(words, index, mask)``: ``words[index] |= mask`` as one indivisible
  read-modify-write (``lock or`` on x86), so two threads setting bits in one word
  cannot lose either bit.
- ``popcount64(x)``: the number of set bits (``popcnt``).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_I128 = ir.IntType(128)


@intrinsic
def mulhi64(typingctx, a, b):
    signature = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        product = builder.mul(builder.zext(args[0], _I128), builder.zext(args[1], _I128))
        return builder.trunc(builder.lshr(product, ir.Constant(_I128, 64)), _I64)

    return signature, codegen


@intrinsic
def atomic_or(typingctx, words, index, mask):
    signature = types.void(words, types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        # Monotonic ordering is enough: only the OR itself must be indivisible; the
        # end of the parallel region orders these writes before any later read.
        builder.atomic_rmw("or", pointer, args[2], "monotonic")
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def popcount64(typingctx, x):
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen
