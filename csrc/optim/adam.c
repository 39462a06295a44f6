/* adam.c -- Adam as torch.optim.Adam computes it: dense, on an embedding
 * table whose gradient rows sit by slot, and lazily on touched rows.
 *
 * Faithfulness to PyTorch (single-tensor path, amsgrad=False):
 *   grad  = g + wd * theta                (grad.add(param, alpha=wd))
 *   m     = m + (1 - b1) * (grad - m)     (exp_avg.lerp_(grad, 1 - b1): the
 *                                          small-weight branch of lerp)
 *   v     = b2 * v + (1 - b2) * grad * grad   (mul_ then addcmul_)
 *   denom = sqrt(v) / sqrt(bc2) + eps
 *   theta = theta + (-step_size) * (m / denom)     (addcdiv_)
 * Bias corrections and step_size are Python floats (doubles) in PyTorch and
 * are cast to float32 only when they enter the elementwise kernel; we do
 * the same.  The float hyper-parameters of rmf_adam_params are first mapped
 * back to the double the user typed (0.9f -> 0.9), because 1 - 0.9f^1
 * differs from 1 - 0.9^1 by 2 float ulps, a systematic bias early on. */
#include "optim/optim.h"
#include "runtime/runtime.h"

#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

void rmf_adam_default_params(rmf_adam_params *p)
{
    p->lr = 1e-3f;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->weight_decay = 1e-6f;
}

const char *rmf_adam_check_params(const rmf_adam_params *p)
{
    /* Written so NaN fails every test (comparisons with NaN are false). */
    if (!(p->lr > 0.0f && isfinite(p->lr)))
        return "lr must be > 0 and finite";
    if (!(p->beta1 >= 0.0f && p->beta1 < 1.0f))
        return "beta1 must be in [0, 1)";
    if (!(p->beta2 >= 0.0f && p->beta2 < 1.0f))
        return "beta2 must be in [0, 1)";
    if (!(p->eps > 0.0f && isfinite(p->eps)))
        return "eps must be > 0 and finite";
    if (!(p->weight_decay >= 0.0f && isfinite(p->weight_decay)))
        return "weight_decay must be >= 0 and finite";
    return NULL;
}

rmf_status rmf_adam_check_step(const rmf_adam_params *p, int64_t step, rmf_error *err)
{
    const char *bad = rmf_adam_check_params(p);
    if (bad != NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s", bad);
    if (step < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "step must be >= 1, got %lld", (long long)step);
    return RMF_OK;
}

/* The shortest decimal (at most 9 significant digits) that rounds to f, as
 * a double: the value Python would have held for the same literal.  q and
 * 10^e are exact doubles, so q / 10^e is the correctly rounded decimal. */
static double intended_double(float f)
{
    if (!(f != 0.0f) || !isfinite(f))
        return (double)f;
    double a = fabs((double)f);
    int e10 = (int)floor(log10(a));
    for (int digits = 1; digits <= 9; digits++) {
        int e = digits - 1 - e10; /* scale so the integer has `digits` digits */
        if (e > 22 || e < -22)
            break; /* 10^e no longer exact: keep the float's own value */
        double p10 = pow(10.0, e < 0 ? -e : e);
        double q = nearbyint(e >= 0 ? a * p10 : a / p10);
        double d = e >= 0 ? q / p10 : q * p10;
        if ((float)d == (float)a)
            return f < 0.0f ? -d : d;
    }
    return (double)f;
}

/* The float scalars of step `step`, as PyTorch passes them to its kernels. */
typedef struct {
    float wd, w1, b2, w2, bc2_sqrt, eps, neg_step;
} adam_scalars;

/* One element's update, all arithmetic in float in PyTorch's operation
 * order: the one place the formula is written (adam_range and
 * adam_table_range inline it).  g is the gradient without weight decay. */
static inline void adam_elem(float *restrict theta, float g, float *restrict m,
                             float *restrict v, adam_scalars s)
{
    float grad = g + s.wd * *theta;
    float mk = *m + s.w1 * (grad - *m);
    float vk = *v * s.b2 + s.w2 * grad * grad;
    float denom = sqrtf(vk) / s.bc2_sqrt + s.eps;
    *m = mk;
    *v = vk;
    *theta = *theta + s.neg_step * (mk / denom);
}

/* The elementwise update on [lo, hi).  Lanes are independent, so the
 * result does not depend on how the range is split over threads or vector
 * widths.
 *
 * Speed note: GCC vectorizes this loop only under -fno-math-errno (sqrtf
 * may set errno, which forces a scalar call; v >= 0 so it never does).
 * That flag changes no result -- it is not part of fast-math's IEEE
 * relaxations -- and makes a dense step ~7x faster.  Neither
 * optimize("no-math-errno") nor the pragma takes effect in GCC 12, so the
 * flag belongs on the command line (setup.py). */
RMF_CLONES
static void adam_range(float *restrict theta, const float *restrict g,
                       float *restrict m, float *restrict v, int64_t lo,
                       int64_t hi, adam_scalars s)
{
    for (int64_t k = lo; k < hi; k++)
        adam_elem(&theta[k], g[k], &m[k], &v[k], s);
}

static adam_scalars adam_prepare(const rmf_adam_params *p, int64_t step)
{
    double lr = intended_double(p->lr);
    double b1 = intended_double(p->beta1);
    double b2 = intended_double(p->beta2);
    double bc1 = 1.0 - pow(b1, (double)step);
    double bc2 = 1.0 - pow(b2, (double)step);
    adam_scalars s;
    s.wd = p->weight_decay;
    s.w1 = (float)(1.0 - b1);
    s.b2 = (float)b2;
    s.w2 = (float)(1.0 - b2);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.eps = p->eps;
    s.neg_step = (float)(-(lr / bc1));
    return s;
}

/* Below this many parameters a parallel region costs more than it saves. */
#define ADAM_PAR_MIN 32768

/* One PyTorch-equivalent Adam step (torch.optim.Adam, amsgrad=False,
 * maximize=False) over theta[0..n): step is the 1-based step count after
 * this update.  g is the gradient without weight decay. */
void rmf_adam_step(const rmf_adam_params *p, int64_t step, float *theta,
                   const float *g, float *m, float *v, int64_t n,
                   int n_threads)
{
    if (n <= 0 || step < 1)
        return;
    adam_scalars s = adam_prepare(p, step);
    int nt = rmf_resolve_threads(n_threads);
    (void)nt; /* unused without OpenMP */
    rmf_fp_enter();
#ifdef _OPENMP
    if (nt > 1 && n >= ADAM_PAR_MIN) {
        /* Contiguous chunks, one per thread: streaming access, no false
         * sharing except at the chunk ends. */
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            int t = omp_get_thread_num(), T = omp_get_num_threads();
            int64_t lo = n * t / T, hi = n * (t + 1) / T;
            adam_range(theta, g, m, v, lo, hi, s);
            RMF_TEAM_END;
        }
        rmf_fp_leave();
        return;
    }
#endif
    adam_range(theta, g, m, v, 0, n, s);
    rmf_fp_leave();
}

