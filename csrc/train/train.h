/*
 * train.h -- what the one training loop (loop.c) and the parameter layout
 * (layout.c) offer the model table and the models; the loop's entry points
 * are in recmf.h.
 */
#ifndef RECMF_TRAIN_H
#define RECMF_TRAIN_H

#include "models/model.h"

/* The loop's parameters: defaults (recmf.h's comments) and a check that
 * returns NULL or a message naming the bad field. */
void rmf_train_default_params(rmf_train_params *p);
const char *rmf_train_check_params(const rmf_train_params *p);

/* A model's config checked -- the sizes, the loop's parameters for a
 * mini-batch model, then the model's own fields (m->check) -- and its
 * layout (rmf_model_check / rmf_model_layout are these). */
rmf_status rmf_config_check(const rmf_model *m, const void *cfg, rmf_error *err);
rmf_status rmf_config_layout(const rmf_model *m, const void *cfg, rmf_layout *out, rmf_error *err);

/* data holds what source needs, sound and sized as c says (the message
 * names the bad part: "train", "u", ...). */
rmf_status rmf_check_data(int source, const rmf_config *c, const rmf_data *data,
                          rmf_error *err);

/* ------------------------------------------------------------------ */
/* Adam routed by the layout (layout.c)                               */
/* ------------------------------------------------------------------ */

/* Dense Adam steps every row of a table block, reading a touched row's
 * gradient where the batch left it: slot[b][row] is the row's place in the
 * batch's gradient rows of block b, or -1.  Allocated for the table blocks
 * of L (all -1); NULL where a block is not a table. */
typedef struct {
    int32_t *slot[RMF_MAX_BLOCKS];
} rmf_slots;
rmf_status rmf_slots_alloc(const rmf_layout *L, rmf_slots *s, rmf_error *err);
void rmf_slots_free(rmf_slots *s);
/* The rows of g back to -1 (after their step).  Orphaned "omp for
 * nowait" loops. */
void rmf_slots_forget(const rmf_layout *L, rmf_slots *s, const rmf_grads *g);

/* Adam step st->step (already counted) of every block of L from g: table
 * blocks lazily (only their touched rows, p->lazy_adam) or densely through
 * s, dense blocks with rmf_adam_step over each run of adjacent ones. */
void rmf_layout_adam(const rmf_layout *L, const rmf_grads *g, rmf_slots *s,
                     const rmf_train_params *p, rmf_opt_state *st, int nt);
/* g's table rows into grad (laid out as theta; other rows untouched). */
void rmf_layout_scatter(const rmf_layout *L, const rmf_grads *g, float *grad,
                        int nt);

#endif /* RECMF_TRAIN_H */
