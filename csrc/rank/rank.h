/*
 * rank.h -- top-k selection as the models' recommend functions call it
 * (topk.c); the checked entry points are in recmf.h.
 */
#ifndef RECMF_RANK_H
#define RECMF_RANK_H

#include "recmf.h"

/* Users per recommend block: the block's score matrix (block x n_items
 * floats) stays ~4 MB however many users are asked for, and its sgemm or
 * tile loop stays large. */
static inline int64_t rmf_block_users(int32_t n_items)
{
    int64_t b = ((int64_t)1 << 20) / (n_items > 0 ? n_items : 1);
    return b < 64 ? 64 : b;
}

/* rmf_topk_select's work on one thread: rows [0, n_rows) of scores, with
 * heap of rmf_topk_heap_bytes(k) bytes as scratch.  Defined in topk.c. */
void rmf_topk_block(const float *scores, int64_t n_rows, int32_t n_cols,
                    const rmf_csr *seen, const int32_t *seen_rows,
                    const uint8_t *allowed, int32_t k, void *heap,
                    int32_t *out_items, float *out_scores, int32_t *out_len);
size_t rmf_topk_heap_bytes(int32_t k);
/* rmf_topk_rows without its argument checks, for recommend functions that
 * checked k, seen and the users once for all their blocks.  Defined in
 * topk.c. */
rmf_status rmf_topk_select(const float *scores, int64_t n_rows,
                           int32_t n_cols, const rmf_csr *seen,
                           const int32_t *seen_rows, const uint8_t *allowed,
                           int32_t k, int n_threads,
                           int32_t *out_items, float *out_scores,
                           int32_t *out_len, rmf_error *err);

#endif /* RECMF_RANK_H */
