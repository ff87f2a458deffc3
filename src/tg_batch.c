/*
 * The strict validator of an "upgrade in batches" body.
 *
 * Two stages.  First a single pass of our own over the raw bytes checks
 * what cJSON does not: BOM, UTF-8 (RFC 3629), raw control bytes and
 * \u0000 in strings, lone surrogate escapes, strict RFC 8259 numbers and
 * literals, nesting depth, and that only whitespace follows the document.
 * Only bytes that passed it reach cJSON, whose tree is then walked for
 * the schema: exact (case-sensitive) keys, no duplicates, types, string
 * contents, batch size and repeated instances.
 *
 * Byte offsets in messages are 0-based and point at the offending byte,
 * or at the start of the offending number, literal, escape or UTF-8
 * sequence; at the body's length when it ends too soon.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tg_batch.h"
#include "tg_escape.h"


/* object > array > object: the deepest the schema goes */
#define TG_BATCH_DEPTH_MAX  3

/*
 * cJSON releases before the fix of CVE-2023-26819 copy at most 63 bytes of
 * a number and then fail on the rest; no number is valid in this schema,
 * so a longer one is refused here whichever cJSON we are linked with.
 */
#define TG_BATCH_NUMBER_MAX 63

/* bytes of a key name quoted in a message, before "..." */
#define TG_BATCH_KEY_MAX    64

#define TG_KEY_INFOS        "databases_instance_infos"
#define TG_KEY_DELAY        "delay"
#define TG_KEY_ID           "instance_id"
#define TG_KEY_VERSION      "current_version"

#define tg_lit_len(s)       (sizeof(s) - 1)


typedef struct {
    const unsigned char  *start;
    const unsigned char  *p;
    const unsigned char  *end;
    const char           *what;      /* the message, "... at byte N" */
} tg_scan_t;


typedef struct {
    tg_batch_t           *b;
    char                 *err;
    size_t                errlen;
    size_t                used;      /* bytes of b->scratch taken */
} tg_walk_t;


static tg_rc_t tg_scan(tg_scan_t *s);
static tg_rc_t tg_scan_value(tg_scan_t *s, int depth);
static tg_rc_t tg_scan_object(tg_scan_t *s, int depth);
static tg_rc_t tg_scan_array(tg_scan_t *s, int depth);
static tg_rc_t tg_scan_after(tg_scan_t *s, unsigned char close, int *more);
static tg_rc_t tg_scan_string(tg_scan_t *s);
static tg_rc_t tg_scan_escape(tg_scan_t *s);
static tg_rc_t tg_scan_number(tg_scan_t *s);
static tg_rc_t tg_scan_literal(tg_scan_t *s, const char *lit, size_t len);
static tg_rc_t tg_scan_unexpected(tg_scan_t *s);
static tg_rc_t tg_scan_fail(tg_scan_t *s, tg_rc_t rc, const char *what);
static void tg_scan_ws(tg_scan_t *s);
static int tg_scan_hex4(const unsigned char *p, unsigned *v);

static tg_rc_t tg_walk_root(tg_walk_t *w, cJSON *root);
static tg_rc_t tg_walk_items(tg_walk_t *w, cJSON *infos);
static tg_rc_t tg_walk_item(tg_walk_t *w, cJSON *item, size_t i);
static tg_rc_t tg_walk_string(tg_walk_t *w, cJSON *v, size_t i,
    const char *name, tg_str_t *out);
static tg_rc_t tg_walk_delay(tg_walk_t *w, cJSON *delay);
static tg_rc_t tg_check_dup_instances(tg_walk_t *w);
static int tg_instance_cmp(const void *one, const void *two);
static void tg_quote_key(char *dst, const char *key);
static tg_rc_t tg_errf(char *err, size_t errlen, tg_rc_t rc,
    const char *fmt, ...);


static const char  tg_delay_true[] = "\"true\"";
static const char  tg_delay_false[] = "\"false\"";
static const char  tg_head[] = "{\"" TG_KEY_INFOS "\":[";
static const char  tg_item_id[] = "{\"" TG_KEY_ID "\":\"";
static const char  tg_item_version[] = "\",\"" TG_KEY_VERSION "\":\"";
static const char  tg_item_end[] = "\"}";
static const char  tg_tail[] = "],\"" TG_KEY_DELAY "\":";


