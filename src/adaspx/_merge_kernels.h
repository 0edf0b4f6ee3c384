/* Statistics pass of the adaptive merge: C included by src/adaspx/_merge.pyx (compiled with it, not on its own). */
#ifndef ADASPX_MERGE_KERNELS_H
#define ADASPX_MERGE_KERNELS_H

/* Row kernel of the fused statistics pass. For each probability pixel of one row: check the vector (finite,
   non-negative, sum within tol of 1), find p_(1), p_(2) and the first argmax, and add the vector to the
   float64 accumulator row of the pixel's region k times, k being the number of label pixels of that region in
   the pixel's footprint (k additions, not one product: the reference's order of summation). Accumulator rows
   are padded to Cp, a multiple of 8. Float32 vectors may be read up to 7 elements past their end (the caller
   keeps that readable; the extra lanes are masked to 0). Three float32 variants give identical results: AVX2
   (chosen at run time where the CPU has it), SSE2 (every x86-64) and plain C; float64 uses plain C. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
#define ADX_SSE2 1
#include <emmintrin.h>
#endif
#if defined(ADX_SSE2) && (defined(__GNUC__) || defined(__clang__)) && !defined(_MSC_VER)
#define ADX_AVX2 1
#include <immintrin.h>
#endif

/* software prefetch of the probability stream, this many elements ahead (8 KiB of float32) */
#define ADX_PREFETCH_AHEAD 2048
#if defined(__GNUC__) || defined(__clang__)
#define adx_prefetch(ptr) __builtin_prefetch((const void *)(ptr), 0, 3)
#elif defined(ADX_SSE2)
#define adx_prefetch(ptr) _mm_prefetch((const char *)(ptr), _MM_HINT_T0)
#else
#define adx_prefetch(ptr) ((void)0)
#endif

static int adx_simd = 0; /* 2: AVX2, 1: SSE2, 0: plain C */

static int adx_detect_simd(void)
{
#if defined(ADX_AVX2)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return 2;
#endif
#if defined(ADX_SSE2)
    return 1;
#else
    return 0;
#endif
}

/* ---- plain C (any type) ---- */
#define ADX_SCALAR_PIXEL(NAME, T)                                                                  \
static inline int NAME(const T *p, int C, double *acc, double tol, double *ratio, int *arg)     \
{                                                                                                 \
    double best = -1.0, second = -1.0, total = 0.0, v;                                           \
    int c, am = 0, ok = 1;                                                                       \
    for (c = 0; c < C; c++) {                                                                    \
        v = (double)p[c];                                                                        \
        ok &= (v >= 0.0);                                                                        \
        total += v;                                                                              \
        acc[c] += v;                                                                             \
        if (v > best) { second = best; best = v; am = c; }                                       \
        else if (v > second) { second = v; }                                                     \
    }                                                                                            \
    *ratio = best > 0.0 ? second / best : 0.0;                                                   \
    *arg = am;                                                                                   \
    return ok && fabs(total - 1.0) <= tol;                                                       \
}                                                                                                 \
static inline void NAME##_add(const T *p, int C, double *acc, Py_ssize_t k)                      \
{                                                                                                 \
    int c;                                                                                       \
    Py_ssize_t i;                                                                                \
    for (c = 0; c < C; c++)                                                                      \
        for (i = 0; i < k; i++) acc[c] += (double)p[c];                                          \
}
ADX_SCALAR_PIXEL(adx_px_f32_c, float)
ADX_SCALAR_PIXEL(adx_px_f64_c, double)

