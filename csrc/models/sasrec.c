/* sasrec.c -- SASRec (Kang & McAuley, ICDM 2018) as RecTools 0.19 trains
 * it, with full-softmax cross-entropy (SASRec+, Klenitskiy & Vasilev,
 * RecSys 2023) or sampled softmax over shared negatives: the descriptor,
 * the batch function the one loop (train/loop.c) drives, and scoring from
 * a user's sequence.  Built from nn/'s sequence layers (nn.h).
 *
 * A user's sequence is their items oldest first; a training window is its
 * last max_len + 1 items: token t (of n = window - 1) reads item t and
 * predicts item t + 1.  Token t's input is
 *     x_t = E[item_t] s + P[n - 1 - t]   (s = sqrt(d) with scale_emb, else 1)
 * then dropout; each block is the SASRec authors' layout
 *     q = LN1(x);  x = q + Wo attn(q Wq^T, x Wk^T, x Wv^T) + bo   (causal, H heads)
 *     f = LN2(x);  x = f + drop(W2 drop(relu(W1 f + b1)) + b2)
 * and h = LN_last(x) (eps 1e-8) scores item j as h . E[j].
 *
 * How a batch is split.  Its windows are cut into PARTS contiguous groups
 * of about equal token counts, a cut fixed by the data alone; each part
 * runs every layer of its windows, forward and backward, on one thread
 * with one-thread BLAS, into its own gradient buffers, and the parts'
 * gradients are added in part order.  So a seed gives the same weights on
 * any thread count (and on a team the pacer shrinks), and the threads
 * never wait for each other inside a batch: one fork/join per batch for
 * the whole network, where a layer-by-layer split would need one per layer
 * and per product.  Tokens are packed (no padding): a window of n tokens
 * costs n rows, and its attention n x n.
 *
 * The item table's gradient is kept by slot: with full softmax every item
 * is touched and slot = item; with sampled softmax the slots are the
 * batch's distinct items (inputs, targets, negatives), so a part never
 * zeroes or sums rows it did not touch (ML-20M's table is 7 MB). */
#include "models/model.h"

#include "nn/nn.h"
#include "rank/rank.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PARTS 8
#define MAX_BLOCKS 16

/* ------------------------------------------------------------------ */
/* Config and layout                                                   */
/* ------------------------------------------------------------------ */

enum { LOSS_SOFTMAX = 0, LOSS_SAMPLED = 1 };

typedef struct {
    rmf_config base;
    int32_t emb_dim, n_heads, n_blocks, max_len;
    float dropout;
    int32_t loss, n_negatives, scale_emb;
} sas_config;
_Static_assert(sizeof(sas_config) <= RMF_CONFIG_MAX, "config too large");

static const rmf_field FIELDS[] = {
    RMF_FIELD(sas_config, "emb_dim", 'i', emb_dim, "width d of every layer"),
    RMF_FIELD(sas_config, "n_heads", 'i', n_heads, "attention heads (divide emb_dim)"),
    RMF_FIELD(sas_config, "n_blocks", 'i', n_blocks, "transformer blocks"),
    RMF_FIELD(sas_config, "max_len", 'i', max_len, "most recent items of a sequence read"),
    RMF_FIELD(sas_config, "dropout", 'f', dropout, "dropout on inputs, attention and feed-forward"),
    RMF_FIELD(sas_config, "loss", 'i', loss, "0: softmax over every item; 1: sampled negatives"),
    RMF_FIELD(sas_config, "n_negatives", 'i', n_negatives, "shared negatives per batch (sampled)"),
    RMF_FIELD(sas_config, "scale_emb", 'i', scale_emb, "1: item embeddings times sqrt(d) at the input"),
    {NULL, 0, 0, NULL},
};

/* RecTools' settings: batches of 128 users, Adam lr 2e-3, betas (0.9, 0.98). */
static void defaults(void *cfg)
{
    sas_config *c = cfg;
    c->emb_dim = 64;
    c->n_heads = 2;
    c->n_blocks = 2;
    c->max_len = 200;
    c->dropout = 0.2f;
    c->loss = LOSS_SOFTMAX;
    c->n_negatives = 256;
    c->scale_emb = 0;
    c->base.train.batch_size = 128;
    c->base.train.adam.lr = 2e-3f;
    c->base.train.adam.beta2 = 0.98f;
    c->base.train.adam.weight_decay = 0.0f;
}

