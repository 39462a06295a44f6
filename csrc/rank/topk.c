/* topk.c -- partial selection of the K best items per user, seen items
 * skipped and, when a candidate mask is given, only candidates taken --
 * inside the selection, so a list stays K long while K candidates remain.
 * A size-K min-heap per row: O(n_cols log K) and no full sort. */
#include "rank/rank.h"
#include "data/data.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Total order on floats as unsigned keys; NaN sorts below -inf. */
static uint32_t order_key(float x)
{
    if (isnan(x))
        return 0;
    if (x == 0.0f)
        x = 0.0f; /* -0.0 == +0.0: equal scores tie, so the lower column wins */
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* Columns per block of the fast path in select_row. */
#define BLOCK 32

/* The largest score of x[0..BLOCK), NaN ignored (-inf if all are NaN):
 * "x > m ? x : m" is what a vector max instruction computes. */
RMF_CLONES
static float block_max(const float *x)
{
    float m = -INFINITY;
    for (int j = 0; j < BLOCK; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

typedef struct {
    uint32_t key;
    int32_t col;
} entry;

/* a ranks below b: lower score, or equal score and higher column. */
static int worse(entry a, entry b)
{
    return a.key < b.key || (a.key == b.key && a.col > b.col);
}

static void sift_down(entry *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(h[l], h[w])) w = l;
        if (r < n && worse(h[r], h[w])) w = r;
        if (w == i) return;
        entry t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void sift_up(entry *h, int32_t i)
{
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (!worse(h[i], h[p])) return;
        entry t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

/* Heap h of size n (worst at the root) to best-first order in place. */
static void heap_to_sorted(entry *h, int32_t n)
{
    for (int32_t end = n - 1; end > 0; end--) {
        entry t = h[0]; h[0] = h[end]; h[end] = t;
        sift_down(h, end, 0);
    }
    /* Popping the worst to the back leaves the array best-first. */
}

static void select_row(const float *row, int32_t n_cols, const int32_t *seen, int64_t n_seen,
                       const uint8_t *allowed, int32_t k, entry *heap, int32_t *out_items,
                       float *out_scores, int32_t *out_len)
{
    int32_t size = 0;
    int64_t s = 0;
    for (int32_t c = 0; c < n_cols;) {
        int32_t end = c + 1;
        if (size == k && heap[0].key != 0 && c + BLOCK <= n_cols) {
            /* Once the heap is full, an entry must beat its worst: a score
             * above the root's (a tie never does, as columns come in
             * increasing order; key order is float order but for NaN, key
             * 0, which is why a NaN root takes the slow path).  Most blocks
             * of a long row hold none and are skipped in a few vector
             * instructions -- also with a candidate mask: a block whose
             * largest score does not beat the root holds no candidate that
             * does. */
            if (!(block_max(row + c) > row[heap[0].col])) {
                c += BLOCK;
                continue;
            }
            end = c + BLOCK;
        }
        for (; c < end; c++) {
            while (s < n_seen && seen[s] < c)
                s++;
            if (s < n_seen && seen[s] == c)
                continue;
            if (allowed != NULL && !allowed[c])
                continue;
            entry e = {order_key(row[c]), c};
            if (size < k) {
                heap[size] = e;
                sift_up(heap, size++);
            } else if (worse(heap[0], e)) {
                heap[0] = e;
                sift_down(heap, size, 0);
            }
        }
    }
    heap_to_sorted(heap, size);
    for (int32_t r = 0; r < size; r++) {
        out_items[r] = heap[r].col;
        out_scores[r] = row[heap[r].col];
    }
    for (int32_t r = size; r < k; r++) {
        out_items[r] = -1;
        out_scores[r] = -INFINITY;
    }
    *out_len = size;
}

/* For each row r of scores (n_rows x n_cols, row-major) pick the k best
 * columns, best first (higher score first, ties by lower column; NaN ranks
 * below everything), skipping the columns of seen row seen_rows[r] when
 * seen != NULL and seen_rows[r] >= 0, and, when allowed != NULL (n_cols
 * flags), every column whose flag is 0: candidates are filtered inside the
 * selection, so a list is k long while k candidates remain.
 * out_items/out_scores are n_rows x k; out_len[r] is how many were filled
 * (< k when too few columns remain); unfilled slots get -1 / -inf. */
rmf_status rmf_topk_rows(const float *scores, int64_t n_rows, int32_t n_cols,
                         const rmf_csr *seen, const int32_t *seen_rows,
                         const uint8_t *allowed, int32_t k, int n_threads, int32_t *out_items,
                         float *out_scores, int32_t *out_len,
                         rmf_error *err)
{
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", k);
    rmf_status st;
    if (seen != NULL && (st = rmf_csr_check(seen, "seen", -1, -1, err)) != RMF_OK)
        return st;
    if (seen != NULL && seen_rows != NULL)
        for (int64_t r = 0; r < n_rows; r++)
            if (seen_rows[r] >= seen->n_rows)
                return rmf_fail(err, RMF_ERR_VALUE, "user index %d is outside [0, %d)",
                                seen_rows[r], seen->n_rows);
    return rmf_topk_select(scores, n_rows, n_cols, seen, seen_rows, allowed, k, n_threads, out_items,
                           out_scores, out_len, err);
}

void rmf_topk_block(const float *scores, int64_t n_rows, int32_t n_cols,
                    const rmf_csr *seen, const int32_t *seen_rows,
                    const uint8_t *allowed, int32_t k, void *heap,
                    int32_t *out_items, float *out_scores, int32_t *out_len)
{
    for (int64_t r = 0; r < n_rows; r++) {
        const int32_t *srow = NULL;
        int64_t n_seen = 0;
        if (seen != NULL && seen_rows != NULL && seen_rows[r] >= 0) {
            srow = seen->indices + seen->indptr[seen_rows[r]];
            n_seen = seen->indptr[seen_rows[r] + 1] - seen->indptr[seen_rows[r]];
        }
        select_row(scores + r * (int64_t)n_cols, n_cols, srow, n_seen, allowed, k, heap,
                   out_items + r * (int64_t)k, out_scores + r * (int64_t)k, &out_len[r]);
    }
}

size_t rmf_topk_heap_bytes(int32_t k) { return (size_t)k * sizeof(entry); }

rmf_status rmf_topk_select(const float *scores, int64_t n_rows,
                           int32_t n_cols, const rmf_csr *seen,
                           const int32_t *seen_rows, const uint8_t *allowed,
                           int32_t k, int n_threads,
                           int32_t *out_items, float *out_scores,
                           int32_t *out_len, rmf_error *err)
{
    int failed = 0;
    (void)n_threads;
    rmf_stop *stop = rmf_stop_here();
    RMF_PARALLEL(rmf_resolve_threads(n_threads))
    {
        RMF_TEAM_BEGIN;
        entry *heap = malloc((size_t)k * sizeof *heap);
        if (heap == NULL) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < n_rows; r++) {
            if (heap == NULL || rmf_stopping(stop))
                continue;
            rmf_topk_block(scores + r * (int64_t)n_cols, 1, n_cols, seen,
                           seen_rows ? seen_rows + r : NULL, allowed, k, heap,
                           out_items + r * (int64_t)k, out_scores + r * (int64_t)k,
                           &out_len[r]);
        }
        free(heap);
        RMF_TEAM_END;
    }
    if (failed)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a heap of k=%d", k);
    return RMF_OK;
}

/* Same rule for a fixed ranking (best first) shared by every row:
 * popularity recommendation; allowed holds n_allowed flags, every ranked
 * item below n_allowed. */
rmf_status rmf_topk_ranked(const int32_t *ranking, int32_t n_rank,
                           const rmf_csr *seen, const int32_t *users,
                           int64_t n_users, const uint8_t *allowed,
                           int32_t n_allowed, int32_t k, int32_t *out_items,
                           int32_t *out_len, rmf_error *err)
{
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", k);
    rmf_status st;
    if (allowed != NULL && (st = rmf_check_ids(ranking, n_rank, n_allowed, "ranking", err)) != RMF_OK)
        return st;
    if (seen != NULL && ((st = rmf_csr_check(seen, "seen", -1, -1, err)) != RMF_OK ||
                         (st = rmf_check_ids(ranking, n_rank, seen->n_cols, "ranking", err)) != RMF_OK))
        return st;
    for (int64_t r = 0; r < n_users; r++)
        if (seen != NULL && users[r] >= seen->n_rows)
            return rmf_fail(err, RMF_ERR_VALUE, "user index %d is outside [0, %d)",
                            users[r], seen->n_rows);
    rmf_stop *stop = rmf_stop_here();
    for (int64_t r = 0; r < n_users; r++) {
        if ((r & 1023) == 0 && rmf_stopping(stop))
            break;
        int32_t *out = out_items + r * (int64_t)k;
        int32_t n = 0;
        for (int32_t q = 0; q < n_rank && n < k; q++) {
            if (seen != NULL && users[r] >= 0 && rmf_csr_contains(seen, users[r], ranking[q]))
                continue;
            if (allowed != NULL && !allowed[ranking[q]])
                continue;
            out[n++] = ranking[q];
        }
        out_len[r] = n;
        for (int32_t q = n; q < k; q++)
            out[q] = -1;
    }
    return RMF_OK;
}
