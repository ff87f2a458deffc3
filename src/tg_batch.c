/*
 * The strict validator of an "upgrade in batches" body: one pass of our
 * own over the raw bytes, no JSON library, nothing allocated.
 *
 * The pass checks the syntax (BOM, UTF-8 per RFC 3629, raw control bytes
 * and \u0000 in strings, lone surrogate escapes, strict RFC 8259 numbers
 * and literals, nesting depth, only whitespace after the document) and,
 * where the schema puts a value, decodes it: keys to compare them, the
 * items' strings into the caller's scratch, delay.  Schema findings are
 * noted as they come and judged once the whole body has parsed, in the
 * order the checks were always made: a syntax error anywhere wins over
 * any schema error, then root keys, missing keys, the array, its size,
 * the first bad item, a repeated instance, delay.
 *
 * Byte offsets in messages are 0-based and point at the offending byte,
 * or at the start of the offending number, literal, escape or UTF-8
 * sequence; at the body's length when it ends too soon.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_batch.h"
#include "tg_escape.h"
#include "tg_out.h"


/* object > array > object: the deepest the schema goes */
#define TG_BATCH_DEPTH_MAX  3

/*
 * No number is valid in this schema; a longer one than cJSON used to
 * take (63 bytes, CVE-2023-26819) is refused as it always was.
 */
#define TG_BATCH_NUMBER_MAX 63

/* bytes of a key name quoted in a message, before "..." */
#define TG_BATCH_KEY_MAX    64

/* a schema message held until the whole body has parsed */
#define TG_BATCH_MSG_MAX    192

#define TG_KEY_INFOS        "databases_instance_infos"
#define TG_KEY_DELAY        "delay"
#define TG_KEY_ID           "instance_id"
#define TG_KEY_VERSION      "current_version"

/* an item's keys as compact JSON spells them, matched without decoding */
#define TG_RAW_ID           "\"" TG_KEY_ID "\":"
#define TG_RAW_VERSION      "\"" TG_KEY_VERSION "\":"

#define tg_lit_len(s)       (sizeof(s) - 1)


typedef struct {
    const unsigned char  *start;
    const unsigned char  *p;
    const unsigned char  *end;
    const char           *what;      /* the message, "... at byte N" */
} tg_scan_t;


typedef struct {
    tg_rc_t               rc;        /* TG_OK: nothing found yet */
    char                  msg[TG_BATCH_MSG_MAX];
} tg_finding_t;


typedef struct {
    tg_scan_t             s;
    tg_batch_t           *b;
    size_t                used;      /* bytes of b->scratch kept */

    tg_finding_t          key;       /* the root's first bad key */
    unsigned              has_infos:1;
    unsigned              has_delay:1;
    unsigned              infos_array:1;
    size_t                count;     /* items in the array */
    size_t                room;      /* entries of b->items */
    tg_finding_t          item;      /* the first bad item */
    tg_rc_t               delay;     /* TG_OK or TG_ERR_DELAY_VALUE */
} tg_parse_t;


/* what decoding a string learnt on the way */
typedef struct {
    size_t                len;
    size_t                quotes;    /* '"' and '\\': escaped again */
    unsigned              ctrl:1;    /* a control character decoded */
} tg_decoded_t;


typedef struct {
    unsigned              seen:1;
    unsigned              string:1;
    unsigned              ctrl:1;
    tg_str_t              value;
} tg_field_t;


static inline unsigned char *tg_cpy(unsigned char *dst, const void *src,
    size_t n);
static tg_rc_t tg_parse_root(tg_parse_t *ps);
static tg_rc_t tg_parse_infos(tg_parse_t *ps);
static tg_rc_t tg_parse_item(tg_parse_t *ps, size_t i);
static tg_rc_t tg_parse_field(tg_parse_t *ps, tg_field_t *f);
static tg_rc_t tg_parse_delay(tg_parse_t *ps);
static tg_rc_t tg_parse_key(tg_parse_t *ps, tg_str_t *key);
static tg_rc_t tg_item_check(tg_parse_t *ps, size_t i, tg_field_t *id,
    tg_field_t *version, tg_finding_t *f);
static inline tg_rc_t tg_field_check(size_t i, const char *name,
    tg_field_t *f, tg_finding_t *found);
static tg_rc_t tg_judge(tg_parse_t *ps, char *err, size_t errlen);
static void tg_note(tg_finding_t *f, tg_rc_t rc, const char *fmt, ...);
static int tg_key_is(const tg_str_t *key, const char *name, size_t len);

static tg_rc_t tg_scan_value(tg_scan_t *s, int depth);
static tg_rc_t tg_scan_object(tg_scan_t *s, int depth);
static tg_rc_t tg_scan_array(tg_scan_t *s, int depth);
static inline tg_rc_t tg_scan_after(tg_scan_t *s, unsigned char close,
    int *more);