static rmf_status check(const void *cfg, rmf_error *err)
{
    const sas_config *c = cfg;
    if (c->emb_dim < 1 || c->emb_dim > RMF_SEQ_MAX_DIM)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim must be in [1, %d], got %d", RMF_SEQ_MAX_DIM,
                        (int)c->emb_dim);
    if (c->n_heads < 1 || c->emb_dim % c->n_heads != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n_heads must be >= 1 and divide emb_dim %d, got %d",
                        (int)c->emb_dim, (int)c->n_heads);
    if (c->n_blocks < 0 || c->n_blocks > MAX_BLOCKS)
        return rmf_fail(err, RMF_ERR_VALUE, "n_blocks must be in [0, %d], got %d", MAX_BLOCKS,
                        (int)c->n_blocks);
    if (c->max_len < 1 || c->max_len > 4096)
        return rmf_fail(err, RMF_ERR_VALUE, "max_len must be in [1, 4096], got %d", (int)c->max_len);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return rmf_fail(err, RMF_ERR_VALUE, "dropout must be in [0, 1), got %g", (double)c->dropout);
    if (c->loss != LOSS_SOFTMAX && c->loss != LOSS_SAMPLED)
        return rmf_fail(err, RMF_ERR_VALUE, "loss must be 0 (softmax) or 1 (sampled), got %d",
                        (int)c->loss);
    if (c->n_negatives < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_negatives must be >= 1, got %d", (int)c->n_negatives);
    if (c->scale_emb != 0 && c->scale_emb != 1)
        return rmf_fail(err, RMF_ERR_VALUE, "scale_emb must be 0 or 1, got %d", (int)c->scale_emb);
    return RMF_OK;
}

/* theta's blocks, each transformer block's parameters stacked over the
 * blocks (block b's rows follow block b-1's): a layout of 16 named blocks
 * whatever n_blocks is. */
enum { ITEM, POS, LN1G, LN1B, INW, INB, OUTW, OUTB, LN2G, LN2B, W1, B1, W2, B2, LASTG, LASTB, N_BLK };

/* Xavier-normal's std for a rows x cols matrix (RecTools' start). */
static double xavier(int64_t rows, int64_t cols) { return sqrt(2.0 / (double)(rows + cols)); }

static void layout(const void *cfg, rmf_layout *L)
{
    const sas_config *c = cfg;
    const int64_t d = c->emb_dim, B = c->n_blocks;
    const int T = RMF_BLOCK_TABLE, D = RMF_BLOCK_DENSE;
    rmf_layout_add(L, "item_emb", c->base.n_items, d, T, RMF_INIT_NORMAL, xavier(c->base.n_items, d));
    rmf_layout_add(L, "pos_emb", c->max_len, d, D, RMF_INIT_NORMAL, xavier(c->max_len, d));
    rmf_layout_add(L, "ln1_gamma", B, d, D, RMF_INIT_ONE, 0);
    rmf_layout_add(L, "ln1_beta", B, d, D, RMF_INIT_ZERO, 0);
    rmf_layout_add(L, "in_proj", B * 3 * d, d, D, RMF_INIT_NORMAL, xavier(3 * d, d));
    rmf_layout_add(L, "in_bias", B, 3 * d, D, RMF_INIT_ZERO, 0);
    rmf_layout_add(L, "out_proj", B * d, d, D, RMF_INIT_NORMAL, xavier(d, d));
    rmf_layout_add(L, "out_bias", B, d, D, RMF_INIT_ZERO, 0);
    rmf_layout_add(L, "ln2_gamma", B, d, D, RMF_INIT_ONE, 0);
    rmf_layout_add(L, "ln2_beta", B, d, D, RMF_INIT_ZERO, 0);
    rmf_layout_add(L, "ff1_weight", B * d, d, D, RMF_INIT_NORMAL, xavier(d, d));
    rmf_layout_add(L, "ff1_bias", B, d, D, RMF_INIT_UNIFORM, (double)d);
    rmf_layout_add(L, "ff2_weight", B * d, d, D, RMF_INIT_NORMAL, xavier(d, d));
    rmf_layout_add(L, "ff2_bias", B, d, D, RMF_INIT_UNIFORM, (double)d);
    rmf_layout_add(L, "last_gamma", d, 0, D, RMF_INIT_ONE, 0);
    rmf_layout_add(L, "last_beta", d, 0, D, RMF_INIT_ZERO, 0);
}

/* Block b's parameters in an array laid out as theta from offset shift on
 * (theta itself: shift 0; a part's dense gradient: shift off[POS]). */
typedef struct {
    float *ln1g, *ln1b, *inW, *inb, *outW, *outb, *ln2g, *ln2b, *W1, *b1, *W2, *b2;
} blk;

static blk block_at(const float *base, int64_t shift, const int64_t *off, int64_t d, int b)
{
    float *p = (float *)base;
    const int64_t dd = d * d;
#define AT(K, size) (p + (off[K] - shift) + (int64_t)b * (size))
    blk k = {AT(LN1G, d), AT(LN1B, d), AT(INW, 3 * dd), AT(INB, 3 * d), AT(OUTW, dd),
             AT(OUTB, d),  AT(LN2G, d), AT(LN2B, d),    AT(W1, dd),     AT(B1, d),
             AT(W2, dd),   AT(B2, d)};
#undef AT
    return k;
}

/* ------------------------------------------------------------------ */
/* Workspace                                                           */
/* ------------------------------------------------------------------ */

/* One batch laid out as tokens: window w's tokens are rows tok[w] ..
 * tok[w+1] of every per-token array. */
