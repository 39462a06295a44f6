/* sort.c -- stable argsort of int64 keys.  LSD radix sort, 8 bits a pass:
 * linear time, and stability comes for free, which the temporal split needs
 * (rows with equal timestamps keep their input order, as pandas does). */
#include "data/data.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

rmf_status rmf_argsort_stable_i64(const int64_t *keys, int64_t n,
                                  int64_t *perm, rmf_error *err)
{
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    if (n < 2)
        return RMF_OK;

    /* Flipping the sign bit maps signed order onto unsigned order. */
    const uint64_t flip = (uint64_t)1 << 63;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int64_t r = 0; r < n; r++) {
        uint64_t k = (uint64_t)keys[r] ^ flip;
        if (k < lo) lo = k;
        if (k > hi) hi = k;
    }
    /* Sorting key - lo: high bytes that every key shares are all zero and
     * their passes are skipped (timestamps span ~4 bytes, ids ~2). */
    uint64_t range = hi - lo;
    int n_passes = 0;
    while (range > 0) {
        n_passes++;
        range >>= 8;
    }
    if (n_passes == 0)
        return RMF_OK;

    uint64_t *key_a = malloc((size_t)n * sizeof *key_a);
    uint64_t *key_b = malloc((size_t)n * sizeof *key_b);
    int64_t *perm_b = malloc((size_t)n * sizeof *perm_b);
    if (key_a == NULL || key_b == NULL || perm_b == NULL) {
        free(key_a); free(key_b); free(perm_b);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory sorting %lld keys", (long long)n);
    }
    for (int64_t r = 0; r < n; r++)
        key_a[r] = ((uint64_t)keys[perm[r]] ^ flip) - lo;

    uint64_t *ks = key_a, *kd = key_b;
    int64_t *ps = perm, *pd = perm_b;
    for (int pass = 0; pass < n_passes; pass++) {
        int shift = 8 * pass;
        int64_t count[257];
        memset(count, 0, sizeof count);
        for (int64_t r = 0; r < n; r++)
            count[((ks[r] >> shift) & 0xFF) + 1]++;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (int64_t r = 0; r < n; r++) {
            int64_t dst = count[(ks[r] >> shift) & 0xFF]++;
            kd[dst] = ks[r];
            pd[dst] = ps[r];
        }
        uint64_t *kt = ks; ks = kd; kd = kt;
        int64_t *pt = ps; ps = pd; pd = pt;
    }
    if (ps != perm)
        memcpy(perm, ps, (size_t)n * sizeof *perm);
    free(key_a);
    free(key_b);
    free(perm_b);
    return RMF_OK;
}

uint64_t rmf_span_i64(const int64_t *v, int64_t n, int64_t *lo)
{
    int64_t a = v[0], b = v[0];
    for (int64_t r = 1; r < n; r++) {
        if (v[r] < a) a = v[r];
        if (v[r] > b) b = v[r];
    }
    *lo = a;
    /* Unsigned: the difference can exceed INT64_MAX. */
    return (uint64_t)b - (uint64_t)a;
}

/* Bits needed to hold every value in [0, range]. */
static int bits_for(uint64_t range)
{
    int b = 0;
    while (range > 0) {
        b++;
        range >>= 1;
    }
    return b;
}

/* LSD radix sort of keys[0..n) on bits [lo_bit, hi_bit) only, 11 bits a
 * pass, with every pass's histogram taken in one read up front.  Stable,
 * so keys equal on those bits keep their order. */
static rmf_status radix_sort_bits(uint64_t *keys, int64_t n, int lo_bit,
                                  int hi_bit, rmf_error *err)
{
    enum { DIGIT = 11, BUCKETS = 1 << DIGIT, MAX_PASSES = 6 };
    const int n_passes = (hi_bit - lo_bit + DIGIT - 1) / DIGIT;
    if (n_passes == 0 || n < 2)
        return RMF_OK;
    uint64_t *tmp = malloc((size_t)n * sizeof *tmp);
    int64_t (*count)[BUCKETS] = calloc(MAX_PASSES, sizeof *count);
    if (tmp == NULL || count == NULL) {
        free(tmp);
        free(count);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory sorting %lld keys", (long long)n);
    }
    for (int64_t r = 0; r < n; r++)
        for (int p = 0; p < n_passes; p++)
            count[p][(keys[r] >> (lo_bit + DIGIT * p)) & (BUCKETS - 1)]++;
    uint64_t *src = keys, *dst = tmp;
    for (int p = 0; p < n_passes; p++) {
        const int shift = lo_bit + DIGIT * p;
        int64_t sum = 0;
        for (int b = 0; b < BUCKETS; b++) {
            int64_t c = count[p][b];
            count[p][b] = sum;
            sum += c;
        }
        for (int64_t r = 0; r < n; r++)
            dst[count[p][(src[r] >> shift) & (BUCKETS - 1)]++] = src[r];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != keys)
        memcpy(keys, src, (size_t)n * sizeof *keys);
    free(tmp);
    free(count);
    return RMF_OK;
}

int rmf_argsort_pair_packed(const int64_t *major, const int64_t *minor,
                            int64_t n, int64_t *perm, rmf_status *status,
                            rmf_error *err)
{
    *status = RMF_OK;
    if (n < 2) {
        for (int64_t r = 0; r < n; r++)
            perm[r] = r;
        return 1;
    }
    int64_t a_lo, b_lo;
    const int a_bits = bits_for(rmf_span_i64(major, n, &a_lo));
    const int b_bits = bits_for(rmf_span_i64(minor, n, &b_lo));
    const int r_bits = bits_for((uint64_t)(n - 1));
    if (a_bits + b_bits + r_bits > 64)
        return 0;
    /* key = major | minor | row: the row in the low bits rides along
     * unsorted, and the stable sort keeps rows ascending within ties. */
    uint64_t *keys = malloc((size_t)n * sizeof *keys);
    if (keys == NULL) {
        *status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory sorting %lld keys", (long long)n);
        return 1;
    }
    for (int64_t r = 0; r < n; r++) {
        uint64_t a = (uint64_t)major[r] - (uint64_t)a_lo;
        uint64_t b = (uint64_t)minor[r] - (uint64_t)b_lo;
        /* shifts of 64 are undefined: a field of 0 bits is always 0 */
        uint64_t k = (uint64_t)r;
        if (b_bits > 0)
            k |= b << r_bits;
        if (a_bits > 0)
            k |= a << (r_bits + b_bits);
        keys[r] = k;
    }
    *status = radix_sort_bits(keys, n, r_bits, r_bits + b_bits + a_bits, err);
    if (*status == RMF_OK) {
        const uint64_t row_mask = r_bits == 64 ? UINT64_MAX : (((uint64_t)1 << r_bits) - 1);
        for (int64_t k = 0; k < n; k++)
            perm[k] = (int64_t)(keys[k] & row_mask);
    }
    free(keys);
    return 1;
}
