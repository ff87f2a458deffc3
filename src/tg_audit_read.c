/*
 * The chain verifier's strict reading of an audit record line: one pass
 * of our own over the bytes, nothing allocated, no JSON library.
 *
 * cJSON, which read the line before, takes more than JSON: any byte up
 * to the space as white space (NUL and other controls too), raw control
 * bytes and invalid UTF-8 in strings, numbers strtod() takes (+1, 01),
 * a BOM before the object; it keeps the first of two keys where jq and
 * Python keep the last, and cuts a string at "\u0000".  Each of these
 * let a line say one thing to the verifier and another, or nothing, to
 * the JSON readers an audit is reviewed with (jq stops at a line it
 * cannot parse, and shows nothing after it).  Only the compact JSON the
 * gateway writes is read here; everything else is named and refused.
 */

#include <stdio.h>
#include <string.h>

#include "tg_audit.h"
#include "tg_audit_read.h"
#include "tg_escape.h"


typedef struct {
    const unsigned char  *start;
    const unsigned char  *p;
    const unsigned char  *end;
    char                  msg[TG_AUDIT_READ_ERR];
} tg_read_t;


/* a key of an object, decoded, to find it again */
typedef struct {
    unsigned char         name[TG_AUDIT_READ_KEY];
    size_t                len;
} tg_read_key_t;


/* the members of the record itself that the chain looks at */
typedef struct {
    unsigned              has_prev:1;
    unsigned              has_decision:1;
    unsigned              prev_string:1;
    unsigned              decision_string:1;
    size_t                prev_len;
    size_t                decision_len;
    unsigned char         prev[64];
    unsigned char         decision[15];
    const unsigned char  *prev_at;          /* the values, for messages */
    const unsigned char  *decision_at;
    const unsigned char  *instances;        /* its '[' */
    const unsigned char  *instances_end;    /* after its ']' */
    const unsigned char  *body_sha256;      /* its '"' */
} tg_read_top_t;


static tg_rc_t tg_read_value(tg_read_t *r, int depth, unsigned char *dst,
    size_t size, size_t *len);
static tg_rc_t tg_read_object(tg_read_t *r, int depth, tg_read_top_t *top);
static tg_rc_t tg_read_array(tg_read_t *r, int depth);
static tg_rc_t tg_read_string(tg_read_t *r, unsigned char *dst, size_t size,
    size_t *len);
static tg_rc_t tg_read_escape(tg_read_t *r, unsigned char *dst, size_t size,
    size_t *len);
static tg_rc_t tg_read_number(tg_read_t *r);
static tg_rc_t tg_read_literal(tg_read_t *r, const char *lit, size_t n);
static tg_rc_t tg_read_unexpected(tg_read_t *r);
static tg_rc_t tg_read_fail(tg_read_t *r, tg_rc_t rc, const char *fmt,
    const void *key, size_t key_len);
static void tg_read_top(tg_read_top_t *top, const tg_read_key_t *key,
    const unsigned char *value, const unsigned char *value_end,
    const unsigned char *text, size_t len);
static tg_rc_t tg_read_check(tg_read_t *r, const tg_read_top_t *top,
    const tg_audit_digests_t *d, tg_audit_line_t *l);
static void tg_read_put(unsigned char *dst, size_t size, size_t *len,
    const unsigned char *src, size_t n);


