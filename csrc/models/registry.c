/* registry.c -- the one table of models (a new model adds one row), and
 * what the glue asks of a model, through it: the config's fields,
 * defaults and checks, the layout, scoring and fitting, each call's shared
 * arguments checked here once so that a model checks only its own. */
#include "models/model.h"

#include "data/data.h"
#include "train/train.h"

#include <string.h>

/* The table: one row per model, its descriptor's name (defined in its
 * file of models/). */
#define RMF_MODELS(X) \
    X(rmf_neuralmf)   \
    X(rmf_bprmf)      \
    X(rmf_als)        \
    X(rmf_ease)       \
    X(rmf_sasrec)     \
    X(rmf_slist)

#define DECLARE(d) extern const rmf_model d;
#define ROW(d) &d,
RMF_MODELS(DECLARE)
static const rmf_model *const MODELS[] = {RMF_MODELS(ROW)};
#define N_MODELS (int)(sizeof MODELS / sizeof MODELS[0])

const rmf_model *rmf_model_find(const char *kind)
{
    for (int r = 0; r < N_MODELS; r++)
        if (strcmp(MODELS[r]->kind, kind) == 0)
            return MODELS[r];
    return NULL;
}

const rmf_model *rmf_model_at(int index)
{
    return index >= 0 && index < N_MODELS ? MODELS[index] : NULL;
}

const char *rmf_model_name(const rmf_model *m) { return m->kind; }

int rmf_model_source(const rmf_model *m) { return m->source; }
int rmf_model_minibatch(const rmf_model *m) { return m->minibatch; }

/* ------------------------------------------------------------------ */
/* Configs                                                            */
/* ------------------------------------------------------------------ */

#define BASE(name, type, member, help) RMF_FIELD(rmf_config, name, type, member, help)
/* Every model's sizes; mini-batch models add the loop's parameters. */
static const rmf_field SIZE_FIELDS[] = {
    BASE("n_users", 'i', n_users, "rows (users) of the data the model was fitted on"),
    BASE("n_items", 'i', n_items, "items of the data the model was fitted on"),
    {NULL, 0, 0, NULL},
};
static const rmf_field TRAIN_FIELDS[] = {
    BASE("lr", 'f', train.adam.lr, "Adam learning rate"),
    BASE("beta1", 'f', train.adam.beta1, "Adam's first-moment decay"),
    BASE("beta2", 'f', train.adam.beta2, "Adam's second-moment decay"),
    BASE("eps", 'f', train.adam.eps, "Adam's epsilon"),
    BASE("weight_decay", 'f', train.adam.weight_decay, "L2 added to the gradient (not AdamW)"),
    BASE("batch_size", 'i', train.batch_size, "examples per batch"),
    BASE("lazy_adam", 'i', train.lazy_adam, "1: Adam steps only the table rows a batch touched"),
    BASE("n_threads", 'i', train.n_threads, "threads (0: all cores)"),
    BASE("seed", 'u', train.seed, "seed of every random draw of training"),
    {NULL, 0, 0, NULL},
};

static int n_fields(const rmf_field *f)
{
    int n = 0;
    while (f && f[n].name)
        n++;
    return n;
}

const rmf_field *rmf_model_field_at(const rmf_model *m, int q)
{
    const rmf_field *lists[3] = {SIZE_FIELDS, m->minibatch ? TRAIN_FIELDS : NULL, m->fields};
    for (int l = 0; l < 3 && q >= 0; l++) {
        int n = n_fields(lists[l]);
        if (q < n)
            return &lists[l][q];
        q -= n;
    }
    return NULL;
}

const rmf_field *rmf_train_field(const char *name)
{
    for (int q = 0; TRAIN_FIELDS[q].name; q++)
        if (strcmp(TRAIN_FIELDS[q].name, name) == 0)
            return &TRAIN_FIELDS[q];
    return NULL;
}