typedef struct {
    int d, H, B, L, train, sampled, n_neg;
    int32_t n_items;
    int64_t cap_tok, cap_win, cap_probs, cap_slots;
    int64_t off[N_BLK]; /* the layout's offsets */
    /* tokens */
    int32_t *item_in, *target, *tslot, *posi, *win_of, *rows, *all_items;
    int64_t *tok, *poff;
    /* activations: X has B + 1 slices, the others B, each cap_tok rows */
    float *X, *Qn, *st1, *QKV, *ATT, *X1, *Fn, *st2, *HID, *probs, *Hl, *stL;
    /* backward rows */
    float *G1, *G2, *G3, *G4, *G5, *G6, *fscr;
    /* per part */
    float *pgrad, *pitem, *ascr, *cescr, *pdEneg;
    int64_t n_dense, cescr_len, ascr_len;
    double ploss[PARTS];
    int64_t pw0[PARTS + 1]; /* part p: windows [pw0[p], pw0[p+1]) */
    /* sampled softmax */
    int32_t *neg, *slot_of_item, *slot_items;
    float *Eneg;
    uint8_t *negmask, *mark;
    int64_t n_slots;
    int64_t n_win, n_tok;
    const rmf_seq *own; /* the sequences rows index: sampled masks */
} sas_ws;

static void ws_free(void *p)
{
    sas_ws *w = p;
    if (w == NULL)
        return;
    void *ptrs[] = {w->item_in, w->target, w->tslot, w->posi, w->win_of, w->rows, w->all_items,
                    w->tok, w->poff, w->X, w->Qn, w->st1, w->QKV, w->ATT, w->X1, w->Fn,
                    w->st2, w->HID, w->probs, w->Hl, w->stL, w->G1, w->G2, w->G3, w->G4,
                    w->G5, w->G6, w->fscr, w->pgrad, w->pitem, w->ascr, w->cescr, w->pdEneg,
                    w->neg, w->slot_of_item, w->slot_items, w->Eneg, w->negmask, w->mark};
    for (size_t k = 0; k < sizeof ptrs / sizeof *ptrs; k++)
        free(ptrs[k]);
    free(w);
}

#define ALLOC(ptr, count)                                                      \
    do {                                                                       \
        (ptr) = malloc((size_t)(count) * sizeof *(ptr) + 64);                  \
        if ((ptr) == NULL)                                                     \
            goto nomem;                                                        \
    } while (0)

/* Room for batches of up to cap_win windows, cap_tok tokens and cap_probs
 * attention entries (the sum of n^2 over a batch's windows); train adds
 * the backward's rows and the parts' gradients. */
static rmf_status ws_make(const sas_config *c, int train, int64_t cap_win, int64_t cap_tok,
                          int64_t cap_probs, sas_ws **out, rmf_error *err)
{
    *out = NULL;
    sas_ws *w = calloc(1, sizeof *w);
    if (w == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a SASRec workspace");
    const int64_t d = c->emb_dim, B = c->n_blocks, L = c->max_len;
    const int32_t n_items = c->base.n_items;
    rmf_layout lay;
    memset(&lay, 0, sizeof lay);
    layout(c, &lay);
    for (int k = 0; k < N_BLK; k++)
        w->off[k] = lay.block[k].offset;
    w->d = c->emb_dim;
    w->H = c->n_heads;
    w->B = c->n_blocks;
    w->L = c->max_len;
    w->train = train;
    w->n_items = n_items;
    w->sampled = train && c->loss == LOSS_SAMPLED;
    w->n_neg = w->sampled ? c->n_negatives : 0;
    w->cap_tok = cap_tok > 0 ? cap_tok : 1;
    w->cap_win = cap_win > 0 ? cap_win : 1;
    w->cap_probs = (cap_probs > 0 ? cap_probs : 1) * c->n_heads;
    const int64_t T = w->cap_tok;
    ALLOC(w->item_in, T);
    ALLOC(w->target, T);
    ALLOC(w->tslot, T);
    ALLOC(w->posi, T);
    ALLOC(w->win_of, T);
    ALLOC(w->rows, w->cap_win);
    ALLOC(w->tok, w->cap_win + 1);
    ALLOC(w->poff, w->cap_win + 1);
    ALLOC(w->X, (B + 1) * T * d);
    ALLOC(w->Qn, B * T * d + 1);
    ALLOC(w->st1, B * T * 2 + 1);
    ALLOC(w->QKV, B * T * 3 * d + 1);
    ALLOC(w->ATT, B * T * d + 1);
    ALLOC(w->X1, B * T * d + 1);
    ALLOC(w->Fn, B * T * d + 1);
    ALLOC(w->st2, B * T * 2 + 1);
    ALLOC(w->HID, B * T * d + 1);
    ALLOC(w->probs, B * w->cap_probs + 1);
    ALLOC(w->Hl, T * d);
    ALLOC(w->stL, T * 2);
    w->ascr_len = rmf_attention_scratch((int)L);
    ALLOC(w->ascr, PARTS * w->ascr_len);
    if (train) {
        ALLOC(w->G1, T * d);
        ALLOC(w->G2, T * d);
        ALLOC(w->G3, T * d);
        ALLOC(w->G4, T * d);
        ALLOC(w->G5, T * d);
        ALLOC(w->G6, T * 3 * d);
        ALLOC(w->fscr, T * 2 * d);
        w->n_dense = lay.n_params - w->off[POS];
        ALLOC(w->pgrad, PARTS * w->n_dense);
        if (w->sampled) {
            /* slots: the batch's distinct inputs, targets and negatives */
            w->cap_slots = 2 * T + w->n_neg < n_items ? 2 * T + w->n_neg : n_items;
            w->cescr_len = rmf_sampled_ce_scratch(w->n_neg);
            ALLOC(w->neg, w->n_neg);
            ALLOC(w->Eneg, (int64_t)w->n_neg * d);
            ALLOC(w->pdEneg, PARTS * (int64_t)w->n_neg * d);
            ALLOC(w->negmask, w->cap_win * w->n_neg);
            ALLOC(w->mark, (int64_t)PARTS * n_items);
            memset(w->mark, 0, (size_t)PARTS * (size_t)n_items);
            ALLOC(w->slot_items, w->cap_slots);
        } else {
            w->cap_slots = n_items;
            w->cescr_len = rmf_softmax_ce_scratch(n_items);
            ALLOC(w->all_items, n_items);
            for (int32_t i = 0; i < n_items; i++)
                w->all_items[i] = i;
        }
        ALLOC(w->slot_of_item, n_items);
        for (int32_t i = 0; i < n_items; i++)
            w->slot_of_item[i] = w->sampled ? -1 : i;
        ALLOC(w->pitem, PARTS * w->cap_slots * d);
        ALLOC(w->cescr, PARTS * w->cescr_len);
    }
    *out = w;
    return RMF_OK;
nomem:
    ws_free(w);
    return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for SASRec batches of %lld tokens",
                    (long long)cap_tok);
}