tg_rc_t
tg_audit_read_line(const unsigned char *line, size_t len, tg_audit_line_t *l,
    char *err, size_t errlen)
{
    tg_rc_t        rc;
    tg_read_t      r;
    tg_read_top_t  top;

    memset(&r, 0, sizeof(tg_read_t));
    memset(&top, 0, sizeof(tg_read_top_t));

    if (len == 0 || line[len - 1] != '\n') {
        rc = tg_read_fail(&r, TG_ERR_ARG, "no final newline", NULL, 0);
        goto done;
    }

    r.start = line;
    r.p = line;
    r.end = line + len - 1;

    if (r.p == r.end) {
        rc = tg_read_fail(&r, TG_ERR_SYNTAX, "empty line", NULL, 0);
        goto done;
    }

    if (r.end - r.p >= 3 && r.p[0] == 0xef && r.p[1] == 0xbb
        && r.p[2] == 0xbf)
    {
        rc = tg_read_fail(&r, TG_ERR_BOM, "byte order mark", NULL, 0);
        goto done;
    }

    if (*r.p != '{') {
        rc = (*r.p == ' ' || *r.p == '\t' || *r.p == '\r')
             ? tg_read_unexpected(&r)
             : tg_read_fail(&r, TG_ERR_NOT_OBJECT, "not a JSON object", NULL,
                            0);
        goto done;
    }

    rc = tg_read_object(&r, 1, &top);
    if (rc != TG_OK) {
        goto done;
    }

    if (r.p != r.end) {
        rc = tg_read_fail(&r, TG_ERR_TRAILING,
                          (*r.p == '\r' && r.p + 1 == r.end)
                          ? "a carriage return before the newline"
                          : "data after the object", NULL, 0);
        goto done;
    }

    rc = tg_audit_line_digests(line, len, &l->digests);
    if (rc != TG_OK) {
        r.p = r.start;
        rc = tg_read_fail(&r, rc, "SHA-256 failed", NULL, 0);
        goto done;
    }

    rc = tg_read_check(&r, &top, &l->digests, l);

done:

    if (err != NULL && errlen > 0) {
        if (rc == TG_OK) {
            err[0] = '\0';

        } else {
            snprintf(err, errlen, "%s", r.msg);
        }
    }

    return rc;
}


/*
 * A value at depth (the record itself is at 1).  A string is decoded to
 * dst, its first size bytes, when dst is not NULL, and its decoded length
 * goes to *len.
 */

static tg_rc_t
tg_read_value(tg_read_t *r, int depth, unsigned char *dst, size_t size,
    size_t *len)
{
    if (r->p == r->end) {
        return tg_read_unexpected(r);
    }

    switch (*r->p) {

    case '{':
    case '[':
        if (depth >= TG_AUDIT_READ_DEPTH) {
            return tg_read_fail(r, TG_ERR_DEPTH, "nesting deeper than %zu",
                                NULL, TG_AUDIT_READ_DEPTH);
        }

        if (*r->p == '{') {
            return tg_read_object(r, depth + 1, NULL);
        }

        return tg_read_array(r, depth + 1);

    case '"':
        return tg_read_string(r, dst, size, len);

    case 't':
        return tg_read_literal(r, "true", 4);

    case 'f':
        return tg_read_literal(r, "false", 5);

    case 'n':
        return tg_read_literal(r, "null", 4);

    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
            return tg_read_number(r);
        }

        return tg_read_unexpected(r);
    }
}


/* an object at r->p; top is not NULL for the record itself */

static tg_rc_t
tg_read_object(tg_read_t *r, int depth, tg_read_top_t *top)
{
    size_t                i, n, vlen;
    tg_rc_t               rc;
    tg_read_key_t        *key;
    const unsigned char  *at, *value;
    unsigned char         text[64];
    tg_read_key_t         keys[TG_AUDIT_READ_KEYS];

    r->p++;

    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return TG_OK;
    }

    for (n = 0; /* void */; n++) {
        if (r->p == r->end || *r->p != '"') {
            return tg_read_unexpected(r);
        }

        at = r->p;

        if (n == TG_AUDIT_READ_KEYS) {
            return tg_read_fail(r, TG_ERR_SYNTAX,
                                "more than %zu keys in an object", NULL,
                                TG_AUDIT_READ_KEYS);
        }

        key = &keys[n];

        rc = tg_read_string(r, key->name, sizeof(key->name), &key->len);
        if (rc != TG_OK) {
            return rc;
        }

        if (key->len > sizeof(key->name)) {
            r->p = at;
            return tg_read_fail(r, TG_ERR_STRING_TOO_LONG,
                                "a key longer than %zu bytes", NULL,
                                TG_AUDIT_READ_KEY);
        }

        for (i = 0; i < n; i++) {
            if (keys[i].len == key->len
                && memcmp(keys[i].name, key->name, key->len) == 0)
            {
                r->p = at;
                return tg_read_fail(r, TG_ERR_DUP_KEY, "duplicate key",
                                    key->name, key->len);
            }
        }

        if (r->p == r->end || *r->p != ':') {
            return tg_read_unexpected(r);
        }

        r->p++;
        value = r->p;
        vlen = 0;

        rc = tg_read_value(r, depth, (top != NULL) ? text : NULL,
                           sizeof(text), &vlen);
        if (rc != TG_OK) {
            return rc;
        }

        if (top != NULL) {
            tg_read_top(top, key, value, r->p, text, vlen);
        }

        if (r->p == r->end) {
            return tg_read_unexpected(r);
        }

        if (*r->p == '}') {
            r->p++;
            return TG_OK;
        }

        if (*r->p != ',') {
            return tg_read_unexpected(r);
        }

        r->p++;
    }
}