#ifdef ADX_SSE2
static const int adx_ctz4[16] = {0, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0};
static const int adx_pop4[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

static inline int adx_px_f32_sse2(const float *p, int C, double *acc, double tol,
                                  double *ratio, int *arg)
{
    const int nb = (C + 3) >> 2;
    const __m128 tail = _mm_castsi128_ps(
        _mm_cmplt_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(C - 4 * (nb - 1))));
    __m128 vmax = _mm_setzero_ps(), vmin = _mm_setzero_ps(), vsec = _mm_setzero_ps(), tot = _mm_setzero_ps();
    __m128 m, v, eq;
    __m128d lo, hi;
    int b, mask, first = -1, neq = 0;
    float best, second, total;
    for (b = 0; b < nb; b++) {
        v = _mm_loadu_ps(p + 4 * b);
        if (b == nb - 1) v = _mm_and_ps(v, tail);
        vmin = _mm_min_ps(vmin, v);
        vmax = _mm_max_ps(vmax, v);
        tot = _mm_add_ps(tot, v);
        lo = _mm_cvtps_pd(v);
        hi = _mm_cvtps_pd(_mm_movehl_ps(v, v));
        _mm_storeu_pd(acc + 4 * b, _mm_add_pd(_mm_loadu_pd(acc + 4 * b), lo));
        _mm_storeu_pd(acc + 4 * b + 2, _mm_add_pd(_mm_loadu_pd(acc + 4 * b + 2), hi));
    }
    m = _mm_max_ps(vmax, _mm_shuffle_ps(vmax, vmax, _MM_SHUFFLE(2, 3, 0, 1)));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
    for (b = 0; b < nb; b++) {
        v = _mm_loadu_ps(p + 4 * b);
        if (b == nb - 1) v = _mm_and_ps(v, tail);
        eq = _mm_cmpeq_ps(v, m);
        mask = _mm_movemask_ps(eq);
        if (mask) {
            if (first < 0) first = 4 * b + adx_ctz4[mask];
            neq += adx_pop4[mask];
        }
        vsec = _mm_max_ps(vsec, _mm_andnot_ps(eq, v));
    }
    best = _mm_cvtss_f32(m);
    if (neq >= 2) {
        second = best;
    } else {
        vsec = _mm_max_ps(vsec, _mm_shuffle_ps(vsec, vsec, _MM_SHUFFLE(2, 3, 0, 1)));
        vsec = _mm_max_ps(vsec, _mm_shuffle_ps(vsec, vsec, _MM_SHUFFLE(1, 0, 3, 2)));
        second = _mm_cvtss_f32(vsec);
    }
    tot = _mm_add_ps(tot, _mm_movehl_ps(tot, tot));
    tot = _mm_add_ss(tot, _mm_shuffle_ps(tot, tot, 1));
    total = _mm_cvtss_f32(tot);
    *ratio = best > 0.0f ? (double)second / (double)best : 0.0;
    *arg = first >= 0 && first < C ? first : 0;
    /* negatives show in the minimum; NaN and inf make the float32 total non-finite */
    return !_mm_movemask_ps(_mm_cmplt_ps(vmin, _mm_setzero_ps())) && fabs((double)total - 1.0) <= tol;
}

static inline void adx_px_f32_sse2_add(const float *p, int C, double *acc, Py_ssize_t k)
{
    adx_px_f32_c_add(p, C, acc, k);
}
#endif