const rmf_field *rmf_model_field(const rmf_model *m, const char *name)
{
    const rmf_field *f;
    for (int q = 0; (f = rmf_model_field_at(m, q)) != NULL; q++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

void rmf_model_defaults(const rmf_model *m, void *cfg)
{
    memset(cfg, 0, m->config_size);
    rmf_config *c = cfg;
    rmf_train_default_params(&c->train);
    if (m->defaults)
        m->defaults(cfg);
}

rmf_status rmf_model_check(const rmf_model *m, const void *cfg, rmf_error *err)
{
    return rmf_config_check(m, cfg, err);
}

rmf_status rmf_model_layout(const rmf_model *m, const void *cfg, rmf_layout *out, rmf_error *err)
{
    return rmf_config_layout(m, cfg, out, err);
}

/* ------------------------------------------------------------------ */
/* Scoring and fitting: the arguments every model shares              */
/* ------------------------------------------------------------------ */

/* The rows a call's ids index: the history's when given, else the model's
 * users; the history must be a sound sequence over the model's items. */
static rmf_status rows_of(const rmf_model *m, const rmf_config *c, const rmf_seq *history,
                          int32_t *n_rows, rmf_error *err)
{
    *n_rows = c->n_users;
    if (history == NULL)
        return RMF_OK;
    if (!m->takes_history)
        return rmf_fail(err, RMF_ERR_VALUE, "%s scores its own users only, not a history", m->kind);
    rmf_status st = rmf_check_seq(history, err);
    if (st != RMF_OK)
        return st;
    if (history->n_items != c->n_items)
        return rmf_fail(err, RMF_ERR_VALUE, "the history has %d items, the model %d", history->n_items,
                        c->n_items);
    *n_rows = history->n_users;
    return RMF_OK;
}

rmf_status rmf_model_score(const rmf_model *m, const void *cfg, const float *theta, const int32_t *u,
                           const int32_t *i, int64_t n, const rmf_seq *history, int n_threads, float *out,
                           rmf_error *err)
{
    const rmf_config *c = cfg;
    int32_t n_rows;
    rmf_status st;
    if ((st = rmf_model_check(m, cfg, err)) != RMF_OK || (st = rows_of(m, c, history, &n_rows, err)) != RMF_OK)
        return st;
    if (m->score == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s does not score pairs in the core", m->kind);
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    /* Nothing to score: NULL buffers of empty NumPy arrays are fine. */
    if (n == 0)
        return RMF_OK;
    if (theta == NULL || out == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and out must not be NULL");
    if ((st = rmf_check_ids(u, n, n_rows, "u", err)) != RMF_OK ||
        (st = rmf_check_ids(i, n, c->n_items, "i", err)) != RMF_OK)
        return st;
    return m->score(cfg, theta, u, i, n, history, n_threads, out, err);
}

rmf_status rmf_model_recommend(const rmf_model *m, const void *cfg, const float *theta, const rmf_query *q,
                               int32_t k, int n_threads, int32_t *out_items, float *out_scores,
                               int32_t *out_len, rmf_error *err)
{
    const rmf_config *c = cfg;
    int32_t n_rows;
    rmf_status st;
    if ((st = rmf_model_check(m, cfg, err)) != RMF_OK ||
        (st = rows_of(m, c, q->history, &n_rows, err)) != RMF_OK)
        return st;
    if (m->recommend == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s does not recommend in the core", m->kind);
    if (q->n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)q->n);
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", (int)k);
    if (theta == NULL || out_items == NULL || out_scores == NULL || out_len == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and the outputs must not be NULL");
    if (q->seen != NULL && (st = rmf_csr_check(q->seen, "seen", n_rows, c->n_items, err)) != RMF_OK)
        return st;
    if ((st = rmf_check_ids(q->users, q->n, n_rows, "users", err)) != RMF_OK)
        return st;
    if (q->n == 0)
        return RMF_OK;
    return m->recommend(cfg, theta, q, k, n_threads, out_items, out_scores, out_len, err);
}

rmf_status rmf_model_fit(const rmf_model *m, const void *cfg, const rmf_data *data, int n_threads,
                         float *theta, rmf_error *err)
{
    const rmf_config *c = cfg;
    rmf_status st = rmf_model_check(m, cfg, err);
    if (st != RMF_OK)
        return st;
    if (m->fit == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s has no solver in the core", m->kind);
    if (theta == NULL || data == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and data must not be NULL");
    if ((st = rmf_check_data(m->source, c, data, err)) != RMF_OK)
        return st;
    return m->fit(cfg, data, n_threads, theta, err);
}