static tg_rc_t tg_scan_string(tg_scan_t *s, unsigned char *dst,
    tg_decoded_t *d);
static tg_rc_t tg_scan_escape(tg_scan_t *s, unsigned char *dst,
    tg_decoded_t *d);
static tg_rc_t tg_scan_number(tg_scan_t *s);
static tg_rc_t tg_scan_literal(tg_scan_t *s, const char *lit, size_t len);
static inline int tg_scan_prefix(const tg_scan_t *s, const char *lit,
    size_t len);
static tg_rc_t tg_scan_unexpected(tg_scan_t *s);
static tg_rc_t tg_scan_fail(tg_scan_t *s, tg_rc_t rc, const char *what);
static inline void tg_scan_ws(tg_scan_t *s);

static tg_rc_t tg_check_dup_instances(tg_batch_t *b, tg_finding_t *f);
static uint32_t tg_dup_hash(const unsigned char *p, size_t len);
static tg_rc_t tg_check_dup_sorted(tg_batch_t *b, tg_finding_t *f);
static int tg_instance_cmp(const void *one, const void *two);
static void tg_quote_key(char *dst, const tg_str_t *key);
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
    tg_rc_t               rc;
    tg_parse_t            ps;
    const unsigned char  *value;

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
    b->quotes = 0;

    if (b->scratch_size < len) {
        return tg_errf(err, errlen, TG_ERR_BUF_TOO_SMALL,
                       "scratch buffer of %zu bytes for a body of %zu",
                       b->scratch_size, len);
    }

    /* a zero-length body may come as NULL: no pointer arithmetic on it */

    if (len == 0) {
        return tg_errf(err, errlen, TG_ERR_EMPTY_BODY, "empty body");
    }

    memset(&ps, 0, sizeof(tg_parse_t));
    ps.b = b;
    ps.room = (b->room != 0 && b->room < b->max_items) ? b->room
                                                        : b->max_items;
    ps.s.start = body;
    ps.s.p = body;
    ps.s.end = body + len;

    if (len >= 3 && body[0] == 0xef && body[1] == 0xbb && body[2] == 0xbf) {
        return tg_errf(err, errlen, TG_ERR_BOM, "byte order mark");
    }

    tg_scan_ws(&ps.s);

    if (ps.s.p == ps.s.end) {
        return tg_errf(err, errlen, TG_ERR_EMPTY_BODY, "empty body");
    }

    value = ps.s.p;

    if (*value == '{') {
        rc = tg_parse_root(&ps);

    } else {
        rc = tg_scan_value(&ps.s, 0);
    }

    if (rc == TG_OK && *value != '{') {
        return tg_errf(err, errlen, TG_ERR_NOT_OBJECT,
                       "top level is not an object");
    }

    if (rc == TG_OK) {
        tg_scan_ws(&ps.s);

        if (ps.s.p != ps.s.end) {
            rc = tg_scan_fail(&ps.s, TG_ERR_TRAILING,
                              "data after the JSON document");
        }
    }

    if (rc != TG_OK) {
        return tg_errf(err, errlen, rc, "%s at byte %zu", ps.s.what,
                       (size_t) (ps.s.p - ps.s.start));
    }

    rc = tg_judge(&ps, err, errlen);

    if (rc != TG_OK) {
        b->nitems = 0;
    }

    return rc;
}


/*
 * n whole items take 41 n bytes and n - 1 commas: at most (len + 1) / 42
 * of them fit in len bytes, fewer than len / 41 + 1.
 */

size_t
tg_batch_room(size_t max_items, size_t len)
{
    size_t  n;

    n = len / TG_BATCH_ITEM_MIN + 1;

    return (n < max_items) ? n : max_items;
}


