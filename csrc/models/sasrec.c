/* models/sasrec.c -- SASRec's forward and backward over a batch of windows
 * (models/sasrec.h), built from the layers of nn/seq.h.
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
#include "models/sasrec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define PARTS 8

/* ------------------------------------------------------------------ */
/* Layout, defaults, checks                                            */
/* ------------------------------------------------------------------ */

/* Offsets inside a block, in floats, for width d. */
typedef struct {
    int64_t ln1g, ln1b, inW, inb, outW, outb, ln2g, ln2b, W1, b1, W2, b2, size;
} blk_off;

static blk_off block_offsets(int64_t d)
{
    blk_off o;
    o.ln1g = 0;
    o.ln1b = d;
    o.inW = 2 * d;
    o.inb = o.inW + 3 * d * d;
    o.outW = o.inb + 3 * d;
    o.outb = o.outW + d * d;
    o.ln2g = o.outb + d;
    o.ln2b = o.ln2g + d;
    o.W1 = o.ln2b + d;
    o.b1 = o.W1 + d * d;
    o.W2 = o.b1 + d;
    o.b2 = o.W2 + d * d;
    o.size = o.b2 + d;
    return o;
}

typedef struct {
    int64_t item, pos, blocks, last, n; /* block b at blocks + b bo.size */
    blk_off bo;
} layout;

static layout layout_of(const rmf_sasrec_shape *s)
{
    layout o;
    const int64_t d = s->emb_dim;
    o.bo = block_offsets(d);
    o.item = 0;
    o.pos = (int64_t)s->n_items * d;
    o.blocks = o.pos + (int64_t)s->max_len * d;
    o.last = o.blocks + (int64_t)s->n_blocks * o.bo.size;
    o.n = o.last + 2 * d;
    return o;
}

int64_t rmf_sasrec_n_params(const rmf_sasrec_shape *s) { return layout_of(s).n; }

void rmf_sasrec_default_params(rmf_sasrec_params *p)
{
    p->dropout = 0.2f;
    p->batch_size = 128;
    p->loss = RMF_SASREC_SOFTMAX;
    p->n_negatives = 256;
    p->scale_emb = 0;
    p->seed = 0;
    p->n_threads = 0;
    rmf_adam_default_params(&p->adam);
    p->adam.lr = 2e-3f;
    p->adam.beta2 = 0.98f;
    p->adam.weight_decay = 0.0f;
}

rmf_status rmf_sasrec_check_shape(const rmf_sasrec_shape *s, rmf_error *err)
{
    if (s == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "shape must not be NULL");
    if (s->n_items < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_items must be >= 1, got %d", s->n_items);
    if (s->emb_dim < 1 || s->emb_dim > RMF_SEQ_MAX_DIM)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim must be in [1, %d], got %d",
                        RMF_SEQ_MAX_DIM, s->emb_dim);
    if (s->n_heads < 1 || s->emb_dim % s->n_heads != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n_heads must be >= 1 and divide emb_dim %d, got %d",
                        s->emb_dim, s->n_heads);
    if (s->n_blocks < 0 || s->n_blocks > RMF_SASREC_MAX_BLOCKS)
        return rmf_fail(err, RMF_ERR_VALUE, "n_blocks must be in [0, %d], got %d",
                        RMF_SASREC_MAX_BLOCKS, s->n_blocks);
    if (s->max_len < 1 || s->max_len > 65536)
        return rmf_fail(err, RMF_ERR_VALUE, "max_len must be in [1, 65536], got %d", s->max_len);
    return RMF_OK;
}