#ifdef ADX_AVX2
/* Every lane set to the maximum of the 8 lanes of v. */
__attribute__((target("avx2"), always_inline)) static inline __m256 adx_bcast_max8(__m256 v)
{
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
    v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The per-pixel results shared by the AVX2 routines: margin ratio second / best (a tie for the maximum makes
   it 1), first argmax, and whether the pixel is valid (no negative value, float32 total within tol of 1). m
   holds the maximum in every lane, vsec the maximum of the lanes below it, neq the count of lanes equal to it,
   tot the lane-wise sums and vmin the lane-wise minima. */
__attribute__((target("avx2"), always_inline)) static inline int adx_px_avx2_finish(
    __m256 m, __m256 vsec, int neq, int first, __m256 tot, __m256 vmin, int C, double tol, double *ratio,
    int *arg)
{
    float best = _mm256_cvtss_f32(m), second, total;
    __m128 t4;
    second = neq >= 2 ? best : _mm256_cvtss_f32(adx_bcast_max8(vsec));
    t4 = _mm_add_ps(_mm256_castps256_ps128(tot), _mm256_extractf128_ps(tot, 1));
    t4 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    t4 = _mm_add_ss(t4, _mm_shuffle_ps(t4, t4, 1));
    total = _mm_cvtss_f32(t4);
    *ratio = best > 0.0f ? (double)second / (double)best : 0.0;
    *arg = first >= 0 && first < C ? first : 0;
    return !_mm256_movemask_ps(_mm256_cmp_ps(vmin, _mm256_setzero_ps(), _CMP_LT_OQ))
           && fabs((double)total - 1.0) <= tol;
}

__attribute__((target("avx2"))) static inline int adx_px_f32_avx2(
    const float *p, int C, double *acc, double tol, double *ratio, int *arg)
{
    const int nb = (C + 7) >> 3;
    const __m256 tail = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(C - 8 * (nb - 1)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    __m256 vmax = _mm256_setzero_ps(), vmin = _mm256_setzero_ps(), vsec = _mm256_setzero_ps();
    __m256 tot = _mm256_setzero_ps(), m, v, eq;
    __m256d lo, hi;
    int b, mask, first = -1, neq = 0;
    for (b = 0; b < nb; b++) {
        v = _mm256_loadu_ps(p + 8 * b);
        if (b == nb - 1) v = _mm256_and_ps(v, tail);
        vmin = _mm256_min_ps(vmin, v);
        vmax = _mm256_max_ps(vmax, v);
        tot = _mm256_add_ps(tot, v);
        lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        _mm256_storeu_pd(acc + 8 * b, _mm256_add_pd(_mm256_loadu_pd(acc + 8 * b), lo));
        _mm256_storeu_pd(acc + 8 * b + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 8 * b + 4), hi));
    }
    m = adx_bcast_max8(vmax);
    for (b = 0; b < nb; b++) {
        v = _mm256_loadu_ps(p + 8 * b);
        if (b == nb - 1) v = _mm256_and_ps(v, tail);
        eq = _mm256_cmp_ps(v, m, _CMP_EQ_OQ);
        mask = _mm256_movemask_ps(eq);
        if (mask) {
            if (first < 0) first = 8 * b + __builtin_ctz((unsigned)mask);
            neq += __builtin_popcount((unsigned)mask);
        }
        vsec = _mm256_max_ps(vsec, _mm256_andnot_ps(eq, v));
    }
    return adx_px_avx2_finish(m, vsec, neq, first, tot, vmin, C, tol, ratio, arg);
}

/* acc[c] += p[c], k times, 8 classes at a time: the additions of adx_px_f32_c_add in the same order per class,
   so the same bits (lanes past C are masked to 0, as in the pixel routines). */