size_t
tg_batch_serialized_len(const tg_batch_t *b)
{
    size_t  i, len;

    len = tg_lit_len(tg_head) + tg_lit_len(tg_tail) + 1 + b->quotes;

    for (i = 0; i < b->nitems; i++) {
        len += (i > 0) + tg_lit_len(tg_item_id) + b->items[i].instance_id.len
               + tg_lit_len(tg_item_version)
               + b->items[i].current_version.len + tg_lit_len(tg_item_end);
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
    tg_out_t  o;

    tg_out_init(&o, dst, tg_batch_serialized_len(b));
    tg_batch_write(b, &o);

    return dst + o.pos;
}


/*
 * The parser refused every string that held a control character or
 * invalid UTF-8, so '"' and '\\' are all that escaping can change in
 * them, and it counted those: when there are none, each string is
 * copied as it is, without a look at its bytes, and an item that fits
 * the window as it is is composed there whole.
 */

void
tg_batch_write(const tg_batch_t *b, tg_out_t *o)
{
    size_t                i, n;
    unsigned char        *p;
    const tg_instance_t  *it;

    tg_out_put(o, tg_head, tg_lit_len(tg_head));

    for (i = 0; i < b->nitems; i++) {
        it = &b->items[i];

        if (b->quotes == 0) {
            n = (i > 0) + tg_lit_len(tg_item_id) + it->instance_id.len
                + tg_lit_len(tg_item_version) + it->current_version.len
                + tg_lit_len(tg_item_end);

            p = tg_out_reserve(o, n);

            if (p != NULL) {
                if (i > 0) {
                    *p++ = ',';
                }

                p = tg_cpy(p, tg_item_id, tg_lit_len(tg_item_id));
                p = tg_cpy(p, it->instance_id.data, it->instance_id.len);
                p = tg_cpy(p, tg_item_version, tg_lit_len(tg_item_version));
                p = tg_cpy(p, it->current_version.data,
                           it->current_version.len);
                (void) tg_cpy(p, tg_item_end, tg_lit_len(tg_item_end));

                continue;
            }
        }

        if (i > 0) {
            tg_out_byte(o, ',');
        }

        tg_out_put(o, tg_item_id, tg_lit_len(tg_item_id));

        if (b->quotes == 0) {
            tg_out_put(o, it->instance_id.data, it->instance_id.len);
            tg_out_put(o, tg_item_version, tg_lit_len(tg_item_version));
            tg_out_put(o, it->current_version.data,
                       it->current_version.len);

        } else {
            tg_out_json(o, it->instance_id.data, it->instance_id.len);
            tg_out_put(o, tg_item_version, tg_lit_len(tg_item_version));
            tg_out_json(o, it->current_version.data,
                        it->current_version.len);
        }

        tg_out_put(o, tg_item_end, tg_lit_len(tg_item_end));
    }

    tg_out_put(o, tg_tail, tg_lit_len(tg_tail));

    if (b->delay_kind == TG_DELAY_BOOL) {
        tg_out_str(o, b->delay ? "true" : "false");

    } else {
        tg_out_str(o, b->delay ? tg_delay_true : tg_delay_false);
    }

    tg_out_byte(o, '}');
}


tg_rc_t
tg_batch_items(const tg_batch_t *b, const unsigned char *body, size_t len,
    tg_str_t *items)
{
    size_t  tail;

    /* the tail: "],"delay":" with the delay, and the closing brace */

    tail = tg_lit_len(tg_tail) + 1;

    if (b->delay_kind == TG_DELAY_BOOL) {
        tail += b->delay ? tg_lit_len("true") : tg_lit_len("false");

    } else {
        tail += b->delay ? tg_lit_len(tg_delay_true)
                         : tg_lit_len(tg_delay_false);
    }

    if (body == NULL || len != tg_batch_serialized_len(b)
        || memcmp(body, tg_head, tg_lit_len(tg_head)) != 0
        || memcmp(body + len - tail, tg_tail, tg_lit_len(tg_tail)) != 0)
    {
        return TG_ERR_ARG;
    }

    items->data = body + tg_lit_len(tg_head);
    items->len = len - tg_lit_len(tg_head) - tail;

    return TG_OK;
}


/* ngx_cpymem(): the copy, and the end of it */

static inline unsigned char *
tg_cpy(unsigned char *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);

    return dst + n;
}


/* the schema, where the body puts its values */

static tg_rc_t
tg_parse_root(tg_parse_t *ps)
{
    int         more;
    char        quoted[TG_BATCH_KEY_MAX + 4];
    tg_rc_t     rc;
    tg_str_t    key;
    tg_scan_t  *s;

    s = &ps->s;

    s->p++;
    tg_scan_ws(s);

    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return TG_OK;
    }

    for ( ;; ) {
        rc = tg_parse_key(ps, &key);
        if (rc != TG_OK) {
            return rc;
        }

        if (tg_key_is(&key, TG_KEY_INFOS, tg_lit_len(TG_KEY_INFOS))) {

            if (ps->has_infos) {
                tg_note(&ps->key, TG_ERR_DUP_KEY,
                        "duplicate key \"" TG_KEY_INFOS "\"");
                rc = tg_scan_value(s, 1);

            } else {
                ps->has_infos = 1;
                rc = tg_parse_infos(ps);
            }

        } else if (tg_key_is(&key, TG_KEY_DELAY, tg_lit_len(TG_KEY_DELAY))) {

            if (ps->has_delay) {
                tg_note(&ps->key, TG_ERR_DUP_KEY,
                        "duplicate key \"" TG_KEY_DELAY "\"");
                rc = tg_scan_value(s, 1);

            } else {
                ps->has_delay = 1;
                rc = tg_parse_delay(ps);
            }

        } else {
            if (ps->key.rc == TG_OK) {
                tg_quote_key(quoted, &key);
                tg_note(&ps->key, TG_ERR_UNKNOWN_KEY, "unknown key \"%s\"",
                        quoted);
            }

            rc = tg_scan_value(s, 1);
        }

        if (rc != TG_OK) {
            return rc;
        }

        rc = tg_scan_after(s, '}', &more);
        if (rc != TG_OK || !more) {
            return rc;
        }
    }
}


