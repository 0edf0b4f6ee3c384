/* Decoding of stored float16 probabilities: C included by src/adaspx/_probs.pyx (compiled with it, not on its own). */
#ifndef ADASPX_PROBS_KERNELS_H
#define ADASPX_PROBS_KERNELS_H

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


#endif /* ADASPX_PROBS_KERNELS_H */