__attribute__((target("avx2"), always_inline)) static inline void adx_avx2_add_k(
    const float *p, int C, const int nb, double *acc, Py_ssize_t k)
{
    const __m256 tail = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(C - 8 * (nb - 1)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    __m256 v;
    __m256d lo, hi, a0, a1;
    Py_ssize_t i;
    int b;
    for (b = 0; b < nb; b++) {
        v = _mm256_loadu_ps(p + 8 * b);
        if (b == nb - 1) v = _mm256_and_ps(v, tail);
        lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        a0 = _mm256_loadu_pd(acc + 8 * b);
        a1 = _mm256_loadu_pd(acc + 8 * b + 4);
        for (i = 0; i < k; i++) {
            a0 = _mm256_add_pd(a0, lo);
            a1 = _mm256_add_pd(a1, hi);
        }
        _mm256_storeu_pd(acc + 8 * b, a0);
        _mm256_storeu_pd(acc + 8 * b + 4, a1);
    }
}

__attribute__((target("avx2"))) static inline void adx_px_f32_avx2_add(const float *p, int C, double *acc,
                                                                      Py_ssize_t k)
{
    adx_avx2_add_k(p, C, (C + 7) >> 3, acc, k);
}

/* The same for C <= 24 with the block count a compile-time constant: the vectors stay in registers. */
__attribute__((target("avx2"), always_inline)) static inline int adx_px_f32_avx2_small(
    const float *p, int C, const int nb, double *acc, double tol, double *ratio, int *arg)
{
    const __m256 tail = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(C - 8 * (nb - 1)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    __m256 v[3], vmax, vmin, tot, vsec = _mm256_setzero_ps(), m, eq;
    int b, mask, first = -1, neq = 0;
    for (b = 0; b < nb; b++) v[b] = _mm256_loadu_ps(p + 8 * b);
    v[nb - 1] = _mm256_and_ps(v[nb - 1], tail);
    vmax = v[0];
    vmin = v[0];
    tot = v[0];
    for (b = 1; b < nb; b++) {
        vmax = _mm256_max_ps(vmax, v[b]);
        vmin = _mm256_min_ps(vmin, v[b]);
        tot = _mm256_add_ps(tot, v[b]);
    }
    for (b = 0; b < nb; b++) {
        _mm256_storeu_pd(acc + 8 * b, _mm256_add_pd(_mm256_loadu_pd(acc + 8 * b),
                                                    _mm256_cvtps_pd(_mm256_castps256_ps128(v[b]))));
        _mm256_storeu_pd(acc + 8 * b + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 8 * b + 4),
                                                        _mm256_cvtps_pd(_mm256_extractf128_ps(v[b], 1))));
    }
    m = adx_bcast_max8(vmax);
    for (b = 0; b < nb; b++) {
        eq = _mm256_cmp_ps(v[b], m, _CMP_EQ_OQ);
        mask = _mm256_movemask_ps(eq);
        if (mask) {
            if (first < 0) first = 8 * b + __builtin_ctz((unsigned)mask);
            neq += __builtin_popcount((unsigned)mask);
        }
        vsec = _mm256_max_ps(vsec, _mm256_andnot_ps(eq, v[b]));
    }
    return adx_px_avx2_finish(m, vsec, neq, first, tot, vmin, C, tol, ratio, arg);
}

#define ADX_AVX2_SMALL(NB)                                                                         \
__attribute__((target("avx2"))) static inline int adx_px_f32_avx2_##NB(                             \
    const float *p, int C, double *acc, double tol, double *ratio, int *arg)                        \
{                                                                                                 \
    return adx_px_f32_avx2_small(p, C, NB, acc, tol, ratio, arg);                                \
}                                                                                                 \
__attribute__((target("avx2"))) static inline void adx_px_f32_avx2_##NB##_add(                      \
    const float *p, int C, double *acc, Py_ssize_t k)                                             \
{                                                                                                 \
    adx_avx2_add_k(p, C, NB, acc, k);                                                            \
}
ADX_AVX2_SMALL(1)
ADX_AVX2_SMALL(2)
ADX_AVX2_SMALL(3)
#endif

/* One label row. slots[x] is the region slot of label pixel x; the probability pixel px covers label pixels
   [px * stride, min((px + 1) * stride, W)) and is read at prow + px * pstep. Returns the first invalid px or -1.
   Each pixel's margin ratio and argmax are kept in rcache / acache; with reuse (a label row reading the same
   probability row as the previous one, stride > 1) they are taken from there instead of being computed again. */
