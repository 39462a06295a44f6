/* layout.c -- a model's parameters as named blocks of one float array
 * (rmf_layout), and the Adam step routed by them: a table block's few
 * touched rows arrive as gradient rows by slot (never scattered into a
 * mostly-zero array), a dense block's gradient at its offset.  Adam is
 * elementwise, so whichever route a block takes, each parameter gets the
 * same update as one dense rmf_adam_step over a materialized gradient. */
#include "train/train.h"

#include "nn/nn.h"
#include "optim/optim.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

void rmf_layout_add(rmf_layout *L, const char *name, int64_t rows, int64_t cols, int role, int init,
                    double init_arg)
{
    if (L->n_blocks >= RMF_MAX_BLOCKS)
        return; /* a model with more blocks fails its layout test */
    rmf_block *b = &L->block[L->n_blocks++];
    b->name = name;
    b->offset = L->n_params;
    b->rows = rows;
    b->cols = cols;
    b->role = role;
    b->init = init;
    b->init_arg = init_arg;
    L->n_params += rows * (cols > 0 ? cols : 1);
}

static int64_t row_len(const rmf_block *b) { return b->cols > 0 ? b->cols : 1; }

rmf_status rmf_slots_alloc(const rmf_layout *L, rmf_slots *s, rmf_error *err)
{
    memset(s, 0, sizeof *s);
    for (int b = 0; b < L->n_blocks; b++) {
        if (L->block[b].role != RMF_BLOCK_TABLE)
            continue;
        s->slot[b] = malloc((size_t)L->block[b].rows * sizeof(int32_t));
        if (s->slot[b] == NULL) {
            rmf_slots_free(s);
            return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for %lld rows of %s",
                            (long long)L->block[b].rows, L->block[b].name);
        }
        memset(s->slot[b], 0xFF, (size_t)L->block[b].rows * sizeof(int32_t)); /* all -1 */
    }
    return RMF_OK;
}

void rmf_slots_free(rmf_slots *s)
{
    for (int b = 0; b < RMF_MAX_BLOCKS; b++)
        free(s->slot[b]);
    memset(s, 0, sizeof *s);
}

void rmf_slots_forget(const rmf_layout *L, rmf_slots *s, const rmf_grads *g)
{
    for (int b = 0; b < L->n_blocks; b++) {
        int32_t *slot = s->slot[b];
        const int32_t *ids = g->table[b].ids;
        if (slot == NULL || ids == NULL)
            continue;
        OMP(omp for schedule(static) nowait)
        for (int64_t r = 0; r < g->table[b].n; r++)
            slot[ids[r]] = -1;
    }
}

void rmf_layout_adam(const rmf_layout *L, const rmf_grads *g, rmf_slots *s, const rmf_train_params *p,
                     rmf_opt_state *st, int nt)
{
    const rmf_adam_params *ap = &p->adam;
    int any_table = 0;
    for (int b = 0; b < L->n_blocks; b++)
        any_table |= L->block[b].role == RMF_BLOCK_TABLE;
    if (any_table && p->lazy_adam) {
        /* Only the rows the batch touched: untouched rows keep their
         * moments and skip weight decay (an approximation, opt-in). */
        for (int b = 0; b < L->n_blocks; b++)
            if (L->block[b].role == RMF_BLOCK_TABLE)
                rmf_lazy_rows_step(ap, st->step, st, g->table[b].rows, 1, L->block[b].offset,
                                   g->table[b].ids, g->table[b].n, (int)row_len(&L->block[b]), nt);
    } else if (any_table) {
        /* Every row, as PyTorch's dense Adam: the team marks where each
         * touched row's gradient is, then each thread steps its share of
         * every table (no barrier between tables). */
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            for (int b = 0; b < L->n_blocks; b++) {
                int32_t *slot = s->slot[b];
                const int32_t *ids = g->table[b].ids;
                if (slot == NULL)
                    continue;
                OMP(omp for schedule(static) nowait)
                for (int64_t r = 0; r < g->table[b].n; r++)
                    slot[ids[r]] = (int32_t)r;
            }
            OMP(omp barrier)
            for (int b = 0; b < L->n_blocks; b++) {
                const rmf_block *k = &L->block[b];
                if (k->role == RMF_BLOCK_TABLE)
                    rmf_adam_table_share(ap, st->step, st->theta + k->offset, st->m + k->offset,
                                         st->v + k->offset, k->rows, (int)row_len(k), s->slot[b],
                                         g->table[b].rows);
            }
            RMF_TEAM_END;
        }
    }
    /* Dense blocks: one step over each run of adjacent ones. */
    for (int b = 0; b < L->n_blocks;) {
        if (L->block[b].role != RMF_BLOCK_DENSE) {
            b++;
            continue;
        }
        const int64_t lo = L->block[b].offset;
        while (b < L->n_blocks && L->block[b].role == RMF_BLOCK_DENSE)
            b++;
        const int64_t hi = b < L->n_blocks ? L->block[b].offset : L->n_params;
        rmf_adam_step(ap, st->step, st->theta + lo, g->grad + lo, st->m + lo, st->v + lo, hi - lo, nt);
    }
}

void rmf_layout_scatter(const rmf_layout *L, const rmf_grads *g, float *grad, int nt)
{
    (void)nt; /* unused without OpenMP */
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        for (int b = 0; b < L->n_blocks; b++) {
            const rmf_block *k = &L->block[b];
            if (k->role == RMF_BLOCK_TABLE && g->table[b].ids != NULL)
                rmf_emb_scatter(g->table[b].ids, g->table[b].n, g->table[b].rows, (int)row_len(k),
                                grad + k->offset);
        }
        RMF_TEAM_END;
    }
}