/* the value of "databases_instance_infos", at depth 1 */

static tg_rc_t
tg_parse_infos(tg_parse_t *ps)
{
    int         more;
    size_t      i;
    tg_rc_t     rc;
    tg_scan_t  *s;

    s = &ps->s;

    if (s->p == s->end || *s->p != '[') {
        return tg_scan_value(s, 1);
    }

    ps->infos_array = 1;

    s->p++;
    tg_scan_ws(s);

    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return TG_OK;
    }

    for ( ;; ) {
        i = ps->count++;

        /* past max_items only the count matters: the batch is too large */

        if (i < ps->b->max_items) {
            rc = tg_parse_item(ps, i);

        } else {
            rc = tg_scan_value(s, 2);
        }

        if (rc != TG_OK) {
            return rc;
        }

        rc = tg_scan_after(s, ']', &more);
        if (rc != TG_OK || !more) {
            return rc;
        }
    }
}


/* one item, at depth 2 */

static tg_rc_t
tg_parse_item(tg_parse_t *ps, size_t i)
{
    int           more;
    char          quoted[TG_BATCH_KEY_MAX + 4];
    tg_rc_t       rc;
    tg_str_t      key;
    tg_scan_t    *s;
    tg_field_t    id, version, *f;
    tg_finding_t  keys;

    s = &ps->s;

    if (s->p == s->end || *s->p != '{') {
        if (ps->item.rc == TG_OK) {
            tg_note(&ps->item, TG_ERR_TYPE,
                    TG_KEY_INFOS "[%zu]: not an object", i);
        }

        return tg_scan_value(s, 2);
    }

    memset(&id, 0, sizeof(tg_field_t));
    memset(&version, 0, sizeof(tg_field_t));
    keys.rc = TG_OK;

    s->p++;
    tg_scan_ws(s);

    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return tg_item_check(ps, i, &id, &version, &keys);
    }

    for ( ;; ) {

        /* the keys as clients write them, with their ':', matched raw */

        if (tg_scan_prefix(s, TG_RAW_ID, tg_lit_len(TG_RAW_ID))) {
            s->p += tg_lit_len(TG_RAW_ID);
            tg_scan_ws(s);
            f = &id;

        } else if (tg_scan_prefix(s, TG_RAW_VERSION,
                                  tg_lit_len(TG_RAW_VERSION)))
        {
            s->p += tg_lit_len(TG_RAW_VERSION);
            tg_scan_ws(s);
            f = &version;

        } else {
            rc = tg_parse_key(ps, &key);
            if (rc != TG_OK) {
                return rc;
            }

            if (tg_key_is(&key, TG_KEY_ID, tg_lit_len(TG_KEY_ID))) {
                f = &id;

            } else if (tg_key_is(&key, TG_KEY_VERSION,
                                 tg_lit_len(TG_KEY_VERSION)))
            {
                f = &version;

            } else {
                f = NULL;
            }
        }

        if (f != NULL) {
            if (f->seen) {
                tg_note(&keys, TG_ERR_DUP_KEY, TG_KEY_INFOS "[%zu]: duplicate"
                        " key \"%s\"", i,
                        (f == &id) ? TG_KEY_ID : TG_KEY_VERSION);
            }

            rc = tg_parse_field(ps, f);

        } else {
            if (keys.rc == TG_OK) {
                tg_quote_key(quoted, &key);
                tg_note(&keys, TG_ERR_UNKNOWN_KEY,
                        TG_KEY_INFOS "[%zu]: unknown key \"%s\"", i, quoted);
            }

            rc = tg_scan_value(s, 3);
        }

        if (rc != TG_OK) {
            return rc;
        }

        rc = tg_scan_after(s, '}', &more);
        if (rc != TG_OK) {
            return rc;
        }

        if (!more) {
            return tg_item_check(ps, i, &id, &version, &keys);
        }
    }
}


/* a string the item keeps goes to scratch; anything else is looked over */

