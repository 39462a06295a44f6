/* parse.c -- ratings text to columns.  Reading ML-1M with pandas' python
 * engine (needed for the "::" separator) is the slowest step of the
 * notebook's load; this is a single pass over the bytes. */
#include "runtime/runtime.h"

#include <string.h>

/* An upper bound of the rows: lines end at LF, CRLF or a lone CR (as in
 * pandas), so every LF and every CR may end one. */
int64_t rmf_count_lines(const char *buf, int64_t len)
{
    int64_t n = 1;
    const char *end = buf + len;
    for (int c = 0; c < 2; c++) {
        const char *p = buf;
        while (p < end && (p = memchr(p, c ? '\r' : '\n', (size_t)(end - p))) != NULL) {
            n++;
            p++;
        }
    }
    return n;
}

typedef struct {
    const char *p, *end;
    int64_t line;
} cursor;

/* Length of the text from p to the end of its line, at most 20 bytes: what
 * an error message quotes. */
static int quote_len(const char *p, const char *end)
{
    int n = 0;
    while (p + n < end && n < 20 && p[n] != '\n' && p[n] != '\r')
        n++;
    return n;
}

static int at_line_end(const cursor *c)
{
    return c->p >= c->end || *c->p == '\n' || *c->p == '\r';
}

static rmf_status parse_int(cursor *c, int64_t *out, const char *what, rmf_error *err)
{
    const char *start = c->p;
    int neg = 0;
    if (c->p < c->end && (*c->p == '-' || *c->p == '+')) {
        neg = *c->p == '-';
        c->p++;
    }
    uint64_t v = 0;
    int digits = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        uint64_t d = (uint64_t)(*c->p - '0');
        if (v > (UINT64_MAX - d) / 10 || v * 10 + d > (uint64_t)INT64_MAX + (uint64_t)neg)
            return rmf_fail(err, RMF_ERR_PARSE, "line %lld: %s does not fit in 64 bits",
                            (long long)c->line, what);
        v = v * 10 + d;
        c->p++;
        digits++;
    }
    if (digits == 0)
        return rmf_fail(err, RMF_ERR_PARSE, "line %lld: expected an integer %s, found '%.*s'",
                        (long long)c->line, what, quote_len(start, c->end), start);
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return RMF_OK;
}

/* Decimal without exponent: "4", "3.5", "-0.25".  Computed as an exact
 * integer divided by an exact power of ten, so the result is the correctly
 * rounded double for up to 15 significant digits (what strtod gives). */
static rmf_status parse_decimal(cursor *c, double *out, const char *what, rmf_error *err)
{
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *start = c->p;
    int neg = 0;
    if (c->p < c->end && (*c->p == '-' || *c->p == '+')) {
        neg = *c->p == '-';
        c->p++;
    }
    uint64_t mant = 0;
    int digits = 0, frac = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        mant = mant * 10 + (uint64_t)(*c->p++ - '0');
        digits++;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            mant = mant * 10 + (uint64_t)(*c->p++ - '0');
            digits++;
            frac++;
        }
    }
    if (digits == 0)
        return rmf_fail(err, RMF_ERR_PARSE, "line %lld: expected a number %s, found '%.*s'",
                        (long long)c->line, what, quote_len(start, c->end), start);
    if (digits > 15)
        return rmf_fail(err, RMF_ERR_PARSE, "line %lld: %s has more than 15 digits",
                        (long long)c->line, what);
    double v = (double)mant / pow10[frac];
    *out = neg ? -v : v;
    return RMF_OK;
}

/* Blanks (space, tab) around a field are not data, as in pandas: skipped,
 * unless the blank is the separator itself. */
static void skip_blanks(cursor *c, const char *sep)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t') && *c->p != sep[0])
        c->p++;
}

/* One numeric field, optionally in double quotes (CSV quoting, as written by
 * spreadsheets and R's write.csv), with blanks around it. */
static rmf_status parse_field(cursor *c, const char *sep, int decimal, void *out, const char *what,
                              rmf_error *err)
{
    skip_blanks(c, sep);
    int quoted = c->p < c->end && *c->p == '"';
    if (quoted) {
        c->p++;
        skip_blanks(c, sep);
    }
    rmf_status st = decimal ? parse_decimal(c, (double *)out, what, err)
                            : parse_int(c, (int64_t *)out, what, err);
    if (st != RMF_OK)
        return st;
    skip_blanks(c, sep);
    if (quoted) {
        if (c->p >= c->end || *c->p != '"')
            return rmf_fail(err, RMF_ERR_PARSE, "line %lld: %s: missing closing quote",
                            (long long)c->line, what);
        c->p++;
        skip_blanks(c, sep);
    }
    return RMF_OK;
}

