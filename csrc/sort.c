/* sort.c -- stable argsort of int64 keys.  LSD radix sort, 8 bits a pass:
 * linear time, and stability comes for free, which the temporal split needs
 * (rows with equal timestamps keep their input order, as pandas does). */
#include "recmf.h"

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