static tg_rc_t
tg_parse_field(tg_parse_t *ps, tg_field_t *f)
{
    size_t          n;
    tg_rc_t         rc;
    tg_decoded_t    d;
    unsigned char  *dst;

    f->seen = 1;

    if (ps->s.p == ps->s.end || *ps->s.p != '"') {
        f->string = 0;
        return tg_scan_value(&ps->s, 3);
    }

    dst = ps->b->scratch + ps->used;

    /* a plain run up to the closing quote, as most values are, is copied */

    n = tg_json_plain_len(ps->s.p + 1, (size_t) (ps->s.end - ps->s.p - 1));

    if (ps->s.p + 1 + n < ps->s.end && ps->s.p[1 + n] == '"') {
        memcpy(dst, ps->s.p + 1, n);
        ps->s.p += n + 2;

        d.len = n;
        d.quotes = 0;
        d.ctrl = 0;

    } else {
        rc = tg_scan_string(&ps->s, dst, &d);
        if (rc != TG_OK) {
            return rc;
        }
    }

    ps->used += d.len;
    ps->b->quotes += d.quotes;

    f->string = 1;
    f->ctrl = d.ctrl;
    f->value.data = dst;
    f->value.len = d.len;

    return TG_OK;
}


static tg_rc_t
tg_parse_delay(tg_parse_t *ps)
{
    tg_rc_t         rc;
    tg_scan_t      *s;
    tg_decoded_t    d;
    unsigned char  *dst, c;

    s = &ps->s;
    ps->delay = TG_ERR_DELAY_VALUE;

    if (s->p < s->end && *s->p == '"') {
        dst = ps->b->scratch + ps->used;

        rc = tg_scan_string(s, dst, &d);
        if (rc != TG_OK) {
            return rc;
        }

        if (d.len == 4 && memcmp(dst, "true", 4) == 0) {
            ps->b->delay = 1;
            ps->delay = TG_OK;

        } else if (d.len == 5 && memcmp(dst, "false", 5) == 0) {
            ps->b->delay = 0;
            ps->delay = TG_OK;
        }

        ps->b->delay_kind = TG_DELAY_STRING;

        return TG_OK;
    }

    if (s->p < s->end && (*s->p == 't' || *s->p == 'f')) {
        c = *s->p;

        rc = tg_scan_value(s, 1);
        if (rc != TG_OK) {
            return rc;
        }

        ps->b->delay = (c == 't');
        ps->b->delay_kind = TG_DELAY_BOOL;
        ps->delay = TG_OK;

        return TG_OK;
    }

    return tg_scan_value(s, 1);
}


/*
 * A member's key and its ':'.  The keys of the schema are plain ASCII,
 * and a key that is a plain run up to its closing quote decodes to
 * itself: it is compared where it lies in the body.  Any other key
 * (escapes, UTF-8, a byte the scan refuses) is checked and decoded to
 * scratch past what is kept.
 */

static tg_rc_t
tg_parse_key(tg_parse_t *ps, tg_str_t *key)
{
    size_t          n;
    tg_rc_t         rc;
    tg_scan_t      *s;
    tg_decoded_t    d;
    unsigned char  *dst;

    s = &ps->s;

    if (s->p == s->end || *s->p != '"') {
        return tg_scan_unexpected(s);
    }

    n = tg_json_plain_len(s->p + 1, (size_t) (s->end - s->p - 1));

    if (s->p + 1 + n < s->end && s->p[1 + n] == '"') {
        key->data = s->p + 1;
        key->len = n;
        s->p += n + 2;

    } else {
        dst = ps->b->scratch + ps->used;

        rc = tg_scan_string(s, dst, &d);
        if (rc != TG_OK) {
            return rc;
        }

        key->data = dst;
        key->len = d.len;
    }

    tg_scan_ws(s);

    if (s->p == s->end || *s->p != ':') {
        return tg_scan_unexpected(s);
    }

    s->p++;
    tg_scan_ws(s);

    return TG_OK;
}


/* an item's findings, in the order they are reported */

static tg_rc_t
tg_item_check(tg_parse_t *ps, size_t i, tg_field_t *id, tg_field_t *version,
    tg_finding_t *keys)
{
    tg_finding_t  *f;

    f = &ps->item;

    if (f->rc != TG_OK) {
        return TG_OK;
    }

    if (keys->rc != TG_OK) {
        *f = *keys;
        return TG_OK;
    }

    if (!id->seen) {
        tg_note(f, TG_ERR_MISSING_KEY,
                TG_KEY_INFOS "[%zu]: missing key \"" TG_KEY_ID "\"", i);
        return TG_OK;
    }

    if (!version->seen) {
        tg_note(f, TG_ERR_MISSING_KEY,
                TG_KEY_INFOS "[%zu]: missing key \"" TG_KEY_VERSION "\"", i);
        return TG_OK;
    }

    if (tg_field_check(i, TG_KEY_ID, id, f) != TG_OK
        || tg_field_check(i, TG_KEY_VERSION, version, f) != TG_OK)
    {
        return TG_OK;
    }

    if (i >= ps->room) {
        /* a whole item more than tg_batch_room() said could come */
        return tg_scan_fail(&ps->s, TG_ERR_BUF_TOO_SMALL,
                            "more items than the array has room for");
    }

    ps->b->items[i].instance_id = id->value;
    ps->b->items[i].current_version = version->value;

    return TG_OK;
}