static rmf_status expect_sep(cursor *c, const char *sep, size_t sep_len, const char *after,
                             rmf_error *err)
{
    if ((size_t)(c->end - c->p) < sep_len || memcmp(c->p, sep, sep_len) != 0)
        return rmf_fail(err, RMF_ERR_PARSE,
                        "line %lld: expected separator '%s' after %s, found '%.*s'",
                        (long long)c->line, sep[0] == '\t' ? "\\t" : sep, after,
                        at_line_end(c) ? 11 : quote_len(c->p, c->end),
                        at_line_end(c) ? "end of line" : c->p);
    c->p += sep_len;
    return RMF_OK;
}

/* Past the end of the line at c->p: LF, CRLF or a lone CR. */
static void end_line(cursor *c)
{
    if (c->p < c->end && *c->p == '\r') {
        c->p++;
        if (c->p < c->end && *c->p == '\n')
            c->p++;
    } else if (c->p < c->end && *c->p == '\n') {
        c->p++;
    }
    c->line++;
}

static void skip_line(cursor *c)
{
    while (c->p < c->end && *c->p != '\n' && *c->p != '\r')
        c->p++;
    end_line(c);
}

/* True when the line at c holds nothing but blanks (pandas skips it). */
static int blank_line(const cursor *c)
{
    const char *p = c->p;
    while (p < c->end && (*p == ' ' || *p == '\t'))
        p++;
    return p >= c->end || *p == '\n' || *p == '\r';
}

/* Parses "user SEP item SEP rating SEP timestamp" lines (any separator
 * string; LF or CRLF endings; lines of blanks skipped; the first skip_header
 * lines skipped).  Fields may be in double quotes and have blanks (space,
 * tab: unless the separator) around them, as pandas reads them.  Extra
 * trailing fields are an error.  Writes at most cap rows and the row count
 * to *n_rows. */
rmf_status rmf_parse_ratings(const char *buf, int64_t len, const char *sep,
                             int64_t skip_header, int64_t cap,
                             int64_t *user, int64_t *item, double *rating,
                             int64_t *timestamp, int64_t *n_rows,
                             rmf_error *err)
{
    size_t sep_len = strlen(sep);
    if (sep_len == 0)
        return rmf_fail(err, RMF_ERR_VALUE, "sep must not be empty");
    cursor c = {buf, buf + len, 1};
    for (int64_t h = 0; h < skip_header && c.p < c.end; h++)
        skip_line(&c);

    int64_t n = 0;
    rmf_status st;
    rmf_stop *stop = rmf_stop_here();
    while (c.p < c.end) {
        if ((c.line & 65535) == 0 && rmf_stopping(stop))
            return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted");
        if (blank_line(&c)) {
            skip_line(&c);
            continue;
        }
        if (n >= cap)
            return rmf_fail(err, RMF_ERR_VALUE, "more rows than the capacity %lld", (long long)cap);
        if ((st = parse_field(&c, sep, 0, &user[n], "user id", err)) != RMF_OK) return st;
        if ((st = expect_sep(&c, sep, sep_len, "the user id", err)) != RMF_OK) return st;
        if ((st = parse_field(&c, sep, 0, &item[n], "item id", err)) != RMF_OK) return st;
        if ((st = expect_sep(&c, sep, sep_len, "the item id", err)) != RMF_OK) return st;
        if ((st = parse_field(&c, sep, 1, &rating[n], "rating", err)) != RMF_OK) return st;
        if ((st = expect_sep(&c, sep, sep_len, "the rating", err)) != RMF_OK) return st;
        if ((st = parse_field(&c, sep, 0, &timestamp[n], "timestamp", err)) != RMF_OK) return st;
        if (!at_line_end(&c))
            return rmf_fail(err, RMF_ERR_PARSE,
                            "line %lld: unexpected text after the timestamp: '%.*s'",
                            (long long)c.line, quote_len(c.p, c.end), c.p);
        end_line(&c);
        n++;
    }
    *n_rows = n;
    return RMF_OK;
}