rmf_status rmf_sasrec_check_params(const rmf_sasrec_params *p, rmf_error *err)
{
    if (!(p->dropout >= 0.0f && p->dropout < 1.0f))
        return rmf_fail(err, RMF_ERR_VALUE, "dropout must be in [0, 1), got %g", (double)p->dropout);
    if (p->batch_size < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "batch_size must be >= 1, got %d", p->batch_size);
    if (p->loss != RMF_SASREC_SOFTMAX && p->loss != RMF_SASREC_SAMPLED)
        return rmf_fail(err, RMF_ERR_VALUE, "loss must be softmax (0) or sampled (1), got %d",
                        p->loss);
    if (p->loss == RMF_SASREC_SAMPLED && p->n_negatives < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_negatives must be >= 1, got %d", p->n_negatives);
    const char *bad = rmf_adam_check_params(&p->adam);
    if (bad != NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s", bad);
    return RMF_OK;
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
    /* tokens */
    int32_t *item_in, *target, *tslot, *posi, *win_of;
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
    const rmf_seq *own;   /* the sequences rows index: sampled masks */
    const int32_t *rows;
} sas_ws;

static void ws_free(sas_ws *w)
{
    void *ptrs[] = {w->item_in, w->target, w->tslot, w->posi, w->win_of, w->tok, w->poff,
                    w->X, w->Qn, w->st1, w->QKV, w->ATT, w->X1, w->Fn, w->st2, w->HID,
                    w->probs, w->Hl, w->stL, w->G1, w->G2, w->G3, w->G4, w->G5, w->G6,
                    w->fscr, w->pgrad, w->pitem, w->ascr, w->cescr, w->pdEneg, w->neg,
                    w->slot_of_item, w->slot_items, w->Eneg, w->negmask, w->mark};
    for (size_t k = 0; k < sizeof ptrs / sizeof *ptrs; k++)
        free(ptrs[k]);
    memset(w, 0, sizeof *w);
}

#define ALLOC(ptr, count)                                                      \
    do {                                                                       \
        (ptr) = malloc((size_t)(count) * sizeof *(ptr) + 64);                  \
        if ((ptr) == NULL)                                                     \
            goto nomem;                                                        \
    } while (0)

/* Room for batches of up to cap_win windows, cap_tok tokens and cap_probs
 * attention entries (sum of n^2 over a batch's windows). */
static rmf_status ws_alloc(sas_ws *w, const rmf_sasrec_shape *s, const rmf_sasrec_params *p,
                           int train, int64_t cap_win, int64_t cap_tok, int64_t cap_probs,
                           rmf_error *err)
{
    memset(w, 0, sizeof *w);
    const int64_t d = s->emb_dim, B = s->n_blocks, L = s->max_len;
    w->d = s->emb_dim;
    w->H = s->n_heads;
    w->B = s->n_blocks;
    w->L = s->max_len;
    w->train = train;
    w->n_items = s->n_items;
    w->sampled = train && p->loss == RMF_SASREC_SAMPLED;
    w->n_neg = w->sampled ? p->n_negatives : 0;
    w->cap_tok = cap_tok > 0 ? cap_tok : 1;
    w->cap_win = cap_win > 0 ? cap_win : 1;
    w->cap_probs = (cap_probs > 0 ? cap_probs : 1) * s->n_heads;
    const int64_t T = w->cap_tok;
    ALLOC(w->item_in, T);
    ALLOC(w->target, T);
    ALLOC(w->tslot, T);
    ALLOC(w->posi, T);
    ALLOC(w->win_of, T);
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
    if (!train)
        return RMF_OK;
    ALLOC(w->G1, T * d);
    ALLOC(w->G2, T * d);
    ALLOC(w->G3, T * d);
    ALLOC(w->G4, T * d);
    ALLOC(w->G5, T * d);
    ALLOC(w->G6, T * 3 * d);
    ALLOC(w->fscr, T * 2 * d);
    layout o = layout_of(s);
    w->n_dense = o.n - o.pos;
    ALLOC(w->pgrad, PARTS * w->n_dense);
    if (w->sampled) {
        /* slots: the batch's distinct inputs, targets and negatives */
        w->cap_slots = 2 * T + w->n_neg;
        if (w->cap_slots > s->n_items)
            w->cap_slots = s->n_items;
        w->cescr_len = rmf_sampled_ce_scratch(w->n_neg);
        ALLOC(w->neg, w->n_neg);
        ALLOC(w->Eneg, (int64_t)w->n_neg * d);
        ALLOC(w->pdEneg, PARTS * (int64_t)w->n_neg * d);
        ALLOC(w->negmask, w->cap_win * w->n_neg);
        ALLOC(w->mark, (int64_t)PARTS * s->n_items);
        memset(w->mark, 0, (size_t)PARTS * (size_t)s->n_items);
        ALLOC(w->slot_items, w->cap_slots);
    } else {
        w->cap_slots = s->n_items;
        w->cescr_len = rmf_softmax_ce_scratch(s->n_items);
    }
    ALLOC(w->slot_of_item, s->n_items);
    for (int32_t i = 0; i < s->n_items; i++)
        w->slot_of_item[i] = w->sampled ? -1 : i;
    ALLOC(w->pitem, PARTS * w->cap_slots * d);
    ALLOC(w->cescr, PARTS * w->cescr_len);
    return RMF_OK;
nomem:
    ws_free(w);
    return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for SASRec batches of %lld tokens",
                    (long long)cap_tok);
}

/* ------------------------------------------------------------------ */
/* Batch layout                                                        */
/* ------------------------------------------------------------------ */

/* Lays out windows rows[0..n) of win (window r: items win->items[indptr[r]
 * ..], the last L + 1 of them) as tokens, and cuts them into PARTS by
 * tokens.  Windows are the caller's checked rows with >= 2 items. */
static void lay_out(sas_ws *w, const rmf_seq *win, const int32_t *rows, int64_t n, int for_train)
{
    int64_t t = 0, pp = 0;
    w->tok[0] = 0;
    w->poff[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        const int64_t a = win->indptr[rows[r]], b = win->indptr[rows[r] + 1];
        /* training: inputs are all but the last item; encoding: every item */
        int64_t m = for_train ? b - a - 1 : b - a;
        if (m > w->L)
            m = w->L;
        const int64_t first = for_train ? b - 1 - m : b - m;
        for (int64_t k = 0; k < m; k++) {
            w->item_in[t + k] = win->items[first + k];
            w->target[t + k] = for_train ? win->items[first + k + 1] : 0;
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
    layout o;
    float emb_scale, scale; /* input scale; loss scale 1 / batch tokens */
    rmf_drop drop[1 + 3 * RMF_SASREC_MAX_BLOCKS];
} pass_ctx;

#define SL(arr, b, width) ((arr) + ((int64_t)(b) * w->cap_tok) * (width))

static void part_forward(sas_ws *w, const pass_ctx *c, int p)
{
    const int d = w->d, H = w->H;
    const int64_t w0 = w->pw0[p], w1 = w->pw0[p + 1];
    const int64_t t0 = w->tok[w0], n = w->tok[w1] - t0;
    if (n == 0)
        return;
    const float *th = c->theta, *E = th + c->o.item, *P = th + c->o.pos;
    float *x0 = w->X + t0 * d;
    for (int64_t t = t0; t < t0 + n; t++) {
        const float *e = E + (int64_t)w->item_in[t] * d, *q = P + (int64_t)w->posi[t] * d;
        float *x = w->X + t * d;
        for (int k = 0; k < d; k++)
            x[k] = e[k] * c->emb_scale + q[k];
    }
    rmf_drop_apply(&c->drop[0], (uint64_t)t0, x0, n, d, d);
    float *ascr = w->ascr + p * w->ascr_len;
    for (int b = 0; b < w->B; b++) {
        const float *bw = th + c->o.blocks + b * c->o.bo.size;
        const blk_off *bo = &c->o.bo;
        float *Xb = SL(w->X, b, d) + t0 * d, *Qn = SL(w->Qn, b, d) + t0 * d;
        float *QKV = SL(w->QKV, b, 3 * d) + t0 * 3 * d, *ATT = SL(w->ATT, b, d) + t0 * d;
        float *X1 = SL(w->X1, b, d) + t0 * d, *Fn = SL(w->Fn, b, d) + t0 * d;
        float *HID = SL(w->HID, b, d) + t0 * d, *Xn = SL(w->X, b + 1, d) + t0 * d;
        rmf_layernorm_forward(Xb, n, d, bw + bo->ln1g, bw + bo->ln1b, 1e-5f, Qn,
                              SL(w->st1, b, 2) + t0 * 2);
        rmf_linear_forward(Qn, d, n, d, bw + bo->inW, bw + bo->inb, d, QKV, 3 * d);
        rmf_linear_forward(Xb, d, n, d, bw + bo->inW + (int64_t)d * d, bw + bo->inb + d, 2 * d,
                           QKV + d, 3 * d);
        float *probs = w->probs + b * w->cap_probs;
        for (int64_t r = w0; r < w1; r++) {
            const int64_t a = w->tok[r], m = w->tok[r + 1] - a;
            rmf_attention_forward(SL(w->QKV, b, 3 * d) + a * 3 * d, (int)m, d, H,
                                  &c->drop[1 + 3 * b], (uint64_t)a, probs + w->poff[r],
                                  SL(w->ATT, b, d) + a * d, ascr);
        }
        rmf_linear_forward(ATT, d, n, d, bw + bo->outW, bw + bo->outb, d, X1, d);
        for (int64_t k = 0; k < n * d; k++)
            X1[k] += Qn[k];
        rmf_layernorm_forward(X1, n, d, bw + bo->ln2g, bw + bo->ln2b, 1e-5f, Fn,
                              SL(w->st2, b, 2) + t0 * 2);
        rmf_ffn f = {bw + bo->W1, bw + bo->b1, bw + bo->W2, bw + bo->b2, NULL, NULL, NULL, NULL,
                     d, d, c->drop[2 + 3 * b], c->drop[3 + 3 * b]};
        rmf_ffn_forward(&f, Fn, n, (uint64_t)t0, HID, Xn);
    }
    rmf_layernorm_forward(SL(w->X, w->B, d) + t0 * d, n, d, th + c->o.last,
                          th + c->o.last + d, 1e-8f, w->Hl + t0 * d, w->stL + t0 * 2);
}

static void part_backward(sas_ws *w, const pass_ctx *c, int p)
{
    const int d = w->d, H = w->H;
    const int64_t w0 = w->pw0[p], w1 = w->pw0[p + 1];
    const int64_t t0 = w->tok[w0], n = w->tok[w1] - t0;
    float *g = w->pgrad + p * w->n_dense; /* gradient of theta[o.pos ..] */
    float *gitem = w->pitem + p * w->cap_slots * d;
    memset(g, 0, (size_t)w->n_dense * sizeof *g);
    memset(gitem, 0, (size_t)(w->n_slots * d) * sizeof *gitem);
    if (w->sampled)
        memset(w->pdEneg + p * (int64_t)w->n_neg * d, 0,
               (size_t)w->n_neg * (size_t)d * sizeof(float));
    w->ploss[p] = 0.0;
    if (n == 0)
        return;
    const float *th = c->theta, *E = th + c->o.item;
    const layout *o = &c->o;
    float *dH = w->G1 + t0 * d, *dX = w->G2 + t0 * d, *dF = w->G3 + t0 * d;
    float *dX1 = w->G4 + t0 * d, *dQn = w->G5 + t0 * d, *dQKV = w->G6 + t0 * 3 * d;
    float *cescr = w->cescr + p * w->cescr_len;
    if (w->sampled)
        w->ploss[p] = rmf_sampled_ce(w->Hl + t0 * d, n, d, E, w->target + t0, w->tslot + t0,
                                     w->Eneg, w->n_neg, w->negmask, w->win_of + t0, c->scale,
                                     dH, gitem, w->pdEneg + p * (int64_t)w->n_neg * d, cescr);
    else
        w->ploss[p] = rmf_softmax_ce(w->Hl + t0 * d, n, d, E, w->n_items, w->target + t0,
                                     c->scale, dH, gitem, cescr);
    rmf_layernorm_backward(SL(w->X, w->B, d) + t0 * d, dH, n, d, th + o->last, w->stL + t0 * 2,
                           dX, g + (o->last - o->pos), g + (o->last - o->pos) + d);
    float *ascr = w->ascr + p * w->ascr_len;
    for (int b = w->B - 1; b >= 0; b--) {
        const blk_off *bo = &o->bo;
        const float *bw = th + o->blocks + b * bo->size;
        float *gb = g + (o->blocks - o->pos) + b * bo->size;
        float *Xb = SL(w->X, b, d) + t0 * d, *Qn = SL(w->Qn, b, d) + t0 * d;
        float *QKV = SL(w->QKV, b, 3 * d) + t0 * 3 * d, *ATT = SL(w->ATT, b, d) + t0 * d;
        float *X1 = SL(w->X1, b, d) + t0 * d, *Fn = SL(w->Fn, b, d) + t0 * d;
        float *HID = SL(w->HID, b, d) + t0 * d;
        /* dX: d loss / d (block output) */
        rmf_ffn f = {bw + bo->W1, bw + bo->b1, bw + bo->W2, bw + bo->b2, gb + bo->W1,
                     gb + bo->b1, gb + bo->W2, gb + bo->b2, d, d,
                     c->drop[2 + 3 * b], c->drop[3 + 3 * b]};
        rmf_ffn_backward(&f, Fn, n, (uint64_t)t0, HID, dX, dF, w->fscr + t0 * 2 * d);
        rmf_layernorm_backward(X1, dF, n, d, bw + bo->ln2g, SL(w->st2, b, 2) + t0 * 2, dX1,
                               gb + bo->ln2g, gb + bo->ln2b);
        /* X1 = Qn + ATT Wo^T + bo */
        memcpy(dQn, dX1, (size_t)(n * d) * sizeof *dQn);
        float *dATT = dF; /* dF is spent */
        rmf_linear_backward(ATT, d, n, d, bw + bo->outW, d, dX1, d, dATT, d, 0, gb + bo->outW,
                            gb + bo->outb);
        float *probs = w->probs + b * w->cap_probs;
        for (int64_t r = w0; r < w1; r++) {
            const int64_t a = w->tok[r], m = w->tok[r + 1] - a;
            rmf_attention_backward(SL(w->QKV, b, 3 * d) + a * 3 * d, (int)m, d, H,
                                   &c->drop[1 + 3 * b], (uint64_t)a, probs + w->poff[r],
                                   w->G3 + a * d, w->G6 + a * 3 * d, ascr);
        }
        /* Q from Qn, K and V from Xb */
        rmf_linear_backward(Qn, d, n, d, bw + bo->inW, d, dQKV, 3 * d, dQn, d, 1, gb + bo->inW,
                            gb + bo->inb);
        rmf_linear_backward(Xb, d, n, d, bw + bo->inW + (int64_t)d * d, 2 * d, dQKV + d, 3 * d,
                            dX, d, 0, gb + bo->inW + (int64_t)d * d, gb + bo->inb + d);
        rmf_layernorm_backward(Xb, dQn, n, d, bw + bo->ln1g, SL(w->st1, b, 2) + t0 * 2, dX1,
                               gb + bo->ln1g, gb + bo->ln1b);
        for (int64_t k = 0; k < n * d; k++)
            dX[k] += dX1[k];
        (void)QKV;
    }
    rmf_drop_apply(&c->drop[0], (uint64_t)t0, dX, n, d, d);
    float *gpos = g; /* pos is the first dense block */
    for (int64_t t = 0; t < n; t++) {
        const float *dx = dX + t * d;
        float *ge = gitem + (int64_t)w->slot_of_item[w->item_in[t0 + t]] * d;
        float *gp = gpos + (int64_t)w->posi[t0 + t] * d;
        for (int k = 0; k < d; k++) {
            ge[k] += dx[k] * c->emb_scale;
            gp[k] += dx[k];
        }
    }
}

/* ------------------------------------------------------------------ */
/* A batch                                                             */
/* ------------------------------------------------------------------ */

/* Sampled softmax: the batch's negatives (uniform, shared), each window's
 * masks, the slots of the batch's distinct items. */
static void sampled_setup(sas_ws *w, const float *E, uint64_t seed, uint64_t epoch,
                          uint64_t batch)
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

/* Masks of the windows of part p: negative j is masked for window r when it
 * is one of the items of row rows[r] of own. */
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

/* Forward and backward of the laid-out batch; the gradient ends up in part
 * 0's buffers (dense block, then item rows by slot) and the mean loss in
 * *loss.  Call inside rmf_blas_enter. */
static void batch_grad(sas_ws *w, const pass_ctx *c, int nt, double *loss)
{
    const int d = w->d;
    int blas = rmf_blas_single_begin();
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 1))
        for (int p = 0; p < PARTS; p++) {
            if (w->sampled)
                part_negmask(w, p);
            part_forward(w, c, p);
            part_backward(w, c, p);
        }
        /* parts summed into part 0's buffers, in part order */
        const int64_t nd = w->n_dense, ni = w->n_slots * d, ci = w->cap_slots * d;
        OMP(omp for schedule(static) nowait)
        for (int64_t k = 0; k < nd; k++) {
            float acc = w->pgrad[k];
            for (int p = 1; p < PARTS; p++)
                acc += w->pgrad[p * nd + k];
            w->pgrad[k] = acc;
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
                for (int k = 0; k < d; k++)
                    gs[k] += gn[k];
            }
    }
    double total = 0.0;
    for (int p = 0; p < PARTS; p++)
        total += w->ploss[p];
    *loss = w->n_tok ? total / (double)w->n_tok : 0.0;
}