tg_rc_t
tg_batch_parse(tg_batch_t *b, const unsigned char *body, size_t len,
    char *err, size_t errlen)
{
    cJSON        *root;
    tg_rc_t       rc;
    tg_scan_t     s;
    tg_walk_t     w;
    const char   *parse_end;

    root = NULL;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';

    } else {
        errlen = 0;
    }

    if (b == NULL || b->items == NULL || b->max_items == 0
        || b->max_items > TG_BATCH_MAX_ITEMS || b->scratch == NULL
        || (body == NULL && len > 0))
    {
        return tg_errf(err, errlen, TG_ERR_ARG, "invalid argument");
    }

    b->nitems = 0;
    b->delay = 0;
    b->delay_kind = TG_DELAY_STRING;

    if (b->scratch_size < len) {
        return tg_errf(err, errlen, TG_ERR_BUF_TOO_SMALL,
                       "scratch buffer of %zu bytes for a body of %zu",
                       b->scratch_size, len);
    }

    /* a zero-length body may come as NULL: no pointer arithmetic on it */

    if (len == 0) {
        return tg_errf(err, errlen, TG_ERR_EMPTY_BODY, "empty body");
    }

    s.start = body;
    s.p = body;
    s.end = body + len;
    s.what = NULL;

    rc = tg_scan(&s);

    if (rc != TG_OK) {
        if (rc == TG_ERR_EMPTY_BODY || rc == TG_ERR_BOM
            || rc == TG_ERR_NOT_OBJECT)
        {
            return tg_errf(err, errlen, rc, "%s", s.what);
        }

        return tg_errf(err, errlen, rc, "%s at byte %zu", s.what,
                       (size_t) (s.p - s.start));
    }

    /* s.p is now right after the top-level object's closing brace */

    parse_end = NULL;
    root = cJSON_ParseWithLengthOpts((const char *) body, len, &parse_end,
                                     0);

    if (root == NULL) {
        rc = tg_errf(err, errlen, TG_ERR_NOMEM,
                     "JSON parser failed (out of memory)");
        goto done;
    }

    if (parse_end != (const char *) s.p || !cJSON_IsObject(root)) {
        /* cannot happen: the scan is stricter than cJSON */
        rc = tg_errf(err, errlen, TG_ERR_SYNTAX,
                     "JSON parsers disagree at byte %zu",
                     (size_t) (s.p - s.start));
        goto done;
    }

    w.b = b;
    w.err = err;
    w.errlen = errlen;
    w.used = 0;

    rc = tg_walk_root(&w, root);

done:

    cJSON_Delete(root);

    if (rc != TG_OK) {
        b->nitems = 0;
    }

    return rc;
}


size_t
tg_batch_serialized_len(const tg_batch_t *b)
{
    size_t                i, len;
    const tg_instance_t  *it;

    len = tg_lit_len(tg_head) + tg_lit_len(tg_tail) + 1;

    for (i = 0; i < b->nitems; i++) {
        it = &b->items[i];

        len += (i > 0) + tg_lit_len(tg_item_id)
               + tg_json_escaped_len(it->instance_id.data,
                                     it->instance_id.len)
               + tg_lit_len(tg_item_version)
               + tg_json_escaped_len(it->current_version.data,
                                     it->current_version.len)
               + tg_lit_len(tg_item_end);
    }

    if (b->delay_kind == TG_DELAY_BOOL) {
        len += b->delay ? tg_lit_len("true") : tg_lit_len("false");

    } else {
        len += b->delay ? tg_lit_len(tg_delay_true)
                        : tg_lit_len(tg_delay_false);
    }

    return len;
}


