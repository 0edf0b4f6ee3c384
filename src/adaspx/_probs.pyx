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

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    #if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    #define ADX_F16C 1
    #include <immintrin.h>
    #endif

    static int adx_half_simd = 0; /* 1: AVX2 + F16C, 0: plain C */

    static int adx_half_detect(void)
    {
    #ifdef ADX_F16C
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    #else
        return 0;
    #endif
    }

    /* exact IEEE binary16 -> binary32 (subnormals, infinities and NaN included) */
    static inline float adx_half_to_float(uint16_t h)
    {
        uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
        float f;
        if (exp == 0x1f) {
            bits = sign | 0x7f800000u | (mant << 13);
        } else if (exp == 0) {
            f = ldexpf((float)mant, -24); /* zero or subnormal: exact in float32 */
            return sign ? -f : f;
        } else {
            bits = sign | ((exp + 112u) << 23) | (mant << 13);
        }
        memcpy(&f, &bits, sizeof f);
        return f;
    }

    /* the float32 sum of one pixel's classes, class by class (NumPy's order for a reduction over the outer axis) */
    static inline float adx_sum_c(const uint16_t *src, int C, int64_t plane, int64_t px)
    {
        float total = adx_half_to_float(src[px]);
        int c;
        for (c = 1; c < C; c++) total += adx_half_to_float(src[c * plane + px]);
        return total;
    }

    /* pixels [start, plane) whose sum is not finite; with dst, each vector divided by its sum into dst */
    static int64_t adx_half_c(const uint16_t *src, float *dst, int C, int64_t plane, int64_t start)
    {
        int64_t px, bad = 0;
        int c;
        float total;
        for (px = start; px < plane; px++) {
            total = adx_sum_c(src, C, plane, px);
            bad += !isfinite(total);
            if (dst)
                for (c = 0; c < C; c++) dst[c * plane + px] = adx_half_to_float(src[c * plane + px]) / total;
        }
        return bad;
    }

    #ifdef ADX_F16C
    /* the same, eight pixels at a time */
    __attribute__((target("avx2,f16c")))
    static int64_t adx_half_avx2(const uint16_t *src, float *dst, int C, int64_t plane)
    {
        int64_t px, bad = 0;
        int c;
        __m256 total, inf = _mm256_set1_ps(INFINITY);
        __m256i sign = _mm256_set1_epi32(0x7fffffff); /* clears the sign bit */
        for (px = 0; px + 8 <= plane; px += 8) {
            total = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + px)));
            for (c = 1; c < C; c++)
                total = _mm256_add_ps(total, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + c * plane + px))));
            /* |total| < inf is false for infinities and NaN */
            bad += 8 - __builtin_popcount(
                       _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(total, _mm256_castsi256_ps(sign)), inf, _CMP_LT_OQ)));
            if (dst)
                for (c = 0; c < C; c++)
                    _mm256_storeu_ps(dst + c * plane + px,
                                     _mm256_div_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + c * plane + px))),
                                                   total));
        }
        return bad + adx_half_c(src, dst, C, plane, px);
    }
    #endif

    /* dst == NULL: only count the pixels whose sum is not finite */
    static int64_t adx_half(const uint16_t *src, float *dst, int C, int64_t plane)
    {
    #ifdef ADX_F16C
        if (adx_half_simd) return adx_half_avx2(src, dst, C, plane);
    #endif
        return adx_half_c(src, dst, C, plane, 0);
    }

    """
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