static void ctx_init(pass_ctx *c, const sas_ws *w, const rmf_sasrec_shape *s,
                     const rmf_sasrec_params *p, const float *theta, uint64_t epoch,
                     uint64_t batch)
{
    memset(c, 0, sizeof *c);
    c->theta = theta;
    c->o = layout_of(s);
    c->emb_scale = p && p->scale_emb ? sqrtf((float)s->emb_dim) : 1.0f;
    c->scale = w->n_tok ? 1.0f / (float)w->n_tok : 0.0f;
    if (p == NULL)
        return; /* inference: no dropout */
    for (int k = 0; k < 1 + 3 * s->n_blocks; k++)
        c->drop[k] = rmf_drop_site(p->dropout, p->seed, epoch, batch, (uint64_t)k);
}

/* After a batch: the slots of its items are forgotten (sampled). */
static void forget_slots(sas_ws *w)
{
    if (!w->sampled)
        return;
    for (int64_t k = 0; k < w->n_slots; k++)
        w->slot_of_item[w->slot_items[k]] = -1;
}

/* Capacity for batches of windows rows[0..n) taken bs at a time. */
static void batch_caps(const rmf_seq *win, const int32_t *rows, const int64_t *perm, int64_t n,
                       int64_t bs, int L, int for_train, int64_t *cap_tok, int64_t *cap_probs)
{
    *cap_tok = *cap_probs = 0;
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        int64_t t = 0, pp = 0;
        for (int64_t k = b0; k < n && k < b0 + bs; k++) {
            const int32_t r = rows[perm ? perm[k] : k];
            int64_t m = win->indptr[r + 1] - win->indptr[r] - (for_train ? 1 : 0);
            m = m < L ? m : L;
            m = m > 0 ? m : 0;
            t += m;
            pp += m * m;
        }
        *cap_tok = t > *cap_tok ? t : *cap_tok;
        *cap_probs = pp > *cap_probs ? pp : *cap_probs;
    }
}