#define ADX_ROW(NAME, T, PIXEL, ATTR)                                                              \
ATTR static Py_ssize_t NAME(const int32_t *slots, Py_ssize_t W, const T *prow, Py_ssize_t pstep,  \
                            Py_ssize_t w, Py_ssize_t stride, int C, Py_ssize_t Cp, double tol,      \
                            double *sums, double *ratio, int32_t *hist, int64_t *counts,            \
                            double *rcache, int32_t *acache, int reuse)                             \
{                                                                                                  \
    Py_ssize_t px, x, x1, k, i, bad = -1;                                                          \
    int32_t sl;                                                                                    \
    double r = 0.0;                                                                                \
    int arg = 0;                                                                                   \
    for (px = 0; px < w; px++) {                                                                   \
        const T *pix = prow + px * pstep;                                                          \
        adx_prefetch(pix + ADX_PREFETCH_AHEAD);                                                    \
        x = px * stride;                                                                           \
        x1 = x + stride < W ? x + stride : W;                                                      \
        sl = slots[x++];                                                                           \
        k = 1;                                                                                     \
        while (x < x1 && slots[x] == sl) { k++; x++; }                                             \
        if (reuse) {                                                                               \
            r = rcache[px];                                                                        \
            arg = acache[px];                                                                      \
            PIXEL##_add(pix, C, sums + (Py_ssize_t)sl * Cp, k);                                    \
        } else {                                                                                   \
            if (!PIXEL(pix, C, sums + (Py_ssize_t)sl * Cp, tol, &r, &arg) && bad < 0) bad = px;    \
            rcache[px] = r;                                                                        \
            acache[px] = arg;                                                                      \
            /* k additions, not one product: the reference's order of summation */                \
            if (k > 1) PIXEL##_add(pix, C, sums + (Py_ssize_t)sl * Cp, k - 1);                     \
        }                                                                                          \
        for (i = 0; i < k; i++) ratio[sl] += r;                                                    \
        hist[(Py_ssize_t)sl * C + arg] += (int32_t)k;                                              \
        counts[sl] += k;                                                                           \
        while (x < x1) { /* further labels inside this pixel's footprint (stride > 1 only) */      \
            sl = slots[x++];                                                                       \
            k = 1;                                                                                 \
            while (x < x1 && slots[x] == sl) { k++; x++; }                                         \
            PIXEL##_add(pix, C, sums + (Py_ssize_t)sl * Cp, k);                                    \
            for (i = 0; i < k; i++) ratio[sl] += r;                                                \
            hist[(Py_ssize_t)sl * C + arg] += (int32_t)k;                                          \
            counts[sl] += k;                                                                       \
        }                                                                                          \
    }                                                                                              \
    return bad;                                                                                    \
}
ADX_ROW(adx_row_f32_c, float, adx_px_f32_c, )
ADX_ROW(adx_row_f64, double, adx_px_f64_c, )
#ifdef ADX_SSE2
ADX_ROW(adx_row_f32_sse2, float, adx_px_f32_sse2, )
#endif
#ifdef ADX_AVX2
ADX_ROW(adx_row_f32_avx2, float, adx_px_f32_avx2, __attribute__((target("avx2"))))
ADX_ROW(adx_row_f32_avx2_1, float, adx_px_f32_avx2_1, __attribute__((target("avx2"))))
ADX_ROW(adx_row_f32_avx2_2, float, adx_px_f32_avx2_2, __attribute__((target("avx2"))))
ADX_ROW(adx_row_f32_avx2_3, float, adx_px_f32_avx2_3, __attribute__((target("avx2"))))
#endif

/* (C, h, w) layout: gather one row of every class plane into out[px * Cp + c] (4x4 SSE2 transposes). */
static void adx_gather_f32(const float *src, Py_ssize_t plane, int C, Py_ssize_t w, Py_ssize_t Cp, float *out)
{
    Py_ssize_t px = 0;
    int c;
#ifdef ADX_SSE2
    __m128 r0, r1, r2, r3;
    for (; px + 4 <= w; px += 4) {
        if ((px & 15) == 0)
            for (c = 0; c < C; c++) adx_prefetch(src + c * plane + px + 256);
        for (c = 0; c + 4 <= C; c += 4) {
            r0 = _mm_loadu_ps(src + (c + 0) * plane + px);
            r1 = _mm_loadu_ps(src + (c + 1) * plane + px);
            r2 = _mm_loadu_ps(src + (c + 2) * plane + px);
            r3 = _mm_loadu_ps(src + (c + 3) * plane + px);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(out + (px + 0) * Cp + c, r0);
            _mm_storeu_ps(out + (px + 1) * Cp + c, r1);
            _mm_storeu_ps(out + (px + 2) * Cp + c, r2);
            _mm_storeu_ps(out + (px + 3) * Cp + c, r3);
        }
        for (; c < C; c++) {
            out[(px + 0) * Cp + c] = src[c * plane + px + 0];
            out[(px + 1) * Cp + c] = src[c * plane + px + 1];
            out[(px + 2) * Cp + c] = src[c * plane + px + 2];
            out[(px + 3) * Cp + c] = src[c * plane + px + 3];
        }
    }
#endif
    for (; px < w; px++)
        for (c = 0; c < C; c++) out[px * Cp + c] = src[c * plane + px];
}