/* inline: twice per item, and its checks pass */

static inline tg_rc_t
tg_field_check(size_t i, const char *name, tg_field_t *f,
    tg_finding_t *found)
{
    size_t  n;

    if (!f->string) {
        tg_note(found, TG_ERR_TYPE, TG_KEY_INFOS "[%zu].%s: not a string",
                i, name);
        return found->rc;
    }

    n = f->value.len;

    if (n == 0) {
        tg_note(found, TG_ERR_EMPTY_STRING, TG_KEY_INFOS "[%zu].%s: empty",
                i, name);
        return found->rc;
    }

    if (n > TG_BATCH_STRING_MAX) {
        tg_note(found, TG_ERR_STRING_TOO_LONG,
                TG_KEY_INFOS "[%zu].%s: %zu bytes, at most %d",
                i, name, n, TG_BATCH_STRING_MAX);
        return found->rc;
    }

    /* the decoder saw any control character (tg_scan_string()) */

    if (f->ctrl) {
        tg_note(found, TG_ERR_CTRL_CHAR,
                TG_KEY_INFOS "[%zu].%s: control character", i, name);
        return found->rc;
    }

    return TG_OK;
}


/* the schema's verdict, once the syntax is known to be good */

static tg_rc_t
tg_judge(tg_parse_t *ps, char *err, size_t errlen)
{
    tg_finding_t  f;

    if (ps->key.rc != TG_OK) {
        return tg_errf(err, errlen, ps->key.rc, "%s", ps->key.msg);
    }

    if (!ps->has_infos) {
        return tg_errf(err, errlen, TG_ERR_MISSING_KEY,
                       "missing key \"" TG_KEY_INFOS "\"");
    }

    if (!ps->has_delay) {
        return tg_errf(err, errlen, TG_ERR_MISSING_KEY,
                       "missing key \"" TG_KEY_DELAY "\"");
    }

    if (!ps->infos_array) {
        return tg_errf(err, errlen, TG_ERR_TYPE,
                       TG_KEY_INFOS ": not an array");
    }

    if (ps->count == 0) {
        return tg_errf(err, errlen, TG_ERR_BATCH_EMPTY,
                       TG_KEY_INFOS ": no items");
    }

    if (ps->count > ps->b->max_items) {
        return tg_errf(err, errlen, TG_ERR_BATCH_TOO_LARGE,
                       TG_KEY_INFOS ": %zu items, at most %zu",
                       ps->count, ps->b->max_items);
    }

    if (ps->item.rc != TG_OK) {
        return tg_errf(err, errlen, ps->item.rc, "%s", ps->item.msg);
    }

    ps->b->nitems = ps->count;

    f.rc = TG_OK;

    if (tg_check_dup_instances(ps->b, &f) != TG_OK) {
        return tg_errf(err, errlen, f.rc, "%s", f.msg);
    }

    if (ps->delay != TG_OK) {
        return tg_errf(err, errlen, TG_ERR_DELAY_VALUE,
                       TG_KEY_DELAY ": must be \"true\" or \"false\"");
    }

    return TG_OK;
}


/* the first finding of its kind is kept */

static void
tg_note(tg_finding_t *f, tg_rc_t rc, const char *fmt, ...)
{
    va_list  ap;

    if (f->rc != TG_OK) {
        return;
    }

    f->rc = rc;

    va_start(ap, fmt);
    (void) vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
    va_end(ap);
}


static int
tg_key_is(const tg_str_t *key, const char *name, size_t len)
{
    return key->len == len && memcmp(key->data, name, len) == 0;
}


/* the syntax, where nothing is kept */

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
        return tg_scan_string(s, NULL, NULL);

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

        rc = tg_scan_string(s, NULL, NULL);
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

static inline tg_rc_t
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


/*
 * A string, checked and, when dst is not NULL, decoded there (the caller
 * has room for it: decoding never makes a string longer).  d, when not
 * NULL, learns the decoded length, how many '"' and '\\' it holds (each
 * costs one more byte when the string is escaped again), and whether a
 * control character came out: C0, DEL, C1 (U+0080..U+009F), U+2028 or
 * U+2029.  Raw C0 and DEL are refused here; the rest can only come from
 * an escape or a valid UTF-8 sequence, so they are seen there.
 */

