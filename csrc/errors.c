/* errors.c -- the one way the core reports a failure: a status plus a
 * message naming what was wrong; module.c turns both into an exception. */
#include "recmf.h"

#include <stdarg.h>
#include <stdio.h>

rmf_status rmf_fail(rmf_error *err, rmf_status status, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}