static void adx_gather_f64(const double *src, Py_ssize_t plane, int C, Py_ssize_t w, Py_ssize_t Cp,
                           double *out)
{
    Py_ssize_t px;
    int c;
    for (px = 0; px < w; px++)
        for (c = 0; c < C; c++) out[px * Cp + c] = src[c * plane + px];
}

static Py_ssize_t adx_row_f32(const int32_t *slots, Py_ssize_t W, const float *prow, Py_ssize_t pstep,
                              Py_ssize_t w, Py_ssize_t stride, int C, Py_ssize_t Cp, double tol,
                              double *sums, double *ratio, int32_t *hist, int64_t *counts,
                              double *rcache, int32_t *acache, int reuse)
{
#ifdef ADX_AVX2
    if (adx_simd >= 2) {
        switch ((C + 7) >> 3) {
        case 1: return adx_row_f32_avx2_1(slots, W, prow, pstep, w, stride, C, Cp, tol, sums, ratio, hist, counts, rcache, acache, reuse);
        case 2: return adx_row_f32_avx2_2(slots, W, prow, pstep, w, stride, C, Cp, tol, sums, ratio, hist, counts, rcache, acache, reuse);
        case 3: return adx_row_f32_avx2_3(slots, W, prow, pstep, w, stride, C, Cp, tol, sums, ratio, hist, counts, rcache, acache, reuse);
        default:
            return adx_row_f32_avx2(slots, W, prow, pstep, w, stride, C, Cp, tol, sums, ratio, hist, counts, rcache, acache, reuse);
        }
    }
#endif
#ifdef ADX_SSE2
    if (adx_simd >= 1)
        return adx_row_f32_sse2(slots, W, prow, pstep, w, stride, C, Cp, tol, sums, ratio, hist, counts, rcache, acache, reuse);
#endif
    return adx_row_f32_c(slots, W, prow, pstep, w, stride, C, Cp, tol, sums, ratio, hist, counts, rcache, acache, reuse);
}

/* ---- adjacent label pairs of one row ----
   Writes (row[x], row[x + 1]) for x in [0, W - 1), then (row[x], below[x]) for x in [0, W) (when below is not
   NULL), as int32 slot pairs (label - base) into out, for the labels that differ, in that order, and returns the
   number of int32 written (at most 4 * W). A horizontal pair equal to the pair one row above (above[x],
   above[x + 1]) and a vertical pair equal to the pair one column to the left are left out: inside a region's
   straight border they repeat on every row or column; the rest are deduplicated later. The plain C variant is
   branch-free (every candidate is written, the end advances only for kept pairs); the AVX2 variant (16- and
   32-bit labels) compares 32 bytes of labels at a time and writes only the kept pairs. Same output. */