static rmf_status check_seqs(const rmf_sasrec_shape *s, const rmf_seq *q, const int32_t *rows,
                             int64_t n, rmf_error *err)
{
    if (q == NULL || (n > 0 && rows == NULL))
        return rmf_fail(err, RMF_ERR_VALUE, "sequences and rows must not be NULL");
    if (q->n_items != s->n_items)
        return rmf_fail(err, RMF_ERR_VALUE, "sequences have %d items, the model %d", q->n_items,
                        s->n_items);
    rmf_status st = rmf_check_seq(q, err);
    if (st != RMF_OK)
        return st;
    return n > 0 ? rmf_check_ids(rows, n, q->n_users, "rows", err) : RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */

rmf_status rmf_sasrec_batch_grad(const rmf_sasrec_params *p, const rmf_sasrec_shape *s,
                                 const float *theta, const rmf_seq *win,
                                 const int32_t *rows, int64_t n, uint64_t epoch,
                                 uint64_t batch, float *grad, double *loss,
                                 rmf_error *err)
{
    rmf_status st;
    if ((st = rmf_sasrec_check_shape(s, err)) != RMF_OK ||
        (st = rmf_sasrec_check_params(p, err)) != RMF_OK ||
        (st = check_seqs(s, win, rows, n, err)) != RMF_OK)
        return st;
    if (theta == NULL || grad == NULL || loss == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta, grad and loss must not be NULL");
    for (int64_t r = 0; r < n; r++) {
        const int64_t len = win->indptr[rows[r] + 1] - win->indptr[rows[r]];
        if (len < 2 || len > (int64_t)s->max_len + 1)
            return rmf_fail(err, RMF_ERR_VALUE, "window %lld has %lld items: need 2 .. max_len + 1",
                            (long long)r, (long long)len);
    }
    int64_t cap_tok, cap_probs;
    batch_caps(win, rows, NULL, n, n > 0 ? n : 1, s->max_len, 1, &cap_tok, &cap_probs);
    sas_ws w;
    if ((st = ws_alloc(&w, s, p, 1, n, cap_tok, cap_probs, err)) != RMF_OK)
        return st;
    const int nt = rmf_resolve_threads(p->n_threads);
    lay_out(&w, win, rows, n, 1);
    w.own = win;
    w.rows = rows;
    const layout o = layout_of(s);
    int saved = rmf_blas_enter(1);
    if (w.sampled)
        sampled_setup(&w, theta + o.item, p->seed, epoch, batch);
    else
        w.n_slots = s->n_items;
    pass_ctx c;
    ctx_init(&c, &w, s, p, theta, epoch, batch);
    batch_grad(&w, &c, nt, loss);
    rmf_blas_leave(saved);
    const int d = s->emb_dim;
    memcpy(grad + o.pos, w.pgrad, (size_t)w.n_dense * sizeof *grad);
    for (int32_t i = 0; i < s->n_items; i++) {
        const int32_t sl = w.slot_of_item[i];
        if (sl >= 0)
            memcpy(grad + o.item + (int64_t)i * d, w.pitem + (int64_t)sl * d,
                   (size_t)d * sizeof *grad);
        else
            memset(grad + o.item + (int64_t)i * d, 0, (size_t)d * sizeof *grad);
    }
    ws_free(&w);
    return RMF_OK;
}

rmf_status rmf_sasrec_train_epoch(const rmf_sasrec_params *p, const rmf_sasrec_shape *s,
                                  const rmf_seq *seqs, uint64_t epoch, rmf_opt_state *st,
                                  rmf_stop_fn stop, void *stop_ctx, double *loss,
                                  int64_t *n_done, rmf_error *err)
{
    rmf_status status;
    *loss = 0.0;
    *n_done = 0;
    if ((status = rmf_sasrec_check_shape(s, err)) != RMF_OK ||
        (status = rmf_sasrec_check_params(p, err)) != RMF_OK ||
        (status = check_seqs(s, seqs, NULL, 0, err)) != RMF_OK)
        return status;
    const layout o = layout_of(s);
    if ((status = rmf_check_opt_state(st, o.n, err)) != RMF_OK)
        return status;
    const int d = s->emb_dim, nt = rmf_resolve_threads(p->n_threads);
    int32_t *rows = NULL;
    int64_t *perm = NULL, n_win = 0;
    int32_t *brows = NULL;
    sas_ws w;
    memset(&w, 0, sizeof w);
    rmf_pacer pace;
    rmf_pacer_init(&pace, nt);
    int saved = -1;
    double total = 0.0;
    int64_t done = 0;

    rows = malloc(((size_t)seqs->n_users + 1) * sizeof *rows);
    perm = malloc(((size_t)seqs->n_users + 1) * sizeof *perm);
    brows = malloc(((size_t)p->batch_size + 1) * sizeof *brows);
    if (!rows || !perm || !brows) {
        status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a SASRec epoch");
        goto cleanup;
    }
    for (int32_t u = 0; u < seqs->n_users; u++)
        if (seqs->indptr[u + 1] - seqs->indptr[u] >= 2)
            rows[n_win++] = u;
    if (n_win == 0) {
        status = rmf_fail(err, RMF_ERR_VALUE, "no user has 2 or more items to train on");
        goto cleanup;
    }
    rmf_epoch_order(perm, n_win, p->seed, epoch, nt);
    const int64_t bs = p->batch_size;
    int64_t cap_tok, cap_probs;
    batch_caps(seqs, rows, perm, n_win, bs, s->max_len, 1, &cap_tok, &cap_probs);
    if ((status = ws_alloc(&w, s, p, 1, bs, cap_tok, cap_probs, err)) != RMF_OK)
        goto cleanup;
    w.own = seqs;
    w.rows = brows;
    saved = rmf_blas_enter(1);
    const int64_t n_batches = (n_win + bs - 1) / bs;
    for (int64_t b = 0; b < n_batches; b++) {
        if ((status = rmf_epoch_should_stop(stop, stop_ctx, b, n_batches, err)) != RMF_OK)
            goto cleanup;
        const int64_t nb = b * bs + bs <= n_win ? bs : n_win - b * bs;
        for (int64_t k = 0; k < nb; k++)
            brows[k] = rows[perm[b * bs + k]];
        rmf_pacer_begin(&pace);
        lay_out(&w, seqs, brows, nb, 1);
        if (w.sampled)
            sampled_setup(&w, st->theta + o.item, p->seed, epoch, (uint64_t)b);
        else
            w.n_slots = s->n_items;
        pass_ctx c;
        ctx_init(&c, &w, s, p, st->theta, epoch, (uint64_t)b);
        double bl;
        batch_grad(&w, &c, nt, &bl);
        st->step++;
        rmf_adam_step(&p->adam, st->step, st->theta + o.pos, w.pgrad, st->m + o.pos,
                      st->v + o.pos, w.n_dense, nt);
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            rmf_adam_table_share(&p->adam, st->step, st->theta + o.item, st->m + o.item,
                                 st->v + o.item, s->n_items, d, w.slot_of_item, w.pitem);
            RMF_TEAM_END;
        }
        forget_slots(&w);
        rmf_pacer_end(&pace, (double)w.n_tok);
        total += bl * (double)w.n_tok;
        done += w.n_tok;
    }
    status = RMF_OK;
cleanup:
    st->team_threads = rmf_pacer_mean_team(&pace);
    rmf_pacer_finish(&pace);
    if (saved >= 0)
        rmf_blas_leave(saved);
    *loss = done ? total / (double)done : 0.0;
    *n_done = done;
    ws_free(&w);
    free(rows);
    free(perm);
    free(brows);
    return status;
}

/* Forward of sequences rows[0..n) in batches; all_tokens: every token's h
 * (sequences in order), else each sequence's last. */
static rmf_status encode(const rmf_sasrec_shape *s, const float *theta, const rmf_seq *seqs,
                         const int32_t *rows, int64_t n, int n_threads, int all_tokens,
                         float *out, rmf_error *err)
{
    rmf_status st;
    if ((st = rmf_sasrec_check_shape(s, err)) != RMF_OK ||
        (st = check_seqs(s, seqs, rows, n, err)) != RMF_OK)
        return st;
    if (theta == NULL || (n > 0 && out == NULL))
        return rmf_fail(err, RMF_ERR_VALUE, "theta and out must not be NULL");
    const int d = s->emb_dim, nt = rmf_resolve_threads(n_threads);
    const int64_t bs = 256;
    int64_t cap_tok, cap_probs;
    batch_caps(seqs, rows, NULL, n, bs, s->max_len, 0, &cap_tok, &cap_probs);
    sas_ws w;
    if ((st = ws_alloc(&w, s, NULL, 0, bs, cap_tok, cap_probs, err)) != RMF_OK)
        return st;
    int saved = rmf_blas_enter(1);
    int64_t out_row = 0;
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        const int64_t nb = n - b0 < bs ? n - b0 : bs;
        lay_out(&w, seqs, rows + b0, nb, 0);
        pass_ctx c;
        ctx_init(&c, &w, s, NULL, theta, 0, 0);
        int blas = rmf_blas_single_begin();
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            OMP(omp for schedule(dynamic, 1))
            for (int p = 0; p < PARTS; p++)
                part_forward(&w, &c, p);
            RMF_TEAM_END;
        }
        rmf_blas_single_end(blas);
        if (all_tokens) {
            memcpy(out + out_row * d, w.Hl, (size_t)(w.n_tok * d) * sizeof *out);
            out_row += w.n_tok;
            continue;
        }
        for (int64_t r = 0; r < nb; r++) {
            float *o = out + (b0 + r) * d;
            if (w.tok[r + 1] > w.tok[r])
                memcpy(o, w.Hl + (w.tok[r + 1] - 1) * d, (size_t)d * sizeof *o);
            else
                memset(o, 0, (size_t)d * sizeof *o);
        }
    }
    rmf_blas_leave(saved);
    ws_free(&w);
    return RMF_OK;
}

rmf_status rmf_sasrec_encode(const rmf_sasrec_shape *s, const float *theta,
                             const rmf_seq *seqs, const int32_t *rows, int64_t n,
                             int n_threads, float *out, rmf_error *err)
{
    return encode(s, theta, seqs, rows, n, n_threads, 0, out, err);
}

rmf_status rmf_sasrec_encode_all(const rmf_sasrec_shape *s, const float *theta,
                                 const rmf_seq *seqs, const int32_t *rows, int64_t n,
                                 int n_threads, float *out, rmf_error *err)
{
    return encode(s, theta, seqs, rows, n, n_threads, 1, out, err);
}