unsigned char *
tg_batch_serialize(const tg_batch_t *b, unsigned char *dst)
{
    size_t                i;
    const char           *delay;
    const tg_instance_t  *it;

    memcpy(dst, tg_head, tg_lit_len(tg_head));
    dst += tg_lit_len(tg_head);

    for (i = 0; i < b->nitems; i++) {
        it = &b->items[i];

        if (i > 0) {
            *dst++ = ',';
        }

        memcpy(dst, tg_item_id, tg_lit_len(tg_item_id));
        dst += tg_lit_len(tg_item_id);

        dst = tg_json_escape(dst, it->instance_id.data, it->instance_id.len);

        memcpy(dst, tg_item_version, tg_lit_len(tg_item_version));
        dst += tg_lit_len(tg_item_version);

        dst = tg_json_escape(dst, it->current_version.data,
                             it->current_version.len);

        memcpy(dst, tg_item_end, tg_lit_len(tg_item_end));
        dst += tg_lit_len(tg_item_end);
    }

    memcpy(dst, tg_tail, tg_lit_len(tg_tail));
    dst += tg_lit_len(tg_tail);

    if (b->delay_kind == TG_DELAY_BOOL) {
        delay = b->delay ? "true" : "false";

    } else {
        delay = b->delay ? tg_delay_true : tg_delay_false;
    }

    i = strlen(delay);
    memcpy(dst, delay, i);
    dst += i;

    *dst++ = '}';

    return dst;
}


/* the syntax scan */

static tg_rc_t
tg_scan(tg_scan_t *s)
{
    tg_rc_t               rc;
    const unsigned char  *value;

    if (s->end - s->p >= 3
        && s->p[0] == 0xef && s->p[1] == 0xbb && s->p[2] == 0xbf)
    {
        return tg_scan_fail(s, TG_ERR_BOM, "byte order mark");
    }

    tg_scan_ws(s);

    if (s->p == s->end) {
        return tg_scan_fail(s, TG_ERR_EMPTY_BODY, "empty body");
    }

    value = s->p;

    rc = tg_scan_value(s, 0);
    if (rc != TG_OK) {
        return rc;
    }

    if (*value != '{') {
        return tg_scan_fail(s, TG_ERR_NOT_OBJECT,
                            "top level is not an object");
    }

    value = s->p;
    tg_scan_ws(s);

    if (s->p != s->end) {
        return tg_scan_fail(s, TG_ERR_TRAILING,
                            "data after the JSON document");
    }

    s->p = value;

    return TG_OK;
}


static tg_rc_t
tg_scan_value(tg_scan_t *s, int depth)
{
    if (s->p == s->end) {
        return tg_scan_unexpected(s);
    }

    switch (*s->p) {

    case '{':
    case '[':
        if (depth >= TG_BATCH_DEPTH_MAX) {
            return tg_scan_fail(s, TG_ERR_DEPTH, "nesting deeper than 3");
        }

        if (*s->p == '{') {
            return tg_scan_object(s, depth + 1);
        }

        return tg_scan_array(s, depth + 1);

    case '"':
        return tg_scan_string(s);

    case 't':
        return tg_scan_literal(s, "true", 4);

    case 'f':
        return tg_scan_literal(s, "false", 5);

    case 'n':
        return tg_scan_literal(s, "null", 4);

    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
            return tg_scan_number(s);
        }

        return tg_scan_unexpected(s);
    }
}


static tg_rc_t
tg_scan_object(tg_scan_t *s, int depth)
{
    int      more;
    tg_rc_t  rc;

    s->p++;
    tg_scan_ws(s);

    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return TG_OK;
    }

    for ( ;; ) {
        if (s->p == s->end || *s->p != '"') {
            return tg_scan_unexpected(s);
        }

        rc = tg_scan_string(s);
        if (rc != TG_OK) {
            return rc;
        }

        tg_scan_ws(s);

        if (s->p == s->end || *s->p != ':') {
            return tg_scan_unexpected(s);
        }

        s->p++;
        tg_scan_ws(s);

        rc = tg_scan_value(s, depth);
        if (rc != TG_OK) {
            return rc;
        }

        rc = tg_scan_after(s, '}', &more);
        if (rc != TG_OK || !more) {
            return rc;
        }
    }
}


static tg_rc_t
tg_scan_array(tg_scan_t *s, int depth)
{
    int      more;
    tg_rc_t  rc;

    s->p++;
    tg_scan_ws(s);

    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return TG_OK;
    }

    for ( ;; ) {
        rc = tg_scan_value(s, depth);
        if (rc != TG_OK) {
            return rc;
        }

        rc = tg_scan_after(s, ']', &more);
        if (rc != TG_OK || !more) {
            return rc;
        }
    }
}


/*
 * After a member or an element: a ',' means another follows (*more), the
 * closing byte ends the object or array.
 */

