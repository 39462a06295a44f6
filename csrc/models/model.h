/*
 * model.h -- what a model is to the core: one descriptor (rmf_model) per
 * file of models/, listed once in registry.c.  The glue never sees inside
 * it (recmf.h's rmf_model_* functions are its view); the one training loop
 * (train/loop.c) and the table (registry.c) do.
 *
 * A descriptor gives:
 *   - kind, the exact name of the model's Python class (Model.kind);
 *   - its config: a struct that starts with rmf_config (the data's sizes
 *     and the loop's parameters), then the model's own fields, listed in
 *     a field table so the glue parses keywords into it and the CLI can
 *     build flags from it; defaults() and check() for those fields;
 *   - its parameter layout: named blocks of theta (rmf_layout), each a
 *     TABLE (rows looked up by id: a batch touches a few) or DENSE, with
 *     its initialisation.  n_params, the Adam routing and Python's views
 *     and initial weights all come from it, so it is written once;
 *   - its data source (RMF_SOURCE_*): what fit learns from;
 *   - a mini-batch model: a workspace and its batch function, one batch's
 *     mean loss and gradient built from nn/; the loop does the rest;
 *   - a closed-form model: fit(), its solver entry;
 *   - score() and recommend(), whose queries may carry a user history.
 *
 * The table (registry.c) checks the arguments every model shares --
 * sizes, ids, k, seen, the history, the candidates -- before calling a
 * model's function, so a model checks only its own fields.
 */
#ifndef RECMF_MODEL_H
#define RECMF_MODEL_H

#include "recmf.h"

/* A batch's loss and gradient, as the loop routes them to Adam.  Dense
 * blocks: written by the batch function into grad (the loop's buffer,
 * laid out as theta) at their offsets.  Table blocks (by block index):
 * the distinct rows the batch touched, ids[0..n), and their gradient rows,
 * rows + r cols for ids[r] -- every other row's gradient is zero.  The
 * arrays are the model's workspace: valid until its next batch. */
typedef struct {
    double loss; /* mean over the batch's examples */
    float *grad;
    struct {
        const int32_t *ids;
        int64_t n;
        const float *rows;
    } table[RMF_MAX_BLOCKS];
} rmf_grads;

struct rmf_model {
    const char *kind;
    int source;         /* RMF_SOURCE_*: the data fit learns from */
    int minibatch;      /* 1: trained by rmf_train_epoch; 0: by fit or in Python */
    int takes_history;  /* 1: score/recommend accept a query history */
    size_t config_size; /* sizeof the model's config struct */
    const rmf_field *fields; /* the model's own keywords, ended by {NULL} */
    void (*defaults)(void *cfg);                          /* own fields */
    rmf_status (*check)(const void *cfg, rmf_error *err); /* own fields */
    void (*layout)(const void *cfg, rmf_layout *out);

    /* Mini-batch models.  ws_alloc: scratch for batches of up to cap
     * examples (*ws NULL and a message on failure); batch: the mean loss
     * and gradient of b at theta, on a team of nt logical threads, as
     * nn.h's threading rule says (results independent of the team). */
    rmf_status (*ws_alloc)(const void *cfg, int64_t cap, void **ws,
                           rmf_error *err);
    void (*ws_free)(void *ws);
    void (*batch)(void *ws, const void *cfg, const float *theta,
                  const rmf_batch *b, int nt, rmf_grads *g);

    /* Closed-form models: theta (n_params floats) from the data. */
    rmf_status (*fit)(const void *cfg, const rmf_data *data, int n_threads,
                      float *theta, rmf_error *err);

    /* Scoring, arguments checked by the table (registry.c): out[k] = the
     * score of (u[k], i[k]) -- u[k] a row of history when it is not NULL
     * --, and recommend's top-k (rmf_model_recommend).  NULL: the model
     * does not score that way in C. */
    rmf_status (*score)(const void *cfg, const float *theta, const int32_t *u,
                        const int32_t *i, int64_t n, const rmf_seq *history,
                        int n_threads, float *out, rmf_error *err);
    rmf_status (*recommend)(const void *cfg, const float *theta,
                            const rmf_query *q, int32_t k, int n_threads,
                            int32_t *out_items, float *out_scores,
                            int32_t *out_len, rmf_error *err);
};

/* A field of config struct T: FIELD(T, "name", 'f', member, "help"). */
#define RMF_FIELD(T, name, type, member, help) {name, type, offsetof(T, member), help}

/* Appends block `name` (rows x cols; cols = 0 for a vector) after the
 * last one; offsets and n_params follow (train/layout.c). */
void rmf_layout_add(rmf_layout *L, const char *name, int64_t rows,
                    int64_t cols, int role, int init, double init_arg);

/* Dot-product scoring of theta = [user rows | item rows] of dim floats
 * (models/bprmf.c), shared by BPRMF and ALS, whose configs are this. */
typedef struct {
    rmf_config base;
    int32_t dim;
} rmf_dot_config;

rmf_status rmf_dot_score(const void *cfg, const float *theta, const int32_t *u,
                         const int32_t *i, int64_t n, const rmf_seq *history,
                         int n_threads, float *out, rmf_error *err);
rmf_status rmf_dot_recommend(const void *cfg, const float *theta,
                             const rmf_query *q, int32_t k, int n_threads,
                             int32_t *out_items, float *out_scores,
                             int32_t *out_len, rmf_error *err);

/* The item-item models, EASE and SLIST (models/ease.c): theta is B,
 * n_items x n_items (their config starts with rmf_config), and a query
 * row's scores are s_u = sum_q w_q B[item_q, :] over its history. */
void rmf_item_item_layout(const void *cfg, rmf_layout *L);
rmf_status rmf_item_item_recommend(const void *cfg, const float *B, const rmf_query *q, int32_t k,
                                   int n_threads, int32_t *out_items, float *out_scores, int32_t *out_len,
                                   rmf_error *err);

#endif /* RECMF_MODEL_H */
