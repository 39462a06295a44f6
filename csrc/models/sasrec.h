/*
 * models/sasrec.h -- SASRec (Kang & McAuley, ICDM 2018) in the form RecTools
 * 0.19 trains it, with full-softmax cross-entropy (SASRec+, Klenitskiy &
 * Vasilev, RecSys 2023) or sampled softmax over shared negatives.
 *
 * A user's sequence is their items oldest first; a training window is its
 * last max_len + 1 items: token t (of n = window - 1) reads item t and
 * predicts item t + 1.  Token t's input is
 *     x_t = E[item_t] s + P[n - 1 - t]      (s = sqrt(d) with scale_emb, else 1)
 * then dropout; each block is the SASRec authors' layout
 *     q = LN1(x);  x = q + Wo attn(q Wq^T, x Wk^T, x Wv^T) + bo   (causal, H heads)
 *     f = LN2(x);  x = f + drop(W2 drop(relu(W1 f + b1)) + b2)
 * and h = LN_last(x) (eps 1e-8) scores item j as h . E[j].
 *
 * theta (one float array):
 *   item  n_items x d | pos  max_len x d |
 *   per block: ln1 (gamma d, beta d) | in_W 3d x d ([Wq; Wk; Wv]) | in_b 3d |
 *              out_W d x d | out_b d | ln2 (gamma, beta) | W1 d x d | b1 d |
 *              W2 d x d | b2 d |
 *   last LN (gamma d, beta d)
 */
#ifndef RECMF_MODELS_SASREC_H
#define RECMF_MODELS_SASREC_H

#include "nn/seq.h"

#define RMF_SASREC_MAX_BLOCKS 16

typedef struct {
    int32_t n_items;
    int32_t emb_dim;  /* d */
    int32_t n_heads;  /* H, divides d */
    int32_t n_blocks;
    int32_t max_len;  /* L: tokens of a window, positions of P */
} rmf_sasrec_shape;

enum { RMF_SASREC_SOFTMAX = 0, RMF_SASREC_SAMPLED = 1 };

typedef struct {
    float dropout;
    int32_t batch_size;   /* sequences per batch */
    int32_t loss;         /* RMF_SASREC_SOFTMAX or RMF_SASREC_SAMPLED */
    int32_t n_negatives;  /* shared negatives per batch (sampled) */
    int32_t scale_emb;    /* 1: item embeddings times sqrt(d) */
    uint64_t seed;
    int n_threads;
    rmf_adam_params adam;
} rmf_sasrec_params;

void rmf_sasrec_default_params(rmf_sasrec_params *p);
rmf_status rmf_sasrec_check_shape(const rmf_sasrec_shape *s, rmf_error *err);
rmf_status rmf_sasrec_check_params(const rmf_sasrec_params *p, rmf_error *err);
int64_t rmf_sasrec_n_params(const rmf_sasrec_shape *s);

/* One epoch over the users of seqs (each user's items oldest first; users
 * with fewer than 2 items are skipped): windows shuffled with (seed,
 * epoch), batches of batch_size windows, Adam on every parameter (the item
 * table's untouched rows get a zero gradient, as PyTorch's dense Adam).
 * *loss: mean cross-entropy per token; *n_done: tokens trained. */
rmf_status rmf_sasrec_train_epoch(const rmf_sasrec_params *p, const rmf_sasrec_shape *s,
                                  const rmf_seq *seqs, uint64_t epoch, rmf_opt_state *st,
                                  rmf_stop_fn stop, void *stop_ctx, double *loss,
                                  int64_t *n_done, rmf_error *err);

/* One batch's loss (mean over its tokens) and gradient, written densely
 * into grad (n_params): the kernel the epoch runs, for tests.  The batch's
 * windows are rows[0..n) of win (each window's items oldest first, >= 2
 * items, <= max_len + 1); own, when not NULL, holds each window's user
 * items for the sampled loss's masks (row rows[r]), else the window's own
 * items are used.  Dropout and negatives are drawn for (seed, epoch,
 * batch). */
rmf_status rmf_sasrec_batch_grad(const rmf_sasrec_params *p, const rmf_sasrec_shape *s,
                                 const float *theta, const rmf_seq *win,
                                 const int32_t *rows, int64_t n, uint64_t epoch,
                                 uint64_t batch, float *grad, double *loss,
                                 rmf_error *err);

/* out (n x d): h at the last token of sequence rows[r] of seqs (its last
 * max_len items), no dropout; a sequence with no item gets zeros. */
rmf_status rmf_sasrec_encode(const rmf_sasrec_shape *s, const float *theta,
                             const rmf_seq *seqs, const int32_t *rows, int64_t n,
                             int n_threads, float *out, rmf_error *err);
/* The same for every token: out is (sum of the sequences' token counts) x
 * d, sequences in rows order (whole-forward tests). */
rmf_status rmf_sasrec_encode_all(const rmf_sasrec_shape *s, const float *theta,
                                 const rmf_seq *seqs, const int32_t *rows, int64_t n,
                                 int n_threads, float *out, rmf_error *err);

#endif /* RECMF_MODELS_SASREC_H */