/* The loop's workspace: batches of up to cap users, each window at most
 * max_len tokens (what a batch can need, whatever the data). */
static rmf_status ws_alloc(const void *cfg, int64_t cap, void **out, rmf_error *err)
{
    const sas_config *c = cfg;
    const int64_t L = c->max_len;
    sas_ws *w;
    rmf_status st = ws_make(c, 1, cap, cap * L, cap * L * L, &w, err);
    *out = w;
    return st;
}

/* ------------------------------------------------------------------ */
/* Batch layout                                                        */
/* ------------------------------------------------------------------ */

/* Lays out windows rows[0..n) of seq (training: each row's last L + 1
 * items, inputs all but the last; encoding: its last L items) as tokens,
 * and cuts them into PARTS by tokens. */
static void lay_out(sas_ws *w, const rmf_seq *seq, const int32_t *rows, int64_t n, int for_train)
{
    int64_t t = 0, pp = 0;
    w->tok[0] = 0;
    w->poff[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        const int64_t a = seq->indptr[rows[r]], b = seq->indptr[rows[r] + 1];
        int64_t m = for_train ? b - a - 1 : b - a;
        m = m > w->L ? w->L : (m < 0 ? 0 : m);
        const int64_t first = for_train ? b - 1 - m : b - m;
        for (int64_t k = 0; k < m; k++) {
            w->item_in[t + k] = seq->items[first + k];
            w->target[t + k] = for_train ? seq->items[first + k + 1] : 0;
            w->posi[t + k] = (int32_t)(m - 1 - k);
            w->win_of[t + k] = (int32_t)r;
        }
        t += m;
        pp += m * m;
        w->tok[r + 1] = t;
        w->poff[r + 1] = pp * w->H;
    }
    /* PARTS parts of about t / PARTS tokens: part p ends at the window
     * end nearest to (p + 1) t / PARTS */
    int64_t r = 0;
    w->pw0[0] = 0;
    for (int p = 0; p < PARTS; p++) {
        const int64_t goal = t * (p + 1) / PARTS;
        while (r < n && w->tok[r + 1] <= goal)
            r++;
        if (r < n && goal - w->tok[r] > w->tok[r + 1] - goal)
            r++;
        w->pw0[p + 1] = p == PARTS - 1 ? n : r;
    }
    w->n_win = n;
    w->n_tok = t;
}

/* ------------------------------------------------------------------ */
/* One part: forward, loss, backward                                  */
/* ------------------------------------------------------------------ */

typedef struct {
    const float *theta;
    float emb_scale, scale; /* input scale; loss scale 1 / batch tokens */
    rmf_drop drop[1 + 3 * MAX_BLOCKS];
} pass_ctx;

#define SL(arr, b, width) ((arr) + ((int64_t)(b) * w->cap_tok) * (width))