static tg_rc_t
tg_scan_after(tg_scan_t *s, unsigned char close, int *more)
{
    tg_scan_ws(s);

    if (s->p == s->end) {
        return tg_scan_unexpected(s);
    }

    if (*s->p == close) {
        s->p++;
        *more = 0;
        return TG_OK;
    }

    if (*s->p != ',') {
        return tg_scan_unexpected(s);
    }

    s->p++;
    tg_scan_ws(s);
    *more = 1;

    return TG_OK;
}


static tg_rc_t
tg_scan_string(tg_scan_t *s)
{
    size_t         n;
    tg_rc_t        rc;
    unsigned char  c;

    s->p++;

    for ( ;; ) {
        if (s->p == s->end) {
            return tg_scan_fail(s, TG_ERR_SYNTAX, "unterminated string");
        }

        c = *s->p;

        if (c == '"') {
            s->p++;
            return TG_OK;
        }

        if (c < 0x20 || c == 0x7f) {
            return tg_scan_fail(s, TG_ERR_CTRL_CHAR, "control character");
        }

        if (c == '\\') {
            rc = tg_scan_escape(s);
            if (rc != TG_OK) {
                return rc;
            }

            continue;
        }

        if (c < 0x80) {
            s->p++;
            continue;
        }

        n = tg_utf8_seq_len(s->p, s->end - s->p);
        if (n == 0) {
            return tg_scan_fail(s, TG_ERR_UTF8, "invalid UTF-8");
        }

        s->p += n;
    }
}


static tg_rc_t
tg_scan_escape(tg_scan_t *s)
{
    unsigned  u, lo;

    if (s->end - s->p < 2) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "unterminated string");
    }

    switch (s->p[1]) {

    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        s->p += 2;
        return TG_OK;

    case 'u':
        break;

    default:
        return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid escape");
    }

    if (s->end - s->p < 6 || !tg_scan_hex4(s->p + 2, &u)) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid escape");
    }

    if (u == 0) {
        return tg_scan_fail(s, TG_ERR_NUL_ESCAPE, "\\u0000");
    }

    if (u >= 0xdc00 && u <= 0xdfff) {
        return tg_scan_fail(s, TG_ERR_UTF8, "unpaired surrogate escape");
    }

    if (u < 0xd800 || u > 0xdbff) {
        s->p += 6;
        return TG_OK;
    }

    /* a high surrogate: a low one must follow */

    if (s->end - s->p < 12 || s->p[6] != '\\' || s->p[7] != 'u'
        || !tg_scan_hex4(s->p + 8, &lo) || lo < 0xdc00 || lo > 0xdfff)
    {
        return tg_scan_fail(s, TG_ERR_UTF8, "unpaired surrogate escape");
    }

    s->p += 12;

    return TG_OK;
}


static tg_rc_t
tg_scan_number(tg_scan_t *s)
{
    const unsigned char  *p, *end, *digits;

    p = s->p;
    end = s->end;

    if (*p == '-') {
        p++;
    }

    if (p < end && *p == '0') {
        p++;

    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

    } else {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid number");
    }

    if (p < end && *p == '.') {
        digits = ++p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid number");
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        digits = p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid number");
        }
    }

    if (p - s->p > TG_BATCH_NUMBER_MAX) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "number longer than 63 bytes");
    }

    s->p = p;

    return TG_OK;
}


static tg_rc_t
tg_scan_literal(tg_scan_t *s, const char *lit, size_t len)
{
    if ((size_t) (s->end - s->p) < len || memcmp(s->p, lit, len) != 0) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid literal");
    }

    s->p += len;

    return TG_OK;
}


/* a byte that no rule of the grammar admits where it stands */

static tg_rc_t
tg_scan_unexpected(tg_scan_t *s)
{
    if (s->p == s->end) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "unexpected end of body");
    }

    if (*s->p >= 0x80 && tg_utf8_seq_len(s->p, s->end - s->p) == 0) {
        return tg_scan_fail(s, TG_ERR_UTF8, "invalid UTF-8");
    }

    return tg_scan_fail(s, TG_ERR_SYNTAX, "unexpected character");
}


static tg_rc_t
tg_scan_fail(tg_scan_t *s, tg_rc_t rc, const char *what)
{
    s->what = what;

    return rc;
}


static void
tg_scan_ws(tg_scan_t *s)
{
    while (s->p < s->end
           && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
               || *s->p == '\r'))
    {
        s->p++;
    }
}


