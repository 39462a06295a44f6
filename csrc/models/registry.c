/* registry.c -- the one table of the models the glue scores by kind
 * (_core.score_pairs / recommend / n_params), found by the exact kind name
 * of the model's Python class (Model.kind).  A new model adds one row
 * (csrc/README.md). */
#include "recmf.h"

#include <string.h>

static const rmf_model MODELS[] = {
    {"neuralmf", rmf_ncf_check_shape, rmf_ncf_n_params, rmf_ncf_score_pairs, rmf_ncf_recommend},
    {"bprmf", rmf_mf_check_shape, rmf_mf_n_params, rmf_mf_score_pairs, rmf_mf_recommend},
    /* ALS keeps BPRMF's layout [user factors | item factors]: same kernels. */
    {"als", rmf_mf_check_shape, rmf_mf_n_params, rmf_mf_score_pairs, rmf_mf_recommend},
};

const rmf_model *rmf_model_find(const char *kind)
{
    for (size_t r = 0; r < sizeof MODELS / sizeof MODELS[0]; r++)
        if (strcmp(MODELS[r].kind, kind) == 0)
            return &MODELS[r];
    return NULL;
}