/* In place, row by row, with the one elementwise kernel (adam_range), so
 * lazy and dense Adam cannot drift apart in how an element is updated.
 * It used to copy the rows out to packed buffers, step them and copy them
 * back: seven row copies per touched row, 16% of a lazy NeuralMF epoch at
 * ML-20M's shape, where the tables do not fit in cache. */
void rmf_lazy_rows_step(const rmf_adam_params *ap, int64_t step,
                        rmf_opt_state *st, const float *grad, int by_slot,
                        int64_t off, const int32_t *ids, int64_t nr, int D,
                        int nt)
{
    (void)nt; /* unused without OpenMP */
    if (nr <= 0 || step < 1)
        return;
    adam_scalars s = adam_prepare(ap, step);
    rmf_fp_enter();
    RMF_PARALLEL(nt, if (nr * D > 65536))
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(static) nowait)
        for (int64_t r = 0; r < nr; r++) {
            if (r + RMF_PREFETCH_AHEAD < nr) {
                /* Rows at random in tables beyond the cache: ask early. */
                const int64_t ahead = off + (int64_t)ids[r + RMF_PREFETCH_AHEAD] * D;
                rmf_prefetch_row(st->theta + ahead, (size_t)D * sizeof(float));
                rmf_prefetch_row(st->m + ahead, (size_t)D * sizeof(float));
                rmf_prefetch_row(st->v + ahead, (size_t)D * sizeof(float));
            }
            const int64_t at = off + (int64_t)ids[r] * D;
            const float *g = by_slot ? grad + r * D : grad + at;
            adam_range(st->theta + at, g, st->m + at, st->v + at, 0, D, s);
        }
        RMF_TEAM_END;
    }
    rmf_fp_leave();
}

/* The update of rows [r0, r1) of an n x D table whose gradient row r is
 * row_grad[slot_of_row[r]] when that slot is >= 0 and zero otherwise:
 * adam_elem with g = 0.0f for an absent row is what adam_range computes
 * from a zero gradient, so the result equals rmf_adam_step on the
 * materialized gradient. */
RMF_CLONES
static void adam_table_range(float *restrict theta, float *restrict m,
                             float *restrict v, const int32_t *slot_of_row,
                             const float *row_grad, int D, int64_t r0,
                             int64_t r1, adam_scalars s)
{
    for (int64_t r = r0; r < r1; r++) {
        float *t = theta + r * D, *mr = m + r * D, *vr = v + r * D;
        const int32_t slot = slot_of_row[r];
        if (slot >= 0) {
            const float *g = row_grad + (int64_t)slot * D;
            for (int k = 0; k < D; k++)
                adam_elem(&t[k], g[k], &mr[k], &vr[k], s);
        } else {
            for (int k = 0; k < D; k++)
                adam_elem(&t[k], 0.0f, &mr[k], &vr[k], s);
        }
    }
}

void rmf_adam_table_share(const rmf_adam_params *p, int64_t step,
                          float *theta, float *m, float *v, int64_t n_rows,
                          int D, const int32_t *slot_of_row,
                          const float *row_grad)
{
    if (n_rows <= 0 || step < 1)
        return;
    adam_scalars s = adam_prepare(p, step);
    int64_t lo = 0, hi = n_rows;
#ifdef _OPENMP
    /* Contiguous shares, one per thread of the enclosing team. */
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    lo = n_rows * t / T;
    hi = n_rows * (t + 1) / T;
#endif
    adam_table_range(theta, m, v, slot_of_row, row_grad, D, lo, hi, s);
}
