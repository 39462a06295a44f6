/* errors.c -- the one way the core reports a failure: a status plus a
 * message naming what was wrong; the glue (py/) turns both into an exception. */
#include "recmf.h"

#include <stdarg.h>
#include <stdio.h>

static void format_into(rmf_error *err, int64_t row, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->row = row;
}

/* Formats a message into err (if non-NULL) and returns status. */
rmf_status rmf_fail(rmf_error *err, rmf_status status, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        format_into(err, -1, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* rmf_fail for a failure about dense row `row` (>= 0): also sets err->row. */
rmf_status rmf_fail_row(rmf_error *err, rmf_status status, int64_t row, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        format_into(err, row, fmt, ap);
        va_end(ap);
    }
    return status;
}