static void part_forward(sas_ws *w, const pass_ctx *c, int p)
{
    const int d = w->d, H = w->H;
    const int64_t w0 = w->pw0[p], w1 = w->pw0[p + 1];
    const int64_t t0 = w->tok[w0], n = w->tok[w1] - t0;
    if (n == 0)
        return;
    const float *th = c->theta, *E = th + w->off[ITEM], *P = th + w->off[POS];
    for (int64_t t = t0; t < t0 + n; t++) {
        const float *e = E + (int64_t)w->item_in[t] * d, *q = P + (int64_t)w->posi[t] * d;
        float *x = w->X + t * d;
        for (int k = 0; k < d; k++)
            x[k] = e[k] * c->emb_scale + q[k];
    }
    rmf_drop_apply(&c->drop[0], (uint64_t)t0, w->X + t0 * d, n, d, d);
    float *ascr = w->ascr + p * w->ascr_len;
    for (int b = 0; b < w->B; b++) {
        const blk k = block_at(th, 0, w->off, d, b);
        float *Xb = SL(w->X, b, d) + t0 * d, *Qn = SL(w->Qn, b, d) + t0 * d;
        float *QKV = SL(w->QKV, b, 3 * d) + t0 * 3 * d, *ATT = SL(w->ATT, b, d) + t0 * d;
        float *X1 = SL(w->X1, b, d) + t0 * d, *Fn = SL(w->Fn, b, d) + t0 * d;
        float *HID = SL(w->HID, b, d) + t0 * d, *Xn = SL(w->X, b + 1, d) + t0 * d;
        rmf_layernorm_forward(Xb, n, d, k.ln1g, k.ln1b, 1e-5f, Qn, SL(w->st1, b, 2) + t0 * 2);
        rmf_linear_forward(Qn, d, n, d, k.inW, k.inb, d, QKV, 3 * d);
        rmf_linear_forward(Xb, d, n, d, k.inW + (int64_t)d * d, k.inb + d, 2 * d, QKV + d, 3 * d);
        float *probs = w->probs + b * w->cap_probs;
        for (int64_t r = w0; r < w1; r++) {
            const int64_t a = w->tok[r], m = w->tok[r + 1] - a;
            rmf_attention_forward(SL(w->QKV, b, 3 * d) + a * 3 * d, (int)m, d, H, &c->drop[1 + 3 * b],
                                  (uint64_t)a, probs + w->poff[r], SL(w->ATT, b, d) + a * d, ascr);
        }
        rmf_linear_forward(ATT, d, n, d, k.outW, k.outb, d, X1, d);
        for (int64_t q = 0; q < n * d; q++)
            X1[q] += Qn[q];
        rmf_layernorm_forward(X1, n, d, k.ln2g, k.ln2b, 1e-5f, Fn, SL(w->st2, b, 2) + t0 * 2);
        rmf_ffn f = {k.W1, k.b1, k.W2, k.b2, NULL, NULL, NULL, NULL, d, d,
                     c->drop[2 + 3 * b], c->drop[3 + 3 * b]};
        rmf_ffn_forward(&f, Fn, n, (uint64_t)t0, HID, Xn);
    }
    rmf_layernorm_forward(SL(w->X, w->B, d) + t0 * d, n, d, th + w->off[LASTG], th + w->off[LASTB],
                          1e-8f, w->Hl + t0 * d, w->stL + t0 * 2);
}

