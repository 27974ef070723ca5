"""bfloat16 as uint16 bits: the top half of a float32, rounded to nearest even."""
import numpy as np


def to_bfloat16(values):
    """float values -> uint16 array of bfloat16 bits, rounded to nearest, ties to even.

    Overflow rounds to infinity; NaN stays NaN (quiet, sign kept)."""
    f = np.ascontiguousarray(values, dtype=np.float32)
    bits = f.view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) \
        >> np.uint32(16)
    nan = (bits >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(np.isnan(f), nan, rounded).astype(np.uint16)


def from_bfloat16(bits):
    """uint16 array of bfloat16 bits -> float32 array (exact)."""
    b = np.asarray(bits)
    if b.dtype != np.uint16:
        raise TypeError("from_bfloat16: a uint16 array of bfloat16 bits, not %s" % b.dtype)
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)