static tg_rc_t
tg_read_array(tg_read_t *r, int depth)
{
    tg_rc_t  rc;

    r->p++;

    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return TG_OK;
    }

    for ( ;; ) {
        rc = tg_read_value(r, depth, NULL, 0, NULL);
        if (rc != TG_OK) {
            return rc;
        }

        if (r->p == r->end) {
            return tg_read_unexpected(r);
        }

        if (*r->p == ']') {
            r->p++;
            return TG_OK;
        }

        if (*r->p != ',') {
            return tg_read_unexpected(r);
        }

        r->p++;
    }
}


/*
 * A string at r->p, checked; its decoded bytes go to dst (the first size
 * of them) when dst is not NULL, and their number to *len when len is
 * not NULL.
 */

static tg_rc_t
tg_read_string(tg_read_t *r, unsigned char *dst, size_t size, size_t *len)
{
    size_t          n, local;
    tg_rc_t         rc;
    unsigned char   c;

    if (len == NULL) {
        len = &local;
    }

    if (dst == NULL) {
        size = 0;
    }

    *len = 0;
    r->p++;

    for ( ;; ) {
        n = tg_json_plain_len(r->p, (size_t) (r->end - r->p));
        tg_read_put(dst, size, len, r->p, n);
        r->p += n;

        if (r->p == r->end) {
            return tg_read_fail(r, TG_ERR_SYNTAX, "unterminated string",
                                NULL, 0);
        }

        c = *r->p;

        if (c == '"') {
            r->p++;
            return TG_OK;
        }

        if (c == '\\') {
            rc = tg_read_escape(r, dst, size, len);
            if (rc != TG_OK) {
                return rc;
            }

            continue;
        }

        if (c < 0x20 || c == 0x7f) {
            return tg_read_fail(r, TG_ERR_CTRL_CHAR,
                                "a raw control byte in a string", NULL, 0);
        }

        n = tg_utf8_seq_len(r->p, (size_t) (r->end - r->p));

        if (n == 0) {
            return tg_read_fail(r, TG_ERR_UTF8, "invalid UTF-8", NULL, 0);
        }

        /*
         * C1 controls, U+2028 and U+2029, which readers that split lines
         * by Unicode's rules take for line breaks: the gateway escapes
         * them (tg_escape.h), as it escapes DEL
         */

        if ((n == 2 && c == 0xc2 && r->p[1] <= 0x9f)
            || (n == 3 && c == 0xe2 && r->p[1] == 0x80
                && (r->p[2] == 0xa8 || r->p[2] == 0xa9)))
        {
            return tg_read_fail(r, TG_ERR_CTRL_CHAR, "a raw control character"
                                " or line separator in a string", NULL, 0);
        }

        tg_read_put(dst, size, len, r->p, n);
        r->p += n;
    }
}


/* one escape at r->p, checked and decoded as tg_read_string() says */

