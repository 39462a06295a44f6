/*
 * train.h -- plumbing the mini-batch models share (batch.c): argument
 * checks, the distinct rows of a batch side, and the epoch loop's
 * bookkeeping.  One copy, so that a fix to, say, a check's message or the
 * first-appearance order of a batch group reaches every model.
 */
#ifndef RECMF_TRAIN_H
#define RECMF_TRAIN_H

#include "recmf.h"

/* ------------------------------------------------------------------ */
/* Argument checks (one message each)                                 */
/* ------------------------------------------------------------------ */

/* n_users, n_items and emb_dim >= 1; a model's check_shape adds its own
 * fields (rmf_ncf_check_shape). */
rmf_status rmf_check_shape(const rmf_shape *s, rmf_error *err);
/* score_pairs arguments for a checked shape: n >= 0 and, when n > 0, theta
 * and out non-NULL and u, i in range. */
rmf_status rmf_check_pairs_args(const rmf_shape *s, const float *theta,
                                const int32_t *u, const int32_t *i, int64_t n,
                                const float *out, rmf_error *err);
/* recommend arguments for a checked shape: n >= 0, k >= 1, outputs
 * non-NULL, seen (may be NULL) a sound n_users x n_items CSR, users in
 * range. */
rmf_status rmf_check_recommend_args(const rmf_shape *s, const float *theta,
                                    const int32_t *users, int64_t n,
                                    const rmf_csr *seen, int32_t k,
                                    const int32_t *out_items,
                                    const float *out_scores,
                                    const int32_t *out_len, rmf_error *err);
/* st holds theta, m, v of n_params floats and a step >= 0. */
rmf_status rmf_check_opt_state(const rmf_opt_state *st, int64_t n_params,
                               rmf_error *err);

/* ------------------------------------------------------------------ */
/* Batches: the distinct rows of one side                             */
/* ------------------------------------------------------------------ */

/* The distinct keys of one side of a batch in first-appearance order
 * (ids), each entry's slot in ids (slot_of), and the entries of each slot,
 * ascending, as a CSR: list[ptr[s] .. ptr[s+1]). */
typedef struct {
    int64_t n_distinct;
    int32_t *ids;     /* capacity min(cap_entries, n_keys) */
    int32_t *slot_of; /* capacity cap_entries */
    int64_t *ptr;     /* capacity min(cap_entries, n_keys) + 1 */
    int64_t *list;    /* capacity cap_entries */
    int32_t *table;   /* n_keys: key -> slot while building, -1 otherwise */
} rmf_group;

/* Allocates for up to cap_entries entries with keys in [0, n_keys); 0 when
 * out of memory (g is then still safe to rmf_group_free). */
int rmf_group_alloc(rmf_group *g, int64_t cap_entries, int32_t n_keys);
/* Frees g (fields may be NULL) and zeroes it. */
void rmf_group_free(rmf_group *g);
/* Builds g from keys[0..n), n <= cap_entries, keys in [0, n_keys). */
void rmf_group_build(rmf_group *g, const int32_t *keys, int64_t n);
/* Zeroes rows g->ids[0..n_distinct) of grad (rows of D floats).  An
 * orphaned "omp for nowait": call it inside a parallel region (or outside,
 * serially). */
void rmf_zero_rows(float *grad, const rmf_group *g, int D);

/* ------------------------------------------------------------------ */
/* Epoch bookkeeping                                                  */
/* ------------------------------------------------------------------ */

/* Epoch start: zeroes *loss and *n_done (either may be NULL), then checks
 * p (rmf_train_check_params).  The trainer checks its shape next. */
rmf_status rmf_epoch_begin(const rmf_train_params *p, double *loss,
                           int64_t *n_done, rmf_error *err);
/* Before batch b of n_batches: RMF_ERR_INTERRUPTED when b > 0 and stop
 * (may be NULL) asks to stop, else RMF_OK. */
rmf_status rmf_epoch_should_stop(rmf_stop_fn stop, void *stop_ctx, int64_t b,
                                 int64_t n_batches, rmf_error *err);
/* *loss = total / done (0 when done == 0), *n_done = done; either may be
 * NULL. */
void rmf_epoch_end(double total, int64_t done, double *loss, int64_t *n_done);

#endif /* RECMF_TRAIN_H */
