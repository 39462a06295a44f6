/* als.c -- implicit ALS (Hu, Koren & Volinsky, ICDM 2008): one half-sweep
 * solves every row of X against a fixed Y, the solver entry Python
 * alternates; and ALS's descriptor, which scores its factors with BPRMF's
 * dot-product kernels (same layout).
 *
 * The objective, over X (rows x D) and Y (cols x D):
 *
 *   sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2),
 *   p_ui = 1 on the CSR's entries (0 elsewhere), c_ui = 1 + alpha r_ui
 *   (r_ui = the entry's value, 1 when no values are given; 1 off the CSR).
 *
 * With Y fixed, row u solves (YtY + Y^T (C_u - I) Y + reg I) x_u = Y^T C_u p_u.
 * RMF_ALS_CHOLESKY solves it exactly (double precision, per row);
 * RMF_ALS_CG takes cg_steps conjugate-gradient steps from the current x_u
 * (Takacs, Pilaszy & Tikk, RecSys 2011; benfred/implicit's cg solver),
 * never forming the D x D matrix.  Alternating the two halves is one ALS
 * iteration; the item half uses the transposed CSR.  A row without entries
 * gets x = 0 (its optimum); a system that is not positive definite (reg = 0
 * and too few entries) gives RMF_ERR_VALUE naming the row.
 *
 * Two phases, never mixed: a BLAS phase (G = Y^T Y, one single-threaded
 * sgemm), then an OpenMP loop over rows that calls no BLAS.  Each row is
 * solved by one thread with a fixed order of operations, and the loss is
 * summed over rows in row order afterwards, so the result depends neither
 * on scheduling nor on the thread count.
 *
 * Per row, with w_i = alpha r_i and c_i = 1 + w_i over the row's entries:
 *   A = G + reg I + sum_i w_i y_i y_i^T,   b = sum_i c_i y_i.
 * CG applies A to a vector as (G + reg I) v + sum_i w_i (y_i . v) y_i:
 * O(D^2 + n_u D) per step instead of forming A (O(n_u D^2)). */
#include "models/model.h"

#include "data/data.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The per-row solvers are compiled twice, for AVX2 and for any x86-64,
 * and picked at load time: a row's work is D-long dots and axpys (implicit
 * gets the same from OpenBLAS's runtime-dispatched kernels).  Without
 * -ffp-contract (C11 mode) neither version fuses multiply-adds, so both
 * round alike. */


static inline void axpy(float a, const float *x, float *y, int n)
{
    for (int j = 0; j < n; j++)
        y[j] += a * x[j];
}

/* y = S v for a symmetric row-major S, as a sum of rows (column k = row k):
 * each y[j] accumulates over k in order, and the loop over j vectorizes. */
static void symv(const float *S, const float *v, float *y, int D)
{
    memset(y, 0, (size_t)D * sizeof *y);
    for (int k = 0; k < D; k++)
        axpy(v[k], S + (int64_t)k * D, y, D);
}

void rmf_als_default_params(rmf_als_params *p)
{
    /* recmf.ALS's defaults, chosen on ML-1M's validation split. */
    p->regularization = 50.0f;
    p->alpha = 2.0f;
    p->solver = RMF_ALS_CG;
    p->cg_steps = 3;
    p->n_threads = 0;
}

const char *rmf_als_check_params(const rmf_als_params *p)
{
    if (!(p->regularization >= 0.0f) || isinf(p->regularization))
        return "regularization must be a finite number >= 0";
    if (!(p->alpha >= 0.0f) || isinf(p->alpha))
        return "alpha must be a finite number >= 0";
    if (p->solver != RMF_ALS_CG && p->solver != RMF_ALS_CHOLESKY)
        return "solver must be RMF_ALS_CG or RMF_ALS_CHOLESKY";
    if (p->solver == RMF_ALS_CG && p->cg_steps < 1)
        return "cg_steps must be >= 1";
    return NULL;
}

/* The entries of one row: columns, values (NULL = 1), count. */
typedef struct {
    const int32_t *idx;
    const float *val;
    int64_t n;
} row_entries;

static inline float weight_of(const row_entries *e, int64_t q, float alpha)
{
    return alpha * (e->val ? e->val[q] : 1.0f);
}