#define ADX_ROW_PAIRS_C(NAME, T)                                                                  \
static Py_ssize_t NAME(const T *row, const T *above, const T *below, Py_ssize_t W, int64_t base,  \
                       int32_t *out, Py_ssize_t x0, Py_ssize_t v0, Py_ssize_t n)                 \
{                                                                                               \
    Py_ssize_t x;                                                                               \
    T a, b;                                                                                     \
    for (x = x0; x < W - 1; x++) {                                                              \
        a = row[x];                                                                             \
        b = row[x + 1];                                                                         \
        out[n] = (int32_t)((int64_t)a - base);                                                  \
        out[n + 1] = (int32_t)((int64_t)b - base);                                              \
        n += 2 * ((a != b) & (above == NULL || (above[x] != a) | (above[x + 1] != b)));         \
    }                                                                                           \
    if (below == NULL) return n;                                                                \
    for (x = v0; x < W; x++) {                                                                  \
        a = row[x];                                                                             \
        b = below[x];                                                                           \
        out[n] = (int32_t)((int64_t)a - base);                                                  \
        out[n + 1] = (int32_t)((int64_t)b - base);                                              \
        n += 2 * ((a != b) & (x == 0 || (row[x - 1] != a) | (below[x - 1] != b)));              \
    }                                                                                           \
    return n;                                                                                   \
}
ADX_ROW_PAIRS_C(adx_pairs_i8_c, int8_t)
ADX_ROW_PAIRS_C(adx_pairs_u8_c, uint8_t)
ADX_ROW_PAIRS_C(adx_pairs_i16_c, int16_t)
ADX_ROW_PAIRS_C(adx_pairs_u16_c, uint16_t)
ADX_ROW_PAIRS_C(adx_pairs_i32_c, int32_t)
ADX_ROW_PAIRS_C(adx_pairs_u32_c, uint32_t)
ADX_ROW_PAIRS_C(adx_pairs_i64_c, int64_t)
ADX_ROW_PAIRS_C(adx_pairs_u64_c, uint64_t)

#ifdef ADX_AVX2
/* LANES labels per 32 bytes; EQ compares lanes; KEEP has the first bit of every lane in the byte mask; TAIL is the
   plain C variant, which finishes the row from where the vectors stop. */
#define ADX_ROW_PAIRS_AVX2(NAME, T, LANES, EQ, KEEP, TAIL)                                        \
__attribute__((target("avx2"))) static Py_ssize_t NAME(const T *row, const T *above,            \
                                                       const T *below, Py_ssize_t W, int64_t base, \
                                                       int32_t *out)                            \
{                                                                                               \
    Py_ssize_t x = 0, v = 1, n = 0, lane;                                                       \
    uint32_t m;                                                                                 \
    __m256i a, b, drop;                                                                         \
    for (; x + LANES < W; x += LANES) {                                                         \
        a = _mm256_loadu_si256((const __m256i *)(row + x));                                     \
        b = _mm256_loadu_si256((const __m256i *)(row + x + 1));                                 \
        drop = EQ(a, b);                                                                        \
        if (above != NULL)                                                                      \
            drop = _mm256_or_si256(drop, _mm256_and_si256(                                      \
                EQ(a, _mm256_loadu_si256((const __m256i *)(above + x))),                        \
                EQ(b, _mm256_loadu_si256((const __m256i *)(above + x + 1)))));                  \
        for (m = ~(uint32_t)_mm256_movemask_epi8(drop) & KEEP; m; m &= m - 1) {                 \
            lane = (Py_ssize_t)__builtin_ctz(m) * LANES / 32;                                   \
            out[n] = (int32_t)((int64_t)row[x + lane] - base);                                  \
            out[n + 1] = (int32_t)((int64_t)row[x + lane + 1] - base);                          \
            n += 2;                                                                             \
        }                                                                                       \
    }                                                                                           \
    n = TAIL(row, above, NULL, W, base, out, x, W, n);                                          \
    if (below == NULL) return n;                                                                \
    if (row[0] != below[0]) {                                                                   \
        out[n] = (int32_t)((int64_t)row[0] - base);                                             \
        out[n + 1] = (int32_t)((int64_t)below[0] - base);                                       \
        n += 2;                                                                                 \
    }                                                                                           \
    for (; v + LANES <= W; v += LANES) {                                                        \
        a = _mm256_loadu_si256((const __m256i *)(row + v));                                     \
        b = _mm256_loadu_si256((const __m256i *)(below + v));                                   \
        drop = _mm256_or_si256(EQ(a, b), _mm256_and_si256(                                      \
            EQ(a, _mm256_loadu_si256((const __m256i *)(row + v - 1))),                          \
            EQ(b, _mm256_loadu_si256((const __m256i *)(below + v - 1)))));                      \
        for (m = ~(uint32_t)_mm256_movemask_epi8(drop) & KEEP; m; m &= m - 1) {                 \
            lane = (Py_ssize_t)__builtin_ctz(m) * LANES / 32;                                   \
            out[n] = (int32_t)((int64_t)row[v + lane] - base);                                  \
            out[n + 1] = (int32_t)((int64_t)below[v + lane] - base);                            \
            n += 2;                                                                             \
        }                                                                                       \
    }                                                                                           \
    return TAIL(row, NULL, below, W, base, out, W, v, n);                                       \
}
ADX_ROW_PAIRS_AVX2(adx_pairs_i16_avx2, int16_t, 16, _mm256_cmpeq_epi16, 0x55555555u, adx_pairs_i16_c)
ADX_ROW_PAIRS_AVX2(adx_pairs_u16_avx2, uint16_t, 16, _mm256_cmpeq_epi16, 0x55555555u, adx_pairs_u16_c)
ADX_ROW_PAIRS_AVX2(adx_pairs_i32_avx2, int32_t, 8, _mm256_cmpeq_epi32, 0x11111111u, adx_pairs_i32_c)
ADX_ROW_PAIRS_AVX2(adx_pairs_u32_avx2, uint32_t, 8, _mm256_cmpeq_epi32, 0x11111111u, adx_pairs_u32_c)
#define ADX_PAIRS_FAST(FAST, ...) if (adx_simd >= 2) return FAST(__VA_ARGS__)
#else
#define ADX_PAIRS_FAST(FAST, ...) ((void)0)
#endif