static int
tg_scan_hex4(const unsigned char *p, unsigned *v)
{
    unsigned       i, d;
    unsigned char  c;

    *v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            d = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;

        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;

        } else {
            return 0;
        }

        *v = (*v << 4) | d;
    }

    return 1;
}


/* the schema walk over the cJSON tree */

static tg_rc_t
tg_walk_root(tg_walk_t *w, cJSON *root)
{
    char     key[TG_BATCH_KEY_MAX + 4];
    cJSON   *it, *infos, *delay;
    tg_rc_t  rc;

    infos = NULL;
    delay = NULL;

    /* keys first: a duplicate is refused before its value is looked at */

    for (it = root->child; it != NULL; it = it->next) {

        if (it->string != NULL && strcmp(it->string, TG_KEY_INFOS) == 0) {
            if (infos != NULL) {
                return tg_errf(w->err, w->errlen, TG_ERR_DUP_KEY,
                               "duplicate key \"" TG_KEY_INFOS "\"");
            }

            infos = it;

        } else if (it->string != NULL
                   && strcmp(it->string, TG_KEY_DELAY) == 0)
        {
            if (delay != NULL) {
                return tg_errf(w->err, w->errlen, TG_ERR_DUP_KEY,
                               "duplicate key \"" TG_KEY_DELAY "\"");
            }

            delay = it;

        } else {
            tg_quote_key(key, it->string);
            return tg_errf(w->err, w->errlen, TG_ERR_UNKNOWN_KEY,
                           "unknown key \"%s\"", key);
        }
    }

    if (infos == NULL) {
        return tg_errf(w->err, w->errlen, TG_ERR_MISSING_KEY,
                       "missing key \"" TG_KEY_INFOS "\"");
    }

    if (delay == NULL) {
        return tg_errf(w->err, w->errlen, TG_ERR_MISSING_KEY,
                       "missing key \"" TG_KEY_DELAY "\"");
    }

    rc = tg_walk_items(w, infos);
    if (rc != TG_OK) {
        return rc;
    }

    return tg_walk_delay(w, delay);
}


static tg_rc_t
tg_walk_items(tg_walk_t *w, cJSON *infos)
{
    cJSON   *it;
    size_t   i, n;
    tg_rc_t  rc;

    if (!cJSON_IsArray(infos)) {
        return tg_errf(w->err, w->errlen, TG_ERR_TYPE,
                       TG_KEY_INFOS ": not an array");
    }

    n = 0;

    for (it = infos->child; it != NULL; it = it->next) {
        n++;
    }

    if (n == 0) {
        return tg_errf(w->err, w->errlen, TG_ERR_BATCH_EMPTY,
                       TG_KEY_INFOS ": no items");
    }

    if (n > w->b->max_items) {
        return tg_errf(w->err, w->errlen, TG_ERR_BATCH_TOO_LARGE,
                       TG_KEY_INFOS ": %zu items, at most %zu",
                       n, w->b->max_items);
    }

    i = 0;

    for (it = infos->child; it != NULL; it = it->next) {
        rc = tg_walk_item(w, it, i);
        if (rc != TG_OK) {
            return rc;
        }

        i++;
    }

    w->b->nitems = n;

    return tg_check_dup_instances(w);
}


