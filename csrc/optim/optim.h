/*
 * optim.h -- Adam on embedding tables, dense and lazy (adam.c); the dense
 * step and the parameters are in recmf.h.
 */
#ifndef RECMF_OPTIM_H
#define RECMF_OPTIM_H

#include "recmf.h"

/* ------------------------------------------------------------------ */
/* Adam on embedding tables                                           */
/* ------------------------------------------------------------------ */

/* Dense Adam (rmf_adam_step) on an n_rows x D embedding table whose
 * gradient is zero except on the rows with slot_of_row[r] >= 0, whose
 * gradient is row_grad + slot_of_row[r] * D: the batch's few gradient rows
 * are read where they were computed instead of being scattered into a
 * mostly-zero array.  Called inside a parallel region, each thread updates
 * its contiguous share of the rows (no barrier); outside one, all rows.
 * Defined in adam.c. */
void rmf_adam_table_share(const rmf_adam_params *p, int64_t step,
                          float *theta, float *m, float *v, int64_t n_rows,
                          int D, const int32_t *slot_of_row,
                          const float *row_grad);

/* Lazy Adam (opt-in approximation of PyTorch's dense Adam): only the rows
 * a batch touched take a step; untouched rows keep their moments and skip
 * weight decay. */
/* One Adam step, element by element as rmf_adam_step, on the distinct rows
 * ids[0..nr) of D floats of the block starting at offset off of st's
 * theta/m/v, in place.  Row ids[r]'s gradient is grad + r D when by_slot
 * (a batch's per-distinct-row gradient), else laid out as theta (grad +
 * off + ids[r] D).  Defined in adam.c. */
void rmf_lazy_rows_step(const rmf_adam_params *ap, int64_t step,
                        rmf_opt_state *st, const float *grad, int by_slot,
                        int64_t off, const int32_t *ids, int64_t nr, int D,
                        int nt);

#endif /* RECMF_OPTIM_H */