/* entry points, one per label type: the AVX2 variant where chosen, else plain C */
#define ADX_PAIRS_ENTRY(NAME, T, PLAIN)                                                           \
static Py_ssize_t NAME(const T *row, const T *above, const T *below, Py_ssize_t W, int64_t base,  \
                       int32_t *out)                                                            \
{                                                                                               \
    return PLAIN(row, above, below, W, base, out, 0, 0, 0);                                     \
}
#define ADX_PAIRS_ENTRY_AVX2(NAME, T, PLAIN, FAST)                                                \
static Py_ssize_t NAME(const T *row, const T *above, const T *below, Py_ssize_t W, int64_t base,  \
                       int32_t *out)                                                            \
{                                                                                               \
    ADX_PAIRS_FAST(FAST, row, above, below, W, base, out);                                      \
    return PLAIN(row, above, below, W, base, out, 0, 0, 0);                                     \
}
ADX_PAIRS_ENTRY(adx_pairs_i8, int8_t, adx_pairs_i8_c)
ADX_PAIRS_ENTRY(adx_pairs_u8, uint8_t, adx_pairs_u8_c)
ADX_PAIRS_ENTRY_AVX2(adx_pairs_i16, int16_t, adx_pairs_i16_c, adx_pairs_i16_avx2)
ADX_PAIRS_ENTRY_AVX2(adx_pairs_u16, uint16_t, adx_pairs_u16_c, adx_pairs_u16_avx2)
ADX_PAIRS_ENTRY_AVX2(adx_pairs_i32, int32_t, adx_pairs_i32_c, adx_pairs_i32_avx2)
ADX_PAIRS_ENTRY_AVX2(adx_pairs_u32, uint32_t, adx_pairs_u32_c, adx_pairs_u32_avx2)
ADX_PAIRS_ENTRY(adx_pairs_i64, int64_t, adx_pairs_i64_c)
ADX_PAIRS_ENTRY(adx_pairs_u64, uint64_t, adx_pairs_u64_c)

#endif /* ADASPX_MERGE_KERNELS_H */