static tg_rc_t
tg_walk_item(tg_walk_t *w, cJSON *item, size_t i)
{
    char            key[TG_BATCH_KEY_MAX + 4];
    cJSON          *f, *id, *version;
    tg_rc_t         rc;
    tg_instance_t  *inst;

    if (!cJSON_IsObject(item)) {
        return tg_errf(w->err, w->errlen, TG_ERR_TYPE,
                       TG_KEY_INFOS "[%zu]: not an object", i);
    }

    id = NULL;
    version = NULL;

    for (f = item->child; f != NULL; f = f->next) {

        if (f->string != NULL && strcmp(f->string, TG_KEY_ID) == 0) {
            if (id != NULL) {
                return tg_errf(w->err, w->errlen, TG_ERR_DUP_KEY,
                               TG_KEY_INFOS "[%zu]: duplicate key \""
                               TG_KEY_ID "\"", i);
            }

            id = f;

        } else if (f->string != NULL
                   && strcmp(f->string, TG_KEY_VERSION) == 0)
        {
            if (version != NULL) {
                return tg_errf(w->err, w->errlen, TG_ERR_DUP_KEY,
                               TG_KEY_INFOS "[%zu]: duplicate key \""
                               TG_KEY_VERSION "\"", i);
            }

            version = f;

        } else {
            tg_quote_key(key, f->string);
            return tg_errf(w->err, w->errlen, TG_ERR_UNKNOWN_KEY,
                           TG_KEY_INFOS "[%zu]: unknown key \"%s\"",
                           i, key);
        }
    }

    if (id == NULL) {
        return tg_errf(w->err, w->errlen, TG_ERR_MISSING_KEY,
                       TG_KEY_INFOS "[%zu]: missing key \"" TG_KEY_ID "\"",
                       i);
    }

    if (version == NULL) {
        return tg_errf(w->err, w->errlen, TG_ERR_MISSING_KEY,
                       TG_KEY_INFOS "[%zu]: missing key \""
                       TG_KEY_VERSION "\"", i);
    }

    inst = &w->b->items[i];

    rc = tg_walk_string(w, id, i, TG_KEY_ID, &inst->instance_id);
    if (rc != TG_OK) {
        return rc;
    }

    return tg_walk_string(w, version, i, TG_KEY_VERSION,
                          &inst->current_version);
}


static tg_rc_t
tg_walk_string(tg_walk_t *w, cJSON *v, size_t i, const char *name,
    tg_str_t *out)
{
    size_t                k, n;
    unsigned char        *dst;
    const unsigned char  *p;

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return tg_errf(w->err, w->errlen, TG_ERR_TYPE,
                       TG_KEY_INFOS "[%zu].%s: not a string", i, name);
    }

    /* the scan refused \u0000 and raw NUL: strlen() is the decoded length */

    p = (const unsigned char *) v->valuestring;
    n = strlen(v->valuestring);

    if (n == 0) {
        return tg_errf(w->err, w->errlen, TG_ERR_EMPTY_STRING,
                       TG_KEY_INFOS "[%zu].%s: empty", i, name);
    }

    if (n > TG_BATCH_STRING_MAX) {
        return tg_errf(w->err, w->errlen, TG_ERR_STRING_TOO_LONG,
                       TG_KEY_INFOS "[%zu].%s: %zu bytes, at most %d",
                       i, name, n, TG_BATCH_STRING_MAX);
    }

    /*
     * Control characters are C0, DEL and C1 (U+0080..U+009F, "\xc2\x80"
     * to "\xc2\x9f" in UTF-8); the line and paragraph separators
     * U+2028 and U+2029 break lines for some readers too.
     */

    for (k = 0; k < n; k++) {
        if (p[k] < 0x20 || p[k] == 0x7f
            || (p[k] == 0xc2 && k + 1 < n && p[k + 1] >= 0x80
                && p[k + 1] <= 0x9f)
            || (p[k] == 0xe2 && k + 2 < n && p[k + 1] == 0x80
                && (p[k + 2] == 0xa8 || p[k + 2] == 0xa9)))
        {
            return tg_errf(w->err, w->errlen, TG_ERR_CTRL_CHAR,
                           TG_KEY_INFOS "[%zu].%s: control character",
                           i, name);
        }
    }

    if (w->b->scratch_size - w->used < n) {
        return tg_errf(w->err, w->errlen, TG_ERR_BUF_TOO_SMALL,
                       "scratch buffer of %zu bytes is too small",
                       w->b->scratch_size);
    }

    dst = w->b->scratch + w->used;
    memcpy(dst, p, n);
    w->used += n;

    out->data = dst;
    out->len = n;

    return TG_OK;
}


static tg_rc_t
tg_walk_delay(tg_walk_t *w, cJSON *delay)
{
    if (cJSON_IsBool(delay)) {
        w->b->delay = cJSON_IsTrue(delay) ? 1 : 0;
        w->b->delay_kind = TG_DELAY_BOOL;
        return TG_OK;
    }

    if (cJSON_IsString(delay) && delay->valuestring != NULL) {

        if (strcmp(delay->valuestring, "true") == 0) {
            w->b->delay = 1;
            w->b->delay_kind = TG_DELAY_STRING;
            return TG_OK;
        }

        if (strcmp(delay->valuestring, "false") == 0) {
            w->b->delay = 0;
            w->b->delay_kind = TG_DELAY_STRING;
            return TG_OK;
        }
    }

    return tg_errf(w->err, w->errlen, TG_ERR_DELAY_VALUE,
                   TG_KEY_DELAY ": must be \"true\" or \"false\"");
}