/* cg_steps of conjugate gradient on A x = b from the current x (Takacs et
 * al. 2011, as implicit's least_squares_cg); Greg = G + reg I. */
RMF_CLONES
static void cg_row(const float *Greg, const float *Y, int D,
                   const row_entries *e, float alpha, int steps, float *x,
                   float *r, float *p, float *Ap)
{
    /* r = b - A x */
    symv(Greg, x, Ap, D);
    for (int j = 0; j < D; j++)
        r[j] = -Ap[j];
    for (int64_t q = 0; q < e->n; q++) {
        const float *y = Y + (int64_t)e->idx[q] * D;
        float w = weight_of(e, q, alpha);
        axpy((1.0f + w) - w * rmf_dot_lanes(y, x, D), y, r, D);
    }
    memcpy(p, r, (size_t)D * sizeof *p);
    float rsold = rmf_dot_lanes(r, r, D);
    for (int it = 0; it < steps && rsold > 1e-20f; it++) {
        symv(Greg, p, Ap, D);
        for (int64_t q = 0; q < e->n; q++) {
            const float *y = Y + (int64_t)e->idx[q] * D;
            float w = weight_of(e, q, alpha);
            if (w != 0.0f)
                axpy(w * rmf_dot_lanes(y, p, D), y, Ap, D);
        }
        float pAp = rmf_dot_lanes(p, Ap, D);
        if (!(pAp > 0.0f)) /* only without regularization: nothing to gain */
            break;
        float a = rsold / pAp;
        axpy(a, p, x, D);
        axpy(-a, Ap, r, D);
        float rsnew = rmf_dot_lanes(r, r, D);
        float beta = rsnew / rsold;
        for (int j = 0; j < D; j++)
            p[j] = r[j] + beta * p[j];
        rsold = rsnew;
    }
}

/* Exact solve in double: A (D x D, lower triangle used) built from Gd =
 * G + reg I, Cholesky in place, two triangular solves.  0 when A is not
 * positive definite. */
RMF_CLONES
static int cholesky_row(const double *Gd, const float *Y, int D,
                        const row_entries *e, float alpha, float *x,
                        double *A, double *b)
{
    memcpy(A, Gd, (size_t)D * D * sizeof *A);
    memset(b, 0, (size_t)D * sizeof *b);
    for (int64_t q = 0; q < e->n; q++) {
        const float *y = Y + (int64_t)e->idx[q] * D;
        double w = weight_of(e, q, alpha);
        for (int j = 0; j < D; j++) {
            b[j] += (1.0 + w) * y[j];
            double wy = w * y[j];
            double *Aj = A + (int64_t)j * D;
            for (int k = 0; k <= j; k++)
                Aj[k] += wy * y[k];
        }
    }
    for (int j = 0; j < D; j++) {
        double *Lj = A + (int64_t)j * D;
        double s = Lj[j];
        for (int k = 0; k < j; k++)
            s -= Lj[k] * Lj[k];
        if (!(s > 0.0))
            return 0;
        double d = sqrt(s);
        Lj[j] = d;
        for (int i = j + 1; i < D; i++) {
            double *Li = A + (int64_t)i * D;
            double t = Li[j];
            for (int k = 0; k < j; k++)
                t -= Li[k] * Lj[k];
            Li[j] = t / d;
        }
    }
    for (int j = 0; j < D; j++) { /* L z = b */
        const double *Lj = A + (int64_t)j * D;
        double t = b[j];
        for (int k = 0; k < j; k++)
            t -= Lj[k] * b[k];
        b[j] = t / Lj[j];
    }
    for (int j = D - 1; j >= 0; j--) { /* L^T x = z */
        double t = b[j];
        for (int i = j + 1; i < D; i++)
            t -= A[(int64_t)i * D + j] * b[i];
        b[j] = t / A[(int64_t)j * D + j];
    }
    for (int j = 0; j < D; j++)
        x[j] = (float)b[j];
    return 1;
}

/* This row's share of the objective at x:
 * x^T (G + reg I) x + sum_i [w_i s_i^2 - 2 c_i s_i + c_i], s_i = x . y_i
 * (the sum over all columns of c (p - s)^2 plus reg |x|^2, using that
 * columns off the row have c = 1, p = 0). */