static tg_rc_t
tg_read_escape(tg_read_t *r, unsigned char *dst, size_t size, size_t *len)
{
    size_t         k;
    tg_rc_t        rc;
    unsigned       u;
    unsigned char  buf[4];

    if (r->end - r->p < 2) {
        return tg_read_fail(r, TG_ERR_SYNTAX, "unterminated string", NULL, 0);
    }

    rc = tg_json_unescape(r->p, r->end, &u, &k);

    if (rc == TG_ERR_UTF8) {
        return tg_read_fail(r, TG_ERR_UTF8, "unpaired surrogate escape",
                            NULL, 0);
    }

    if (rc != TG_OK) {
        return tg_read_fail(r, TG_ERR_SYNTAX, "invalid escape", NULL, 0);
    }

    r->p += k;

    /* the code point as UTF-8 */

    k = tg_utf8_put(u, buf);

    tg_read_put(dst, size, len, buf, k);

    return TG_OK;
}


/*
 * RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and short:
 * the gateway writes 64-bit integers, while Python's json refuses an
 * integer of more than 4300 digits that jq reads, so a longer number
 * would stop one reader of a line the other reads.
 */

static tg_rc_t
tg_read_number(tg_read_t *r)
{
    size_t  n;

    n = tg_json_number_len(r->p, r->end);

    if (n == 0) {
        return tg_read_fail(r, TG_ERR_SYNTAX, "invalid number", NULL, 0);
    }

    if (n > TG_AUDIT_READ_NUMBER) {
        return tg_read_fail(r, TG_ERR_SYNTAX, "a number longer than %zu bytes",
                            NULL, TG_AUDIT_READ_NUMBER);
    }

    r->p += n;

    return TG_OK;
}


static tg_rc_t
tg_read_literal(tg_read_t *r, const char *lit, size_t n)
{
    if ((size_t) (r->end - r->p) < n || memcmp(r->p, lit, n) != 0) {
        return tg_read_unexpected(r);
    }

    r->p += n;

    return TG_OK;
}


/* what is at r->p where something else was due */

static tg_rc_t
tg_read_unexpected(tg_read_t *r)
{
    if (r->p == r->end) {
        return tg_read_fail(r, TG_ERR_SYNTAX, "the line ends too soon", NULL,
                            0);
    }

    if (*r->p == ' ' || *r->p == '\t' || *r->p == '\r') {
        return tg_read_fail(r, TG_ERR_SYNTAX, "white space outside a string",
                            NULL, 0);
    }

    return tg_read_fail(r, TG_ERR_SYNTAX, "unexpected byte", NULL, 0);
}


/*
 * The message, " at column N" after it.  fmt takes one %zu, given as
 * key_len, when key is NULL; a key is quoted after fmt when all its
 * bytes are printable ASCII other than '"' and '\\'.
 */

static tg_rc_t
tg_read_fail(tg_read_t *r, tg_rc_t rc, const char *fmt, const void *key,
    size_t key_len)
{
    int                   n;
    size_t                i, col;
    const unsigned char  *k;

    col = (r->start != NULL) ? (size_t) (r->p - r->start) + 1 : 1;

    if (key == NULL) {
        n = snprintf(r->msg, sizeof(r->msg), fmt, key_len);

    } else {
        k = key;

        for (i = 0; i < key_len; i++) {
            if (k[i] < 0x20 || k[i] > 0x7e || k[i] == '"' || k[i] == '\\') {
                break;
            }
        }

        if (i == key_len) {
            n = snprintf(r->msg, sizeof(r->msg), "%s \"%.*s\"", fmt,
                         (int) key_len, (const char *) key);

        } else {
            n = snprintf(r->msg, sizeof(r->msg), "%s", fmt);
        }
    }

    if (n >= 0 && (size_t) n < sizeof(r->msg)) {
        snprintf(r->msg + n, sizeof(r->msg) - n, " at column %zu", col);
    }

    return rc;
}


/* a member of the record itself: the ones the chain looks at */

