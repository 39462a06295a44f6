/* embedding.c -- embedding tables as a batch uses them: the distinct rows
 * of one side of the batch (rmf_group), their rows gathered once per
 * distinct row, and the backward pass that sums a gradient per distinct row
 * (in entry order, one thread per row) before it reaches the table.  See
 * nn.h for the contracts and the threading rule. */
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Distinct rows of one side of a batch                               */
/* ------------------------------------------------------------------ */

void rmf_group_free(rmf_group *g)
{
    free(g->ids);
    free(g->slot_of);
    free(g->ptr);
    free(g->list);
    free(g->table);
    memset(g, 0, sizeof *g);
}

int rmf_group_alloc(rmf_group *g, int64_t cap_entries, int32_t n_keys)
{
    /* A side never holds more distinct rows than entries or keys. */
    int64_t cd = cap_entries < n_keys ? cap_entries : n_keys;
    g->n_distinct = 0;
    g->ids = malloc((size_t)cd * sizeof *g->ids);
    g->slot_of = malloc((size_t)cap_entries * sizeof *g->slot_of);
    g->ptr = malloc((size_t)(cd + 1) * sizeof *g->ptr);
    g->list = malloc((size_t)cap_entries * sizeof *g->list);
    g->table = malloc((size_t)n_keys * sizeof *g->table);
    if (!g->ids || !g->slot_of || !g->ptr || !g->list || !g->table)
        return 0;
    for (int32_t k = 0; k < n_keys; k++)
        g->table[k] = -1;
    return 1;
}

/* Sequential and O(n): a batch is small and the first-appearance order
 * must not depend on threads.  The table is reset only at the keys used,
 * so a build costs O(n), not O(n_keys). */
void rmf_group_build(rmf_group *g, const int32_t *keys, int64_t n)
{
    int32_t *table = g->table;
    int64_t nd = 0;
    for (int64_t e = 0; e < n; e++) {
        int32_t s = table[keys[e]];
        if (s < 0) {
            s = (int32_t)nd;
            table[keys[e]] = s;
            g->ids[nd++] = keys[e];
        }
        g->slot_of[e] = s;
    }
    /* Counting sort of entries by slot; entries stay ascending per slot. */
    memset(g->ptr, 0, (size_t)(nd + 1) * sizeof *g->ptr);
    for (int64_t e = 0; e < n; e++)
        g->ptr[g->slot_of[e] + 1]++;
    for (int64_t s = 0; s < nd; s++)
        g->ptr[s + 1] += g->ptr[s];
    for (int64_t e = 0; e < n; e++)
        g->list[g->ptr[g->slot_of[e]]++] = e;
    for (int64_t s = nd; s > 0; s--)
        g->ptr[s] = g->ptr[s - 1];
    g->ptr[0] = 0;
    for (int64_t s = 0; s < nd; s++)
        table[g->ids[s]] = -1;
    g->n_distinct = nd;
}

/* ------------------------------------------------------------------ */
/* Gather, sum by distinct row, scatter                               */
/* ------------------------------------------------------------------ */

void rmf_emb_gather(const rmf_group *g, const float *table, int D, int64_t r0,
                    int64_t r1, float *E)
{
    const int32_t *ids = g->ids;
    for (int64_t r = r0; r < r1; r++) {
        if (r + RMF_PREFETCH_AHEAD < r1)
            rmf_prefetch_row(table + (int64_t)ids[r + RMF_PREFETCH_AHEAD] * D, (size_t)D * sizeof(float));
        memcpy(E + r * D, table + (int64_t)ids[r] * D, (size_t)D * sizeof(float));
    }
}

void rmf_emb_sum_rows(const rmf_group *g, const float *x, int H, float *G)
{
    OMP(omp for schedule(dynamic, 64) nowait)
    for (int64_t s = 0; s < g->n_distinct; s++) {
        float *gs = G + s * H;
        const float *first = x + g->list[g->ptr[s]] * H;
        memcpy(gs, first, (size_t)H * sizeof(float));
        for (int64_t q = g->ptr[s] + 1; q < g->ptr[s + 1]; q++) {
            const float *row = x + g->list[q] * H;
            for (int h = 0; h < H; h++)
                gs[h] += row[h];
        }
    }
}

void rmf_emb_scatter(const int32_t *ids, int64_t n, const float *rows, int D,
                     float *grad_table)
{
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < n; r++)
        memcpy(grad_table + (int64_t)ids[r] * D, rows + r * D, (size_t)D * sizeof(float));
}
