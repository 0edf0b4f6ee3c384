# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled decoding of stored probabilities (private; :class:`adaspx.artifacts.Probabilities` validates inputs).

``normalise_half`` turns a float16 (C, h, w) array into float32 probabilities in one pass: each value converted
exactly, each pixel's vector divided by its sum. It gives the bits NumPy gives for
``p = raw.astype(np.float32); p /= p.sum(axis=0, keepdims=True)``: the sum is taken class by class in float32
(NumPy's order for a reduction over the outer axis) and IEEE division is correctly rounded in both. With AVX2 and
F16C (chosen at run time) eight pixels are converted and divided at once; plain C elsewhere.
"""

import numpy as np

from libc.stdint cimport int64_t, uint16_t

cdef extern from "_probs_kernels.h":
    int adx_half_simd
    int adx_half_detect() nogil
    int64_t adx_half(const uint16_t* src, float* dst, int C, int64_t plane) nogil


_DETECTED = adx_half_detect()
adx_half_simd = _DETECTED


def simd_level():
    """Instruction set used by :func:`normalise_half`: "AVX2+F16C" or "plain C"."""
    return "AVX2+F16C" if adx_half_simd else "plain C"


def set_simd_level(int level):
    """Use at most this instruction set (1: AVX2 + F16C, 0: plain C; capped at what the CPU has); for tests."""
    global adx_half_simd
    adx_half_simd = max(0, min(level, _DETECTED))
    return simd_level()


def normalise_half(const uint16_t[:, :, ::1] bits, float[:, :, ::1] out):
    """float16 (C, h, w), given as its uint16 bits, into float32 probabilities in ``out`` (same shape), each pixel's
    vector divided by its sum. Returns the number of pixels whose sum is not finite (their values are NaN/inf)."""
    cdef int C = <int>bits.shape[0]
    cdef int64_t plane = bits.shape[1] * bits.shape[2], bad
    if out.shape[0] != bits.shape[0] or out.shape[1] != bits.shape[1] or out.shape[2] != bits.shape[2]:
        raise ValueError("normalise_half: out must have the shape of bits")
    if C == 0 or plane == 0:
        return 0
    with nogil:
        bad = adx_half(&bits[0, 0, 0], &out[0, 0, 0], C, plane)
    return int(bad)


def non_finite_pixels(const uint16_t[:, :, ::1] bits):
    """Pixels of a float16 (C, h, w) array, given as its uint16 bits, whose float32 class sum is not finite: the
    count :func:`normalise_half` returns, without writing anything."""
    cdef int C = <int>bits.shape[0]
    cdef int64_t plane = bits.shape[1] * bits.shape[2], bad
    if C == 0 or plane == 0:
        return 0
    with nogil:
        bad = adx_half(&bits[0, 0, 0], NULL, C, plane)
    return int(bad)