static void
tg_read_top(tg_read_top_t *top, const tg_read_key_t *key,
    const unsigned char *value, const unsigned char *value_end,
    const unsigned char *text, size_t len)
{
    size_t  n;

    n = (len < sizeof(top->prev)) ? len : sizeof(top->prev);

    if (key->len == 4 && memcmp(key->name, "prev", 4) == 0) {
        top->has_prev = 1;
        top->prev_at = value;
        top->prev_string = (*value == '"');
        top->prev_len = len;
        memcpy(top->prev, text, n);

    } else if (key->len == 8 && memcmp(key->name, "decision", 8) == 0) {
        top->has_decision = 1;
        top->decision_at = value;
        top->decision_string = (*value == '"');
        top->decision_len = len;
        n = (len < sizeof(top->decision)) ? len : sizeof(top->decision);
        memcpy(top->decision, text, n);

    } else if (key->len == 9 && memcmp(key->name, "instances", 9) == 0) {
        if (*value == '[') {
            top->instances = value;
            top->instances_end = value_end;
        }

    } else if (key->len == 11 && memcmp(key->name, "body_sha256", 11) == 0) {
        if (*value == '"') {
            top->body_sha256 = value;
        }
    }
}


/* what the verifier needs of the record, once the line is JSON */

static tg_rc_t
tg_read_check(tg_read_t *r, const tg_read_top_t *top,
    const tg_audit_digests_t *d, tg_audit_line_t *l)
{
    size_t      i;
    const char  *name;

    r->p = r->start;

    if (!top->has_prev) {
        return tg_read_fail(r, TG_ERR_MISSING_KEY, "no \"prev\" link", NULL,
                            0);
    }

    r->p = top->prev_at;

    for (i = 0; top->prev_string && i < top->prev_len && i < 64; i++) {
        if (!((top->prev[i] >= '0' && top->prev[i] <= '9')
              || (top->prev[i] >= 'a' && top->prev[i] <= 'f')))
        {
            break;
        }
    }

    if (!top->prev_string || top->prev_len != 64 || i != 64) {
        return tg_read_fail(r, TG_ERR_TYPE,
                            "\"prev\" is not 64 lowercase hex digits", NULL,
                            0);
    }

    r->p = r->start;

    if (!top->has_decision) {
        return tg_read_fail(r, TG_ERR_MISSING_KEY, "no \"decision\"", NULL,
                            0);
    }

    r->p = top->decision_at;
    name = NULL;

    if (top->decision_string && top->decision_len < sizeof(l->decision)) {
        for (i = TG_DECISION_ALLOW; i <= TG_DECISION_WOULD_DENY; i++) {
            name = tg_decision_name((tg_decision_t) i);

            if (strlen(name) == top->decision_len
                && memcmp(name, top->decision, top->decision_len) == 0)
            {
                break;
            }

            name = NULL;
        }
    }

    if (name == NULL) {
        return tg_read_fail(r, TG_ERR_TYPE, "\"decision\" is not one the"
                            " gateway writes", NULL, 0);
    }

    /*
     * The brief form is found by its bytes, the record's members by the
     * JSON: they must be the same, or the verifier would check items
     * and a digest a reader does not take for the record's.
     */

    if (d->brief[0] != '\0'
        && (top->instances == NULL || top->body_sha256 == NULL
            || d->items != (size_t) (top->instances - r->start) + 1
            || d->items_end != (size_t) (top->instances_end - r->start) - 1
            || d->body_sha256 != (size_t) (top->body_sha256 - r->start) + 1))
    {
        r->p = r->start + d->items;
        return tg_read_fail(r, TG_ERR_SYNTAX, "the items its link leaves"
                            " out are not its own \"instances\"", NULL, 0);
    }

    memcpy(l->prev, top->prev, 64);
    l->prev[64] = '\0';
    memcpy(l->decision, name, top->decision_len + 1);

    return TG_OK;
}



/* n decoded bytes: copied while dst has room, counted all the same */

static void
tg_read_put(unsigned char *dst, size_t size, size_t *len,
    const unsigned char *src, size_t n)
{
    if (dst != NULL && *len < size) {
        memcpy(dst + *len, src, (size - *len < n) ? size - *len : n);
    }

    *len += n;
}