static void part_backward(sas_ws *w, const pass_ctx *c, int p)
{
    const int d = w->d, H = w->H;
    const int64_t w0 = w->pw0[p], w1 = w->pw0[p + 1];
    const int64_t t0 = w->tok[w0], n = w->tok[w1] - t0;
    const int64_t shift = w->off[POS];
    float *g = w->pgrad + p * w->n_dense; /* gradient of theta[off[POS] ..] */
    float *gitem = w->pitem + p * w->cap_slots * d;
    memset(g, 0, (size_t)w->n_dense * sizeof *g);
    memset(gitem, 0, (size_t)(w->n_slots * d) * sizeof *gitem);
    if (w->sampled)
        memset(w->pdEneg + p * (int64_t)w->n_neg * d, 0, (size_t)w->n_neg * (size_t)d * sizeof(float));
    w->ploss[p] = 0.0;
    if (n == 0)
        return;
    const float *th = c->theta, *E = th + w->off[ITEM];
    float *dH = w->G1 + t0 * d, *dX = w->G2 + t0 * d, *dF = w->G3 + t0 * d;
    float *dX1 = w->G4 + t0 * d, *dQn = w->G5 + t0 * d, *dQKV = w->G6 + t0 * 3 * d;
    float *cescr = w->cescr + p * w->cescr_len;
    if (w->sampled)
        w->ploss[p] = rmf_sampled_ce(w->Hl + t0 * d, n, d, E, w->target + t0, w->tslot + t0, w->Eneg,
                                     w->n_neg, w->negmask, w->win_of + t0, c->scale, dH, gitem,
                                     w->pdEneg + p * (int64_t)w->n_neg * d, cescr);
    else
        w->ploss[p] = rmf_softmax_ce(w->Hl + t0 * d, n, d, E, w->n_items, w->target + t0, c->scale,
                                     dH, gitem, cescr);
    rmf_layernorm_backward(SL(w->X, w->B, d) + t0 * d, dH, n, d, th + w->off[LASTG], w->stL + t0 * 2,
                           dX, g + (w->off[LASTG] - shift), g + (w->off[LASTB] - shift));
    float *ascr = w->ascr + p * w->ascr_len;
    for (int b = w->B - 1; b >= 0; b--) {
        const blk k = block_at(th, 0, w->off, d, b), gk = block_at(g, shift, w->off, d, b);
        float *Xb = SL(w->X, b, d) + t0 * d, *Qn = SL(w->Qn, b, d) + t0 * d;
        float *ATT = SL(w->ATT, b, d) + t0 * d, *X1 = SL(w->X1, b, d) + t0 * d;
        float *Fn = SL(w->Fn, b, d) + t0 * d, *HID = SL(w->HID, b, d) + t0 * d;
        /* dX: d loss / d (block output) */
        rmf_ffn f = {k.W1, k.b1, k.W2, k.b2, gk.W1, gk.b1, gk.W2, gk.b2, d, d,
                     c->drop[2 + 3 * b], c->drop[3 + 3 * b]};
        rmf_ffn_backward(&f, Fn, n, (uint64_t)t0, HID, dX, dF, w->fscr + t0 * 2 * d);
        rmf_layernorm_backward(X1, dF, n, d, k.ln2g, SL(w->st2, b, 2) + t0 * 2, dX1, gk.ln2g, gk.ln2b);
        /* X1 = Qn + ATT Wo^T + bo */
        memcpy(dQn, dX1, (size_t)(n * d) * sizeof *dQn);
        float *dATT = dF; /* dF is spent */
        rmf_linear_backward(ATT, d, n, d, k.outW, d, dX1, d, dATT, d, 0, gk.outW, gk.outb);
        float *probs = w->probs + b * w->cap_probs;
        for (int64_t r = w0; r < w1; r++) {
            const int64_t a = w->tok[r], m = w->tok[r + 1] - a;
            rmf_attention_backward(SL(w->QKV, b, 3 * d) + a * 3 * d, (int)m, d, H, &c->drop[1 + 3 * b],
                                   (uint64_t)a, probs + w->poff[r], w->G3 + a * d, w->G6 + a * 3 * d,
                                   ascr);
        }
        /* Q from Qn, K and V from Xb */
        rmf_linear_backward(Qn, d, n, d, k.inW, d, dQKV, 3 * d, dQn, d, 1, gk.inW, gk.inb);
        rmf_linear_backward(Xb, d, n, d, k.inW + (int64_t)d * d, 2 * d, dQKV + d, 3 * d, dX, d, 0,
                            gk.inW + (int64_t)d * d, gk.inb + d);
        rmf_layernorm_backward(Xb, dQn, n, d, k.ln1g, SL(w->st1, b, 2) + t0 * 2, dX1, gk.ln1g, gk.ln1b);
        for (int64_t q = 0; q < n * d; q++)
            dX[q] += dX1[q];
    }
    rmf_drop_apply(&c->drop[0], (uint64_t)t0, dX, n, d, d);
    float *gpos = g + (w->off[POS] - shift);
    for (int64_t t = 0; t < n; t++) {
        const float *dx = dX + t * d;
        float *ge = gitem + (int64_t)w->slot_of_item[w->item_in[t0 + t]] * d;
        float *gp = gpos + (int64_t)w->posi[t0 + t] * d;
        for (int q = 0; q < d; q++) {
            ge[q] += dx[q] * c->emb_scale;
            gp[q] += dx[q];
        }
    }
}

/* ------------------------------------------------------------------ */
/* A batch                                                             */
/* ------------------------------------------------------------------ */

/* Sampled softmax: the batch's negatives (uniform, shared), the slots of
 * the batch's distinct items, the negatives' rows. */
static void sampled_setup(sas_ws *w, const float *E, uint64_t seed, uint64_t epoch, uint64_t batch)
{
    const int d = w->d;
    rmf_rng rng;
    rmf_rng_seed(&rng, seed, rmf_stream_id(RMF_STREAM_UNIFORM_NEG, epoch, batch));
    for (int j = 0; j < w->n_neg; j++)
        w->neg[j] = (int32_t)rmf_rng_below(&rng, (uint32_t)w->n_items);
    int64_t ns = 0;
#define SLOT(item)                                                             \
    do {                                                                       \
        if (w->slot_of_item[item] < 0) {                                       \
            w->slot_of_item[item] = (int32_t)ns;                               \
            w->slot_items[ns++] = (item);                                      \
        }                                                                      \
    } while (0)
    for (int64_t t = 0; t < w->n_tok; t++) {
        SLOT(w->item_in[t]);
        SLOT(w->target[t]);
        w->tslot[t] = w->slot_of_item[w->target[t]];
    }
    for (int j = 0; j < w->n_neg; j++)
        SLOT(w->neg[j]);
#undef SLOT
    w->n_slots = ns;
    for (int j = 0; j < w->n_neg; j++)
        memcpy(w->Eneg + (int64_t)j * d, E + (int64_t)w->neg[j] * d, (size_t)d * sizeof *E);
}

/* The last batch's slots forgotten (sampled): its Adam step is done. */
static void forget_slots(sas_ws *w)
{
    if (!w->sampled)
        return;
    for (int64_t k = 0; k < w->n_slots; k++)
        w->slot_of_item[w->slot_items[k]] = -1;
    w->n_slots = 0;
}

/* Masks of the windows of part p: negative j is masked for window r when it
 * is one of the items of its user's whole sequence. */