static tg_rc_t
tg_scan_string(tg_scan_t *s, unsigned char *dst, tg_decoded_t *d)
{
    size_t                n;
    tg_rc_t               rc;
    unsigned char         c;
    tg_decoded_t          local;
    const unsigned char  *run;

    if (d == NULL) {
        d = &local;
    }

    d->len = 0;
    d->quotes = 0;
    d->ctrl = 0;

    s->p++;

    for ( ;; ) {
        n = tg_json_plain_len(s->p, (size_t) (s->end - s->p));

        if (dst != NULL && n > 0) {
            memcpy(dst + d->len, s->p, n);
        }

        s->p += n;
        d->len += n;

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
            rc = tg_scan_escape(s, (dst != NULL) ? dst + d->len : NULL, d);
            if (rc != TG_OK) {
                return rc;
            }

            continue;
        }

        /* c >= 0x80 */

        run = s->p;
        n = tg_utf8_seq_len(s->p, (size_t) (s->end - s->p));

        if (n == 0) {
            return tg_scan_fail(s, TG_ERR_UTF8, "invalid UTF-8");
        }

        if ((n == 2 && run[0] == 0xc2 && run[1] <= 0x9f)
            || (n == 3 && run[0] == 0xe2 && run[1] == 0x80
                && (run[2] == 0xa8 || run[2] == 0xa9)))
        {
            d->ctrl = 1;
        }

        if (dst != NULL) {
            memcpy(dst + d->len, run, n);
        }

        s->p += n;
        d->len += n;
    }
}


/* one escape at s->p: checked, and decoded to dst when it is not NULL */

static tg_rc_t
tg_scan_escape(tg_scan_t *s, unsigned char *dst, tg_decoded_t *d)
{
    size_t         k;
    tg_rc_t        rc;
    unsigned       u;
    unsigned char  buf[4];

    if (s->end - s->p < 2) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "unterminated string");
    }

    rc = tg_json_unescape(s->p, s->end, &u, &k);

    if (rc == TG_ERR_UTF8) {
        return tg_scan_fail(s, TG_ERR_UTF8, "unpaired surrogate escape");
    }

    if (rc != TG_OK) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid escape");
    }

    if (u == 0) {
        return tg_scan_fail(s, TG_ERR_NUL_ESCAPE, "\\u0000");
    }

    s->p += k;

    if (u < 0x20 || u == 0x7f || (u >= 0x80 && u <= 0x9f)
        || u == 0x2028 || u == 0x2029)
    {
        d->ctrl = 1;
    }

    /* the code point as UTF-8 */

    k = tg_utf8_put(u, buf);
    d->quotes += (u == '"' || u == '\\');

    if (dst != NULL) {
        memcpy(dst, buf, k);
    }

    d->len += k;

    return TG_OK;
}


static tg_rc_t
tg_scan_number(tg_scan_t *s)
{
    size_t  n;

    n = tg_json_number_len(s->p, s->end);

    if (n == 0) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "invalid number");
    }

    if (n > TG_BATCH_NUMBER_MAX) {
        return tg_scan_fail(s, TG_ERR_SYNTAX, "number longer than 63 bytes");
    }

    s->p += n;

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


/*
 * Whether the body at s->p starts with lit, of 8 to 24 bytes: its first,
 * middle and last words compared, which overlap and so cover it whole.
 * Inline, so that each word of a literal is a constant: libc's memcmp()
 * would cost a call and a loop for a dozen bytes.
 */

static inline int
tg_scan_prefix(const tg_scan_t *s, const char *lit, size_t len)
{
    size_t    mid;
    uint64_t  a, b;

    if ((size_t) (s->end - s->p) < len) {
        return 0;
    }

    mid = (len - 8) / 2;

    memcpy(&a, s->p, 8);
    memcpy(&b, lit, 8);

    if (a != b) {
        return 0;
    }

    memcpy(&a, s->p + mid, 8);
    memcpy(&b, lit + mid, 8);

    if (a != b) {
        return 0;
    }

    memcpy(&a, s->p + len - 8, 8);
    memcpy(&b, lit + len - 8, 8);

    return a == b;
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


/*
 * Between every two tokens: inline (configure's bare -O, which the
 * module gets from an nginx built without --with-cc-opt, inlines only
 * what is marked so), where a compact body costs one test.
 */

static inline void
tg_scan_ws(tg_scan_t *s)
{
    /* all four are at most ' ': one test passes any token's first byte */

    while (s->p < s->end && *s->p <= ' '
           && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
               || *s->p == '\r'))
    {
        s->p++;
    }
}