RMF_CLONES
static double row_loss(const float *Greg, const float *Y, int D,
                       const row_entries *e, float alpha, const float *x,
                       float *tmp)
{
    symv(Greg, x, tmp, D);
    double l = rmf_dot_lanes(tmp, x, D);
    for (int64_t q = 0; q < e->n; q++) {
        double s = rmf_dot_lanes(Y + (int64_t)e->idx[q] * D, x, D);
        double w = weight_of(e, q, alpha);
        l += w * s * s - 2.0 * (1.0 + w) * s + (1.0 + w);
    }
    return l;
}

/* One half-sweep: rewrites every row of X (m->n_rows x D, row-major)
 * against the fixed Y (m->n_cols x D).  values (may be NULL: all 1) holds
 * r for each CSR entry, finite and >= 0.  A row without entries gets x = 0
 * (its optimum).  When loss is not NULL, *loss receives the objective above
 * (not normalised) at the new X and the given Y.  Phases: Y^T Y by one
 * single-threaded sgemm, then an OpenMP loop over rows; every row is
 * solved by one thread in a fixed order, so X and the loss depend only on
 * the inputs, not on the thread count.  A system that is not positive
 * definite (reg = 0 and too few entries) gives RMF_ERR_VALUE naming the
 * row. */
rmf_status rmf_als_solve(const rmf_als_params *p, const rmf_csr *m,
                         const float *values, const float *Y, int32_t D,
                         float *X, double *loss, rmf_error *err)
{
    if (p == NULL || m == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "params and matrix must not be NULL");
    const char *bad = rmf_als_check_params(p);
    if (bad != NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s", bad);
    if (D < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "factors must be >= 1, got %d", (int)D);
    if (m->n_rows < 0 || m->n_cols < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "bad matrix shape %d x %d", (int)m->n_rows,
                        (int)m->n_cols);
    /* The row loops index Y by these columns: a column out of [0, n_cols)
     * read outside Y (found by tests/test_fuzz.py). */
    rmf_status st0 = rmf_csr_check(m, "the matrix", -1, -1, err);
    if (st0 != RMF_OK)
        return st0;
    if ((m->n_rows > 0 && X == NULL) || (m->n_cols > 0 && Y == NULL))
        return rmf_fail(err, RMF_ERR_VALUE, "X and Y must not be NULL");
    const int64_t nnz = m->n_rows > 0 ? m->indptr[m->n_rows] : 0;
    if (values != NULL)
        for (int64_t q = 0; q < nnz; q++)
            if (!(values[q] >= 0.0f) || isinf(values[q]))
                return rmf_fail(err, RMF_ERR_VALUE,
                                "values[%lld] = %g: values must be finite and >= 0",
                                (long long)q, (double)values[q]);
    if (loss != NULL)
        *loss = 0.0;
    if (m->n_rows == 0)
        return RMF_OK;

    const int nt = rmf_resolve_threads(p->n_threads);
    const int64_t DD = (int64_t)D * D;
    const int exact = p->solver == RMF_ALS_CHOLESKY;
    float *G = malloc((size_t)DD * sizeof *G);
    double *Gd = exact ? malloc((size_t)DD * sizeof *Gd) : NULL;
    double *part = loss ? malloc((size_t)m->n_rows * sizeof *part) : NULL;
    if (!G || (exact && !Gd) || (loss && !part)) {
        free(G);
        free(Gd);
        free(part);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for ALS with %d factors", (int)D);
    }

    rmf_fp_enter(); /* subnormals flushed in recmf's compute (fpstate.c) */
    /* BLAS phase, on one thread: Y^T Y is D^2 n_cols flops, ~1% of the
     * row loop, too small to pay for waking a team; and so the factors do
     * not depend on the thread count at all. */
    memset(G, 0, (size_t)DD * sizeof *G);
    if (m->n_cols > 0) {
        int saved = rmf_blas_single_begin(); /* no other fit changes it meanwhile */
        rmf_sgemm(1, 0, D, D, m->n_cols, 1.0f, Y, D, Y, D, 0.0f, G, D);
        rmf_blas_single_end(saved);
    }
    /* Exactly symmetric (the sgemm need not be), plus reg on the diagonal. */
    for (int j = 0; j < D; j++) {
        for (int k = 0; k < j; k++)
            G[(int64_t)j * D + k] = G[(int64_t)k * D + j];
        G[(int64_t)j * D + j] += p->regularization;
    }
    if (exact)
        for (int64_t q = 0; q < DD; q++)
            Gd[q] = G[q];

    /* Parallel phase. */
    int64_t bad_row = -1;
    int nomem = 0;
    rmf_stop *stop = rmf_stop_here();
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        float *scratch = malloc((size_t)4 * D * sizeof *scratch);
        double *A = exact ? malloc((size_t)(DD + D) * sizeof *A) : NULL;
        if (!scratch || (exact && !A)) {
            OMP(omp atomic write)
            nomem = 1;
        }
        OMP(omp for schedule(dynamic, 16))
        for (int64_t u = 0; u < m->n_rows; u++) {
            if (!scratch || (exact && !A) || rmf_stopping(stop))
                continue;
            float *x = X + u * D;
            row_entries e = {m->indices + m->indptr[u], values ? values + m->indptr[u] : NULL,
                             m->indptr[u + 1] - m->indptr[u]};
            int ok = 1;
            if (e.n == 0)
                memset(x, 0, (size_t)D * sizeof *x);
            else if (exact)
                ok = cholesky_row(Gd, Y, D, &e, p->alpha, x, A, A + DD);
            else
                cg_row(G, Y, D, &e, p->alpha, p->cg_steps, x, scratch, scratch + D,
                       scratch + 2 * D);
            if (!ok) {
                OMP(omp critical(rmf_als_bad_row))
                if (bad_row < 0 || u < bad_row)
                    bad_row = u;
            }
            if (part)
                part[u] = e.n == 0 ? 0.0 : row_loss(G, Y, D, &e, p->alpha, x, scratch + 3 * D);
        }
        free(scratch);
        free(A);
        RMF_TEAM_END;
    }

    rmf_status st = RMF_OK;
    if (nomem)
        st = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for ALS with %d factors", (int)D);
    else if (bad_row >= 0)
        st = rmf_fail(err, RMF_ERR_VALUE,
                      "row %lld: the least-squares system is not positive definite; "
                      "increase regularization", (long long)bad_row);
    else if (loss != NULL) {
        double total = 0.0, fixed = 0.0;
        for (int64_t u = 0; u < m->n_rows; u++)
            total += part[u];
        for (int64_t i = 0; i < m->n_cols; i++)
            fixed += rmf_dot_lanes(Y + i * D, Y + i * D, D);
        *loss = total + (double)p->regularization * fixed;
    }
    rmf_fp_leave();
    free(G);
    free(Gd);
    free(part);
    return st;
}

