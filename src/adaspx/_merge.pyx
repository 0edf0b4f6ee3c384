# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels behind :mod:`adaspx.merge` (private; inputs are validated by the Python wrappers).

Every function takes C-contiguous memoryviews and does its work with the GIL released, so several images can be
processed by a thread pool at once. ``threads <= 0`` means the OpenMP default (OMP_NUM_THREADS or every core).

Regions are addressed in "slot space": slot = label - base, where base is the smallest label (or labels are a dense
remap and base is 0). Slots of absent labels simply stay empty.

Pipeline: ``label_range`` (min/max), ``region_sums`` (one pass over the probabilities: per-region sums, p2/p1 sums,
argmax histograms, input validation, and the 4-adjacent label pairs), ``adjacency`` (pairs -> sorted CSR),
``seeded_merge`` (breadth-first search from each seed with the Jensen-Shannon test), ``apply_lut`` (output map).
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport INFINITY, log, sqrt
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cimport openmp

cnp.import_array()

ctypedef fused label_t:
    int8_t
    uint8_t
    int16_t
    uint16_t
    int32_t
    uint32_t
    int64_t
    uint64_t

ctypedef fused real_t:
    float
    double


cdef extern from "_merge_kernels.h":
    int adx_simd
    void adx_gather_f32(const float* src, Py_ssize_t plane, int C, Py_ssize_t w, Py_ssize_t Cp, float* out) nogil
    void adx_gather_f64(const double* src, Py_ssize_t plane, int C, Py_ssize_t w, Py_ssize_t Cp,
                        double* out) nogil
    int adx_detect_simd() nogil
    Py_ssize_t adx_row_f32(const int32_t* slots, Py_ssize_t W, const float* prow, Py_ssize_t pstep, Py_ssize_t w,
                           Py_ssize_t stride, int C, Py_ssize_t Cp, double tol, double* sums, double* ratio,
                           int32_t* hist, int64_t* counts, double* rcache, int32_t* acache, int reuse) nogil
    Py_ssize_t adx_row_f64(const int32_t* slots, Py_ssize_t W, const double* prow, Py_ssize_t pstep, Py_ssize_t w,
                           Py_ssize_t stride, int C, Py_ssize_t Cp, double tol, double* sums, double* ratio,
                           int32_t* hist, int64_t* counts, double* rcache, int32_t* acache, int reuse) nogil
    Py_ssize_t adx_pairs_i8(const int8_t* row, const int8_t* above, const int8_t* below, Py_ssize_t W,
                      int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_u8(const uint8_t* row, const uint8_t* above, const uint8_t* below, Py_ssize_t W,
                      int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_i16(const int16_t* row, const int16_t* above, const int16_t* below, Py_ssize_t W,
                       int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_u16(const uint16_t* row, const uint16_t* above, const uint16_t* below, Py_ssize_t W,
                       int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_i32(const int32_t* row, const int32_t* above, const int32_t* below, Py_ssize_t W,
                       int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_u32(const uint32_t* row, const uint32_t* above, const uint32_t* below, Py_ssize_t W,
                       int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_i64(const int64_t* row, const int64_t* above, const int64_t* below, Py_ssize_t W,
                       int64_t base, int32_t* out) nogil
    Py_ssize_t adx_pairs_u64(const uint64_t* row, const uint64_t* above, const uint64_t* below, Py_ssize_t W,
                       int64_t base, int32_t* out) nogil


SIMD_LEVELS = {0: "plain C", 1: "SSE2", 2: "AVX2"}
_DETECTED_SIMD = adx_detect_simd()
adx_simd = _DETECTED_SIMD


def simd_level():
    """Instruction set used by the float32 statistics pass: "AVX2", "SSE2" or "plain C"."""
    return SIMD_LEVELS[adx_simd]


def set_simd_level(int level):
    """Use at most this instruction set (2: AVX2, 1: SSE2, 0: plain C; capped at what the CPU has); for tests."""
    global adx_simd
    adx_simd = max(0, min(level, _DETECTED_SIMD))
    return simd_level()


cdef double LN2_HALF = 0.34657359027997264  # ln(2) / 2
cdef double BOUND_MARGIN = 1e-4  # relative safety margin of the JS prefilter bounds


cdef int _n_threads(int threads) noexcept nogil:
    if threads > 0:
        return threads
    return openmp.omp_get_max_threads()


# ------------------------------------------------------------------------------------------------------------------
# label range
# ------------------------------------------------------------------------------------------------------------------

def label_range(const label_t[:, ::1] labels, int threads=0):
    """Smallest and largest label, as Python ints."""
    cdef Py_ssize_t H = labels.shape[0], W = labels.shape[1], t, y, x
    cdef int T = _n_threads(threads)
    if T > H:
        T = H
    lo_arr = np.empty(T, dtype=np.asarray(labels).dtype)
    hi_arr = np.empty(T, dtype=np.asarray(labels).dtype)
    cdef label_t[::1] lo = lo_arr
    cdef label_t[::1] hi = hi_arr
    cdef label_t a, b, v
    for t in prange(T, nogil=True, num_threads=T, schedule="static"):
        a = labels[t * H // T, 0]
        b = a
        for y in range(t * H // T, (t + 1) * H // T):
            for x in range(W):
                v = labels[y, x]
                a = v if v < a else a
                b = v if v > b else b
        lo[t] = a
        hi[t] = b
    return int(lo_arr.min()), int(hi_arr.max())


# ------------------------------------------------------------------------------------------------------------------
# fused one pass over the probabilities: region statistics, input validation, adjacent label pairs
# ------------------------------------------------------------------------------------------------------------------

cdef struct PairBuf:
    int32_t* data
    Py_ssize_t size
    Py_ssize_t cap
    int failed


cdef inline bint _reserve(PairBuf* buf, Py_ssize_t extra) noexcept nogil:
    """Make room for ``extra`` more int32 values; False (and ``failed`` set) when memory runs out."""
    cdef int32_t* grown
    cdef Py_ssize_t cap
    if buf.size + extra <= buf.cap:
        return True
    cap = max(2 * buf.cap, buf.size + extra + 4096)
    grown = <int32_t*>realloc(buf.data, cap * sizeof(int32_t))
    if grown == NULL:
        buf.failed = 1
        return False
    buf.data = grown
    buf.cap = cap
    return True


cdef void _row_pairs(const label_t* row, const label_t* above, const label_t* below, Py_ssize_t W,
                     int64_t base, PairBuf* buf) noexcept nogil:
    """Adjacent different labels of one row, as slot pairs (``adx_pairs_*`` in _merge_kernels.h)."""
    cdef int32_t* out
    if buf.failed or not _reserve(buf, 4 * W):
        return
    out = buf.data + buf.size
    if label_t is int8_t:
        buf.size += adx_pairs_i8(row, above, below, W, base, out)
    elif label_t is uint8_t:
        buf.size += adx_pairs_u8(row, above, below, W, base, out)
    elif label_t is int16_t:
        buf.size += adx_pairs_i16(row, above, below, W, base, out)
    elif label_t is uint16_t:
        buf.size += adx_pairs_u16(row, above, below, W, base, out)
    elif label_t is int32_t:
        buf.size += adx_pairs_i32(row, above, below, W, base, out)
    elif label_t is uint32_t:
        buf.size += adx_pairs_u32(row, above, below, W, base, out)
    elif label_t is int64_t:
        buf.size += adx_pairs_i64(row, above, below, W, base, out)
    else:
        buf.size += adx_pairs_u64(row, above, below, W, base, out)


cdef void _rows(
    const label_t* labels, int64_t base, Py_ssize_t H, Py_ssize_t W, Py_ssize_t y0, Py_ssize_t y1,
    const real_t* probs, Py_ssize_t h, Py_ssize_t w, Py_ssize_t C, bint chw, Py_ssize_t stride, double tol,
    int32_t* slots, real_t* scratch, double* sums, double* ratio_sums, int32_t* hist, int64_t* counts,
    int64_t* first_bad, PairBuf* pairs, double* rcache, int32_t* acache,
) noexcept nogil:
    """Accumulate label rows [y0, y1) into one thread's slot-space accumulators (``sums`` rows padded to Cp).

    ``slots`` holds W int32, ``scratch`` at least w * Cp + 8 elements of the probability type, ``rcache`` and
    ``acache`` w elements each (per-pixel results of the previous label row)."""
    cdef Py_ssize_t Cp = (C + 7) & ~7
    cdef Py_ssize_t y, py, x, last_py = -1, pstep, bad, stats_py = -1
    cdef int reuse
    cdef const label_t* lrow
    cdef const real_t* prow
    for y in range(y0, y1):
        lrow = labels + y * W
        if pairs != NULL:
            _row_pairs(lrow, lrow - W if y > 0 else NULL, lrow + W if y + 1 < H else NULL, W, base, pairs)
        for x in range(W):
            slots[x] = <int32_t>(<int64_t>lrow[x] - base)
        py = y // stride
        if chw:  # gather the row of every class plane into (w, Cp) so each pixel's vector is contiguous
            if py != last_py:
                if real_t is float:
                    adx_gather_f32(probs + py * w, h * w, <int>C, w, Cp, scratch)
                else:
                    adx_gather_f64(probs + py * w, h * w, <int>C, w, Cp, scratch)
                last_py = py
            prow = scratch
            pstep = Cp
        else:
            prow = probs + py * w * C
            pstep = C
            if py == h - 1 and Cp != C:  # vectors may be read past their end: never past the array's end
                if py != last_py:
                    memcpy(scratch, prow, w * C * sizeof(real_t))
                    last_py = py
                prow = scratch
        reuse = py == stats_py
        stats_py = py
        if real_t is float:
            bad = adx_row_f32(slots, W, prow, pstep, w, stride, <int>C, Cp, tol, sums, ratio_sums, hist, counts,
                              rcache, acache, reuse)
        else:
            bad = adx_row_f64(slots, W, prow, pstep, w, stride, <int>C, Cp, tol, sums, ratio_sums, hist, counts,
                              rcache, acache, reuse)
        if bad >= 0 and first_bad[0] < 0:
            first_bad[0] = py * w + bad


def region_sums(const label_t[:, ::1] labels, int64_t base, Py_ssize_t span, const real_t[:, :, ::1] probs,
                bint chw, Py_ssize_t stride, double tol, int threads=0, bint want_pairs=False):
    """One pass: per-slot counts, probability sums, p2/p1 sums, argmax histograms (and adjacent slot pairs).

    ``probs`` is (h, w, C) or, with ``chw``, (C, h, w); label pixel (y, x) reads probability pixel
    (y // stride, x // stride). Every label minus ``base`` must lie in [0, span). Returns
    ``(counts, sums, ratio_sums, hist, first_bad, pairs)``: ``sums`` is (span, Cp) with Cp = C rounded up to a
    multiple of 8 (extra columns are 0), ``first_bad`` the raster index on the probability grid of the first
    invalid vector (non-finite, negative, or ``|sum - 1| > tol``) or -1, and ``pairs`` an (E, 2) int32 array of
    4-adjacent slot pairs, with repeats (None unless ``want_pairs``).
    """
    cdef Py_ssize_t H = labels.shape[0], W = labels.shape[1], h, w, C, Cp, t, i, j, S = span
    if chw:
        C, h, w = probs.shape[0], probs.shape[1], probs.shape[2]
    else:
        h, w, C = probs.shape[0], probs.shape[1], probs.shape[2]
    Cp = (C + 7) & ~7
    cdef int T = _n_threads(threads)
    if T > H:
        T = H
    # each extra thread costs one set of accumulators; keep those below a quarter of the probability array
    while T > 1 and (T - 1) * S * Cp * 12 > max(h * w * C * <Py_ssize_t>sizeof(real_t) // 4, <Py_ssize_t>(1 << 20)):
        T -= 1
    sums_arr = np.zeros((T, S, Cp), dtype=np.float64)
    ratio_arr = np.zeros((T, S), dtype=np.float64)
    hist_arr = np.zeros((T, S, C), dtype=np.int32)
    counts_arr = np.zeros((T, S), dtype=np.int64)
    bad_arr = np.full(T, -1, dtype=np.int64)
    scratch_arr = np.zeros((T, w * Cp + 8), dtype=np.asarray(probs).dtype)
    slots_arr = np.empty((T, W), dtype=np.int32)
    rcache_arr = np.empty((T, w), dtype=np.float64)
    acache_arr = np.empty((T, w), dtype=np.int32)
    cdef double[:, ::1] rcache = rcache_arr
    cdef int32_t[:, ::1] acache = acache_arr
    cdef double[:, :, ::1] sums = sums_arr
    cdef double[:, ::1] ratio_sums = ratio_arr
    cdef int32_t[:, :, ::1] hist = hist_arr
    cdef int64_t[:, ::1] counts = counts_arr
    cdef int64_t[::1] bad = bad_arr
    cdef real_t[:, ::1] scratch = scratch_arr
    cdef int32_t[:, ::1] slots = slots_arr
    cdef PairBuf* bufs = <PairBuf*>malloc(T * sizeof(PairBuf))
    if bufs == NULL:
        raise MemoryError()
    for t in range(T):
        bufs[t].data = NULL
        bufs[t].size = 0
        bufs[t].cap = 0
        bufs[t].failed = 0
    cdef const label_t* lab = &labels[0, 0]
    cdef const real_t* prob = &probs[0, 0, 0]
    try:
        for t in prange(T, nogil=True, num_threads=T, schedule="static"):
            _rows(lab, base, H, W, t * H // T, (t + 1) * H // T, prob, h, w, C, chw, stride, tol,
                  &slots[t, 0], &scratch[t, 0], &sums[t, 0, 0], &ratio_sums[t, 0], &hist[t, 0, 0],
                  &counts[t, 0], &bad[t],
                  &bufs[t] if want_pairs else NULL, &rcache[t, 0], &acache[t, 0])
        with nogil:
            for t in range(1, T):  # reduce the per-thread slots into slot 0
                for i in range(S * Cp):
                    sums[0, 0, i] += sums[t, 0, i]
                for i in range(S * C):
                    hist[0, 0, i] += hist[t, 0, i]
                for i in range(S):
                    ratio_sums[0, i] += ratio_sums[t, i]
                    counts[0, i] += counts[t, i]
                if bad[0] < 0:
                    bad[0] = bad[t]
        pairs = None
        if want_pairs:
            if any(bufs[t].failed for t in range(T)):
                raise MemoryError("out of memory while collecting region adjacency")
            total = sum(bufs[t].size for t in range(T))
            pairs = np.empty((total // 2, 2), dtype=np.int32)
            j = 0
            for t in range(T):
                if bufs[t].size:
                    memcpy(<int32_t*>cnp.PyArray_DATA(pairs) + j, bufs[t].data, bufs[t].size * sizeof(int32_t))
                    j += bufs[t].size
    finally:
        for t in range(T):
            free(bufs[t].data)
        free(bufs)
    return counts_arr[0], sums_arr[0], ratio_arr[0], hist_arr[0], int(bad_arr[0]), pairs


# ------------------------------------------------------------------------------------------------------------------
# region adjacency as CSR with sorted, duplicate-free neighbour lists
# ------------------------------------------------------------------------------------------------------------------

def adjacency(const int32_t[:, ::1] pairs, const int64_t[::1] to_dense, Py_ssize_t n):
    """CSR ``(indptr, indices)`` over dense regions 0..n-1 from slot pairs (``to_dense`` maps slot -> region).

    Each neighbour list is ascending without repeats: the symmetric, unsorted lists are transposed (visiting
    sources in ascending order and appending each to its neighbours' lists), which sorts them and makes repeats
    adjacent.
    """
    cdef Py_ssize_t E = pairs.shape[0], i, a, b, j, m
    indptr_arr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] indptr = indptr_arr
    start_arr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] start = start_arr
    raw_arr = np.empty(2 * E, dtype=np.int32)
    cdef int32_t[::1] raw = raw_arr
    indices_arr = np.empty(2 * E, dtype=np.int32)
    cdef int32_t[::1] indices = indices_arr
    pos_arr = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] pos = pos_arr
    with nogil:
        for i in range(E):
            start[to_dense[pairs[i, 0]] + 1] += 1
            start[to_dense[pairs[i, 1]] + 1] += 1
        for i in range(n):
            start[i + 1] += start[i]
        for i in range(n):
            pos[i] = start[i]
        for i in range(E):
            a = to_dense[pairs[i, 0]]
            b = to_dense[pairs[i, 1]]
            raw[pos[a]] = <int32_t>b
            pos[a] += 1
            raw[pos[b]] = <int32_t>a
            pos[b] += 1
        for i in range(n):
            pos[i] = start[i]
        for b in range(n):
            for j in range(start[b], start[b + 1]):
                a = raw[j]
                if pos[a] == start[a] or indices[pos[a] - 1] != b:
                    indices[pos[a]] = <int32_t>b
                    pos[a] += 1
        for a in range(n):  # compact: lists shrank where repeats were dropped
            m = pos[a] - start[a]
            for j in range(m):
                indices[indptr[a] + j] = indices[start[a] + j]
            indptr[a + 1] = indptr[a] + m
    return indptr_arr, indices_arr[: indptr_arr[n]].copy()


# ------------------------------------------------------------------------------------------------------------------
# seeded breadth-first merge with the Jensen-Shannon distance to the seed's mean
# ------------------------------------------------------------------------------------------------------------------

cdef inline double _rel_entr(double x, double y) noexcept nogil:
    if x > 0.0 and y > 0.0:
        return x * log(x / y)
    if x == 0.0 and y >= 0.0:
        return 0.0
    return INFINITY  # as scipy.special.rel_entr


cdef inline bint _js_below(const double* p, const double* q, Py_ssize_t C, double eps, double eps2) noexcept nogil:
    """JS(p, q) < eps for normalised p, q, evaluated as scipy's jensenshannon (float64, clamped at 0).

    A prefilter decides most pairs without logarithms: with the triangular discrimination
    D = sum (p - q)^2 / (p + q), the divergence satisfies D / 4 <= JSD <= ln(2) / 2 * D (Topsoe 2000).
    Pairs within a relative margin of the threshold are evaluated exactly.
    """
    cdef Py_ssize_t c
    cdef double d = 0.0, s, diff, left = 0.0, right = 0.0, m
    for c in range(C):
        s = p[c] + q[c]
        if s > 0.0:
            diff = p[c] - q[c]
            d += diff * diff / s
    if 0.25 * d > eps2 * (1.0 + BOUND_MARGIN):
        return False
    if LN2_HALF * d < eps2 * (1.0 - BOUND_MARGIN):
        return True
    for c in range(C):
        m = (p[c] + q[c]) / 2.0
        left += _rel_entr(p[c], m)
        right += _rel_entr(q[c], m)
    s = (left + right) / 2.0
    return sqrt(s if s > 0.0 else 0.0) < eps


def seeded_merge(const int64_t[::1] order, const double[:, ::1] means, const int64_t[::1] indptr,
                 const int32_t[::1] indices, double eps, int64_t max_visited):
    """Return int64 ``target``: the index of the seed that took each region (its own index when untouched).

    ``order`` lists region indices in seed order; ``means`` are the regions' mean probability vectors (each is
    normalised to sum 1 here, sequentially, as scipy does); the search from a seed is breadth-first over the
    CSR adjacency. ``max_visited`` caps the number of seeds started plus regions absorbed.
    """
    cdef Py_ssize_t n = means.shape[0], C = means.shape[1], i, j, c, head, tail
    cdef int64_t s, r, wr, visited = 0
    cdef double total
    cdef double eps2 = eps * eps
    target_arr = np.arange(n, dtype=np.int64)
    cdef int64_t[::1] target = target_arr
    P_arr = np.empty((n, C), dtype=np.float64)
    cdef double[:, ::1] P = P_arr
    merged_arr = np.zeros(n, dtype=np.uint8)
    cdef uint8_t[::1] merged = merged_arr
    stamp_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] stamp = stamp_arr
    queue_arr = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] queue = queue_arr
    cdef bint stop = False
    with nogil:
        for i in range(n):
            total = 0.0
            for c in range(C):
                total += means[i, c]
            for c in range(C):
                P[i, c] = means[i, c] / total
        for i in range(n):
            s = order[i]
            if merged[s]:
                continue
            if visited >= max_visited:
                break
            merged[s] = 1
            stamp[s] = s
            visited += 1
            queue[0] = s
            head = 0
            tail = 1
            while head < tail and not stop:
                r = queue[head]
                head += 1
                for j in range(indptr[r], indptr[r + 1]):
                    wr = indices[j]
                    if merged[wr] or stamp[wr] == s:
                        continue
                    stamp[wr] = s
                    if visited >= max_visited:
                        stop = True
                        break
                    if _js_below(&P[s, 0], &P[wr, 0], C, eps, eps2):
                        merged[wr] = 1
                        target[wr] = s
                        visited += 1
                        queue[tail] = wr
                        tail += 1
            if stop:
                break
    return target_arr


# ------------------------------------------------------------------------------------------------------------------
# output map
# ------------------------------------------------------------------------------------------------------------------

def apply_lut(const label_t[:, ::1] labels, int64_t base, const label_t[::1] lut, label_t[:, ::1] out,
              int threads=0):
    """``out[y, x] = lut[labels[y, x] - base]``."""
    cdef Py_ssize_t H = labels.shape[0], W = labels.shape[1], y, x
    cdef int T = _n_threads(threads)
    for y in prange(H, nogil=True, num_threads=T, schedule="static"):
        for x in range(W):
            out[y, x] = lut[<int64_t>labels[y, x] - base]