static void part_negmask(sas_ws *w, int p)
{
    uint8_t *mark = w->mark + (int64_t)p * w->n_items;
    for (int64_t r = w->pw0[p]; r < w->pw0[p + 1]; r++) {
        const int64_t a = w->own->indptr[w->rows[r]], b = w->own->indptr[w->rows[r] + 1];
        for (int64_t q = a; q < b; q++)
            mark[w->own->items[q]] = 1;
        for (int j = 0; j < w->n_neg; j++)
            w->negmask[r * w->n_neg + j] = mark[w->neg[j]];
        for (int64_t q = a; q < b; q++)
            mark[w->own->items[q]] = 0;
    }
}

static void batch(void *wsp, const void *cfg, const float *theta, const rmf_batch *bt, int nt,
                  rmf_grads *g)
{
    sas_ws *w = wsp;
    const sas_config *c = cfg;
    const int d = w->d;
    forget_slots(w);
    /* the batch's users with a window: 2 items or more */
    int64_t n = 0;
    for (int64_t k = 0; k < bt->n; k++) {
        const int32_t r = bt->rows[k];
        if (bt->seq->indptr[r + 1] - bt->seq->indptr[r] >= 2)
            w->rows[n++] = r;
    }
    lay_out(w, bt->seq, w->rows, n, 1);
    w->own = bt->seq;
    if (w->sampled)
        sampled_setup(w, theta + w->off[ITEM], bt->seed, bt->epoch, bt->index);
    else
        w->n_slots = w->n_items;
    pass_ctx pc;
    memset(&pc, 0, sizeof pc);
    pc.theta = theta;
    pc.emb_scale = c->scale_emb ? sqrtf((float)d) : 1.0f;
    pc.scale = w->n_tok ? 1.0f / (float)w->n_tok : 0.0f;
    for (int k = 0; bt->train && k < 1 + 3 * w->B; k++)
        pc.drop[k] = rmf_drop_site(c->dropout, bt->seed, bt->epoch, bt->index, (uint64_t)k);

    float *gd = g->grad + w->off[POS]; /* the dense blocks, in theta's order */
    int blas = rmf_blas_single_begin();
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 1))
        for (int p = 0; p < PARTS; p++) {
            if (w->sampled)
                part_negmask(w, p);
            part_forward(w, &pc, p);
            part_backward(w, &pc, p);
        }
        /* parts added in part order: dense blocks into the loop's buffer,
         * item rows into part 0's */
        const int64_t nd = w->n_dense, ni = w->n_slots * d, ci = w->cap_slots * d;
        OMP(omp for schedule(static) nowait)
        for (int64_t k = 0; k < nd; k++) {
            float acc = w->pgrad[k];
            for (int p = 1; p < PARTS; p++)
                acc += w->pgrad[p * nd + k];
            gd[k] = acc;
        }
        OMP(omp for schedule(static))
        for (int64_t k = 0; k < ni; k++) {
            float acc = w->pitem[k];
            for (int p = 1; p < PARTS; p++)
                acc += w->pitem[p * ci + k];
            w->pitem[k] = acc;
        }
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas);
    if (w->sampled) {
        const int64_t nn = (int64_t)w->n_neg * d;
        for (int p = 0; p < PARTS; p++)
            for (int j = 0; j < w->n_neg; j++) {
                float *gs = w->pitem + (int64_t)w->slot_of_item[w->neg[j]] * d;
                const float *gn = w->pdEneg + p * nn + (int64_t)j * d;
                for (int q = 0; q < d; q++)
                    gs[q] += gn[q];
            }
    }
    double total = 0.0;
    for (int p = 0; p < PARTS; p++)
        total += w->ploss[p];
    g->loss = w->n_tok ? total / (double)w->n_tok : 0.0;
    g->table[ITEM].ids = w->sampled ? w->slot_items : w->all_items;
    g->table[ITEM].n = w->n_slots;
    g->table[ITEM].rows = w->pitem;
}

/* ------------------------------------------------------------------ */
/* Scoring from a sequence                                             */
/* ------------------------------------------------------------------ */

/* Sequences per forward batch when scoring. */
#define ENCODE_BATCH 256

/* out (n x d): h after the last item of rows[r] of seq (its last max_len
 * items), no dropout; zeros for a row with no item. */