/*
 * Which instance_id comes back first: of all the groups of equal IDs, the
 * one whose second occurrence comes earliest in the body is reported,
 * with its first occurrence.  Walking the items in order with a hash
 * table of those seen, the first item found in the table is that second
 * occurrence, and the slot holds the first.
 *
 * The table is open-addressed, on the stack, of the smallest power of
 * two at least twice the items: each slot holds an item's index + 1
 * (0: empty) and 16 more bits of its hash, so a probe rarely has to
 * compare two IDs.  Past TG_DUP_SLOTS / 2 items, or when the probes run
 * long (IDs chosen to collide), the sort of tg_check_dup_sorted() gives
 * the same answer in O(n log n) whatever the IDs.
 */

#define TG_DUP_SLOTS        1024
#define TG_DUP_PROBES       8       /* per item, on average, at most */

static tg_rc_t
tg_check_dup_instances(tg_batch_t *b, tg_finding_t *f)
{
    size_t           i, j, n, size, slot, probes;
    uint32_t         h, e;
    const tg_str_t  *id, *seen;
    uint32_t         table[TG_DUP_SLOTS];

    n = b->nitems;

    if (n > TG_DUP_SLOTS / 2) {
        return tg_check_dup_sorted(b, f);
    }

    for (size = 8; size < 2 * n; size *= 2) {
        /* void */
    }

    memset(table, 0, size * sizeof(uint32_t));
    probes = 0;

    for (i = 0; i < n; i++) {
        id = &b->items[i].instance_id;
        h = tg_dup_hash(id->data, id->len);

        for (slot = h & (size - 1); table[slot] != 0;
             slot = (slot + 1) & (size - 1))
        {
            e = table[slot];
            j = (e & 0xffff) - 1;
            seen = &b->items[j].instance_id;

            if ((e >> 16) == (h >> 16) && seen->len == id->len
                && memcmp(seen->data, id->data, id->len) == 0)
            {
                tg_note(f, TG_ERR_DUP_INSTANCE,
                        TG_KEY_INFOS "[%zu]." TG_KEY_ID ": same as [%zu]",
                        i, j);
                return f->rc;
            }

            if (++probes > TG_DUP_PROBES * n) {
                return tg_check_dup_sorted(b, f);
            }
        }

        table[slot] = (h & 0xffff0000) | (uint32_t) (i + 1);
    }

    return TG_OK;
}


/*
 * Eight bytes at a time, each word mixed in by a multiply, the last
 * bytes of an ID of 8 or more as the word that ends it (it overlaps the
 * one before: equal IDs still hash equal, which is all that matters, and
 * so does the order of the bytes in a word).
 */

static uint32_t
tg_dup_hash(const unsigned char *p, size_t len)
{
    size_t    n;
    uint64_t  h, w;

    h = len * 0x9e3779b97f4a7c15ULL;

    for (n = len; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }

    if (n > 0 && len >= 8) {
        memcpy(&w, p + n - 8, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;

    } else {
        for ( /* void */ ; n > 0; p++, n--) {
            h = (h ^ *p) * 0x9e3779b97f4a7c15ULL;
        }
    }

    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 32;

    return (uint32_t) h;
}


/*
 * Sorts pointers to the items by instance_id, ties by position, so each
 * group of equal IDs lists its first two occurrences first; the group
 * whose second occurrence comes earliest is the one reported.
 * O(n log n), no allocation.
 */

static tg_rc_t
tg_check_dup_sorted(tg_batch_t *b, tg_finding_t *f)
{
    size_t                i, n, first, second;
    const tg_str_t       *a, *z;
    const tg_instance_t  *sorted[TG_BATCH_MAX_ITEMS];

    n = b->nitems;

    for (i = 0; i < n; i++) {
        sorted[i] = &b->items[i];
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

        if ((size_t) (sorted[i] - b->items) < second) {
            first = sorted[i - 1] - b->items;
            second = sorted[i] - b->items;
        }
    }

    if (second == n) {
        return TG_OK;
    }

    tg_note(f, TG_ERR_DUP_INSTANCE,
            TG_KEY_INFOS "[%zu]." TG_KEY_ID ": same as [%zu]", second, first);

    return f->rc;
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
tg_quote_key(char *dst, const tg_str_t *key)
{
    size_t  len;

    len = key->len;

    if (len <= TG_BATCH_KEY_MAX) {
        memcpy(dst, key->data, len);
        dst[len] = '\0';
        return;
    }

    len = TG_BATCH_KEY_MAX;

    while (len > 0 && (key->data[len] & 0xc0) == 0x80) {
        len--;
    }

    memcpy(dst, key->data, len);
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