/* ------------------------------------------------------------------ */
/* The descriptor: factors [user | item], scored as dot products      */
/* ------------------------------------------------------------------ */

static const rmf_field FIELDS[] = {
    RMF_FIELD(rmf_dot_config, "factors", 'i', dim, "latent dimension"),
    {NULL, 0, 0, NULL},
};

static void defaults(void *cfg)
{
    ((rmf_dot_config *)cfg)->dim = 64;
}

static rmf_status check(const void *cfg, rmf_error *err)
{
    const rmf_dot_config *c = cfg;
    if (c->dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "factors must be >= 1, got %d", (int)c->dim);
    return RMF_OK;
}

/* theta = [user_factors n_users x factors | item_factors n_items x factors],
 * N(0, 0.01^2) before the first sweep. */
static void layout(const void *cfg, rmf_layout *L)
{
    const rmf_dot_config *c = cfg;
    rmf_layout_add(L, "user_factors", c->base.n_users, c->dim, RMF_BLOCK_TABLE, RMF_INIT_NORMAL, 0.01);
    rmf_layout_add(L, "item_factors", c->base.n_items, c->dim, RMF_BLOCK_TABLE, RMF_INIT_NORMAL, 0.01);
}

/* Trained in Python by alternating rmf_als_solve half-sweeps (its history,
 * evaluation and Ctrl-C come from recmf's epoch loop there). */
const rmf_model rmf_als = {
    .kind = "als",
    .source = RMF_SOURCE_NONE,
    .minibatch = 0,
    .takes_history = 0,
    .config_size = sizeof(rmf_dot_config),
    .fields = FIELDS,
    .defaults = defaults,
    .check = check,
    .layout = layout,
    .score = rmf_dot_score,
    .recommend = rmf_dot_recommend,
};