static rmf_status encode(const sas_config *c, const float *theta, const rmf_seq *seq,
                         const int32_t *rows, int64_t n, int nt, float *out, rmf_error *err)
{
    const int d = c->emb_dim;
    const int64_t L = c->max_len;
    int64_t cap_tok = 0, cap_probs = 0;
    for (int64_t b0 = 0; b0 < n; b0 += ENCODE_BATCH) {
        int64_t t = 0, pp = 0;
        for (int64_t r = b0; r < n && r < b0 + ENCODE_BATCH; r++) {
            int64_t m = seq->indptr[rows[r] + 1] - seq->indptr[rows[r]];
            m = m < L ? m : L;
            t += m;
            pp += m * m;
        }
        cap_tok = t > cap_tok ? t : cap_tok;
        cap_probs = pp > cap_probs ? pp : cap_probs;
    }
    sas_ws *w;
    rmf_status st = ws_make(c, 0, ENCODE_BATCH, cap_tok, cap_probs, &w, err);
    if (st != RMF_OK)
        return st;
    pass_ctx pc;
    memset(&pc, 0, sizeof pc);
    pc.theta = theta;
    pc.emb_scale = c->scale_emb ? sqrtf((float)d) : 1.0f;
    int saved = rmf_blas_enter(1);
    /* Ctrl-C between batches of users (runtime/stop.c): the glue drops the output */
    rmf_stop *stop = rmf_stop_here();
    for (int64_t b0 = 0; b0 < n && !rmf_stopping(stop); b0 += ENCODE_BATCH) {
        const int64_t nb = n - b0 < ENCODE_BATCH ? n - b0 : ENCODE_BATCH;
        lay_out(w, seq, rows + b0, nb, 0);
        int blas = rmf_blas_single_begin();
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            OMP(omp for schedule(dynamic, 1))
            for (int p = 0; p < PARTS; p++)
                part_forward(w, &pc, p);
            RMF_TEAM_END;
        }
        rmf_blas_single_end(blas);
        for (int64_t r = 0; r < nb; r++) {
            float *o = out + (b0 + r) * d;
            if (w->tok[r + 1] > w->tok[r])
                memcpy(o, w->Hl + (w->tok[r + 1] - 1) * d, (size_t)d * sizeof *o);
            else
                memset(o, 0, (size_t)d * sizeof *o);
        }
    }
    rmf_blas_leave(saved);
    ws_free(w);
    return RMF_OK;
}

static rmf_status need_history(const rmf_seq *history, rmf_error *err)
{
    if (history == NULL)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "sasrec scores from a history: pass each user's sequence (history=)");
    return RMF_OK;
}

/* out[k] = h(u[k]) . E[i[k]], each distinct row encoded once. */
static rmf_status score(const void *cfg, const float *theta, const int32_t *u, const int32_t *i,
                        int64_t n, const rmf_seq *history, int n_threads, float *out, rmf_error *err)
{
    const sas_config *c = cfg;
    rmf_status st = need_history(history, err);
    if (st != RMF_OK)
        return st;
    const int d = c->emb_dim, nt = rmf_resolve_threads(n_threads);
    rmf_group grp;
    float *H = NULL;
    memset(&grp, 0, sizeof grp);
    if (!rmf_group_alloc(&grp, n, history->n_users)) {
        rmf_group_free(&grp);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory to score %lld pairs", (long long)n);
    }
    rmf_group_build(&grp, u, n);
    H = malloc((size_t)(grp.n_distinct * d) * sizeof *H + 1);
    if (H == NULL)
        st = rmf_fail(err, RMF_ERR_NOMEM, "out of memory to score %lld pairs", (long long)n);
    else
        st = encode(c, theta, history, grp.ids, grp.n_distinct, nt, H, err);
    if (st == RMF_OK) {
        const float *E = theta; /* item_emb is the first block */
        for (int64_t k = 0; k < n; k++)
            out[k] = rmf_dot_lanes(H + (int64_t)grp.slot_of[k] * d, E + (int64_t)i[k] * d, d);
    }
    free(H);
    rmf_group_free(&grp);
    return st;
}

/* Top-k of h(user) . E over blocks of users: one sgemm per block, the
 * core's top-k selection (seen items, allowed items). */
static rmf_status recommend(const void *cfg, const float *theta, const rmf_query *q, int32_t k,
                            int n_threads, int32_t *out_items, float *out_scores, int32_t *out_len,
                            rmf_error *err)
{
    const sas_config *c = cfg;
    rmf_status st = need_history(q->history, err);
    if (st != RMF_OK)
        return st;
    const int d = c->emb_dim, nt = rmf_resolve_threads(n_threads);
    const int32_t n_items = c->base.n_items;
    const int64_t bs = rmf_block_users(n_items);
    float *H = malloc((size_t)(q->n * d) * sizeof *H + 1);
    float *S = malloc((size_t)(bs * n_items) * sizeof *S);
    if (H == NULL || S == NULL) {
        free(H);
        free(S);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory to recommend for %lld users",
                        (long long)q->n);
    }
    st = encode(c, theta, q->history, q->users, q->n, nt, H, err);
    int saved = rmf_blas_enter(nt);
    rmf_stop *stop = rmf_stop_here();
    for (int64_t b0 = 0; st == RMF_OK && b0 < q->n && !rmf_stopping(stop); b0 += bs) {
        const int64_t nb = q->n - b0 < bs ? q->n - b0 : bs;
        rmf_sgemm(0, 1, nb, n_items, d, 1.0f, H + b0 * d, d, theta, d, 0.0f, S, n_items);
        st = rmf_topk_select(S, nb, n_items, q->seen, q->users + b0, q->allowed, k, nt,
                             out_items + b0 * k, out_scores + b0 * k, out_len + b0, err);
    }
    rmf_blas_leave(saved);
    free(H);
    free(S);
    return st;
}

const rmf_model rmf_sasrec = {
    .kind = "sasrec",
    .source = RMF_SOURCE_SEQUENCES,
    .minibatch = 1,
    .takes_history = 1,
    .config_size = sizeof(sas_config),
    .fields = FIELDS,
    .defaults = defaults,
    .check = check,
    .layout = layout,
    .ws_alloc = ws_alloc,
    .ws_free = ws_free,
    .batch = batch,
    .score = score,
    .recommend = recommend,
};