/*
 * Sorts pointers to the items by instance_id, ties by position, so each
 * group of equal IDs lists its first two occurrences first; of all the
 * groups, the one whose second occurrence comes earliest in the body is
 * reported.  O(n log n), no allocation.
 */

static tg_rc_t
tg_check_dup_instances(tg_walk_t *w)
{
    size_t                i, n, first, second;
    const tg_str_t       *a, *z;
    const tg_instance_t  *sorted[TG_BATCH_MAX_ITEMS];

    n = w->b->nitems;

    for (i = 0; i < n; i++) {
        sorted[i] = &w->b->items[i];
    }

    qsort(sorted, n, sizeof(sorted[0]), tg_instance_cmp);

    first = 0;
    second = n;

    for (i = 1; i < n; i++) {
        a = &sorted[i - 1]->instance_id;
        z = &sorted[i]->instance_id;

        if (a->len != z->len || memcmp(a->data, z->data, a->len) != 0) {
            continue;
        }

        if (i >= 2 && sorted[i - 2]->instance_id.len == a->len
            && memcmp(sorted[i - 2]->instance_id.data, a->data, a->len) == 0)
        {
            continue;   /* a third or later occurrence */
        }

        if ((size_t) (sorted[i] - w->b->items) < second) {
            first = sorted[i - 1] - w->b->items;
            second = sorted[i] - w->b->items;
        }
    }

    if (second == n) {
        return TG_OK;
    }

    return tg_errf(w->err, w->errlen, TG_ERR_DUP_INSTANCE,
                   TG_KEY_INFOS "[%zu]." TG_KEY_ID ": same as [%zu]",
                   second, first);
}


static int
tg_instance_cmp(const void *one, const void *two)
{
    int                   r;
    size_t                n;
    const tg_instance_t  *a, *b;

    a = *(const tg_instance_t * const *) one;
    b = *(const tg_instance_t * const *) two;

    n = a->instance_id.len < b->instance_id.len ? a->instance_id.len
                                                : b->instance_id.len;

    r = memcmp(a->instance_id.data, b->instance_id.data, n);
    if (r != 0) {
        return r;
    }

    if (a->instance_id.len != b->instance_id.len) {
        return a->instance_id.len < b->instance_id.len ? -1 : 1;
    }

    return (a > b) - (a < b);
}


/* at most TG_BATCH_KEY_MAX bytes of key, cut on a UTF-8 boundary */

static void
tg_quote_key(char *dst, const char *key)
{
    size_t  len;

    if (key == NULL) {
        dst[0] = '\0';
        return;
    }

    len = strlen(key);

    if (len <= TG_BATCH_KEY_MAX) {
        memcpy(dst, key, len + 1);
        return;
    }

    len = TG_BATCH_KEY_MAX;

    while (len > 0 && ((unsigned char) key[len] & 0xc0) == 0x80) {
        len--;
    }

    memcpy(dst, key, len);
    memcpy(dst + len, "...", 4);
}


/*
 * Formats the message into err.  When it does not fit, the cut never
 * leaves half a UTF-8 sequence behind: quoted keys stay valid UTF-8.
 */

static tg_rc_t
tg_errf(char *err, size_t errlen, tg_rc_t rc, const char *fmt, ...)
{
    int            n;
    size_t         len, i, need;
    va_list        ap;
    unsigned char  c;

    if (errlen == 0) {
        return rc;
    }

    va_start(ap, fmt);
    n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);

    if (n < 0) {
        err[0] = '\0';
        return rc;
    }

    if ((size_t) n < errlen) {
        return rc;
    }

    len = errlen - 1;
    i = len;

    while (i > 0 && len - i < 3
           && ((unsigned char) err[i - 1] & 0xc0) == 0x80)
    {
        i--;
    }

    if (i > 0) {
        c = (unsigned char) err[i - 1];
        need = (c >= 0xf0) ? 4 : (c >= 0xe0) ? 3 : (c >= 0xc0) ? 2 : 1;

        if (len - (i - 1) < need) {
            len = i - 1;
        }
    }

    err[len] = '\0';

    return rc;
}
