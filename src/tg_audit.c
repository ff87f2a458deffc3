/*
 * The audit record encoder.
 *
 * One pass through the output writer (tg_out.h) writes a record into a
 * buffer of its bound; the same code with no buffer only counts, so a
 * length asked for is the length written by construction.  Every string
 * from outside goes through tg_json_escape(); the names and punctuation
 * are our own constants, written as they are (escaping them would change
 * no byte).
 */

#include <stdint.h>
#include <string.h>

#include "tg_allow.h"
#include "tg_audit.h"
#include "tg_escape.h"
#include "tg_out.h"


/* a constant piece of the record: its bytes without the NUL */
#define tg_audit_lit(o, s)  tg_out_put(o, s, sizeof(s) - 1)

/*
 * Every constant byte of a record (names, quotes, commas, brackets, up to
 * 20 digits for each number) but those of the repeated items, counted
 * generously: the constants add up to about 350 bytes, the time to 24
 * and the decision to 10.
 */
#define TG_AUDIT_FIXED       512
#define TG_AUDIT_INSTANCE    64     /* ,{"instance_id":"","current_..":""} */
#define TG_AUDIT_ITEM        4      /* ,"" */
#define TG_AUDIT_ATTEMPT     96     /* ,{"addr":"","status":N,"bytes_..":N} */

/* "head" and an escaped string, "head" and a number */
#define tg_audit_str(o, head, s, len)                                        \
    tg_audit_field(o, head, sizeof(head) - 1, s, len)
#define tg_audit_num(o, head, v)                                             \
    tg_audit_int(o, head, sizeof(head) - 1, v)

/* escaping writes at most 6 bytes for one */
#define TG_AUDIT_ESCAPE_MAX  6


/*
 * The brief form of a line's link (tg_audit.h): where its items are, the
 * end of the delay's value after them and where body_sha256's digits are.
 */
typedef struct {
    size_t               items;
    size_t               items_end;     /* the ']' */
    size_t               delay_end;
    size_t               body_sha256;
} tg_audit_brief_t;

/* the names around the brief form's pieces, in a record and in the body */
static const char  tg_audit_instances[] = ",\"instances\":[";
static const char  tg_audit_body_sha256[] = ",\"body_sha256\":\"";
static const char  tg_audit_body_head[] = "{\"databases_instance_infos\":[";
static const char  tg_audit_body_delay[] = "],\"delay\":";

#define tg_lit_len(s)        (sizeof(s) - 1)


static void tg_audit_bound_add(size_t *n, size_t len);
static void tg_audit_bound_str(size_t *n, const unsigned char *s, size_t len);
static size_t tg_audit_kept(size_t len, size_t max);
static void tg_audit_field(tg_out_t *o, const char *head, size_t head_len,
    const unsigned char *s, size_t len);
static void tg_audit_int(tg_out_t *o, const char *head, size_t head_len,
    int64_t v);
static int tg_audit_brief_form(const unsigned char *line, size_t len,
    tg_audit_brief_t *br);
static size_t tg_audit_find(const unsigned char *p, size_t len, size_t from,
    const char *lit, size_t n);
static tg_rc_t tg_audit_sha256_hex(const void *a, size_t alen, const void *b,
    size_t blen, const void *c, size_t clen, char hex[65]);
static int tg_audit_hex(const char *s, size_t len);


const char *
tg_decision_name(tg_decision_t d)
{
    switch (d) {

    case TG_DECISION_ALLOW:
        return "allow";

    case TG_DECISION_DENY:
        return "deny";

    case TG_DECISION_INVALID:
        return "invalid";

    case TG_DECISION_WOULD_DENY:
        return "would_deny";

    case TG_DECISION_ERROR:
        return "error";

    case TG_DECISION_DONE:
        return "done";
    }

    /* a value outside the enum is a bug; say so rather than guess */
    return "unknown";
}


/*
 * The first and the last second the format holds: 0000-01-01T00:00:00Z
 * and 9999-12-31T23:59:59Z.
 */
#define TG_RFC3339_MIN  (-62167219200LL)
#define TG_RFC3339_MAX  253402300799LL

/* the calendar of every record's time stamp is arithmetic (tg_core.h) */

tg_rc_t
tg_rfc3339_ms(int64_t sec, int msec, char out[TG_RFC3339_MS_LEN + 1])
{
    int       month, day;
    int64_t   days, rem, year;

    if (out == NULL || msec < 0 || msec > 999
        || sec < TG_RFC3339_MIN || sec > TG_RFC3339_MAX)
    {
        return TG_ERR_ARG;
    }

    /*
     * sec - TG_RFC3339_MIN >= 0: the divisions need no floor correction;
     * TG_RFC3339_MIN is day -719528
     */

    days = (sec - TG_RFC3339_MIN) / 86400 - 719528;
    rem = (sec - TG_RFC3339_MIN) % 86400;

    tg_civil_from_days(days, &year, &month, &day);

    tg_dec2(out, (unsigned) year / 100);
    tg_dec2(out + 2, (unsigned) year % 100);
    out[4] = '-';
    tg_dec2(out + 5, (unsigned) month);
    out[7] = '-';
    tg_dec2(out + 8, (unsigned) day);
    out[10] = 'T';
    tg_dec2(out + 11, (unsigned) (rem / 3600));
    out[13] = ':';
    tg_dec2(out + 14, (unsigned) (rem / 60 % 60));
    out[16] = ':';
    tg_dec2(out + 17, (unsigned) (rem % 60));
    out[19] = '.';
    out[20] = (char) ('0' + msec / 100);
    tg_dec2(out + 21, (unsigned) msec % 100);
    out[23] = 'Z';
    out[24] = '\0';

    return TG_OK;
}


size_t
tg_audit_bound(const tg_audit_record_t *r)
{
    size_t  i, n;

    n = TG_AUDIT_FIXED;

    if (r->id != NULL) {
        tg_audit_bound_add(&n, strlen(r->id));
    }

    tg_audit_bound_str(&n, r->client.data, r->client.len);
    tg_audit_bound_str(&n, r->project_id.data, r->project_id.len);
    tg_audit_bound_str(&n, r->method.data,
                       tg_audit_kept(r->method.len, TG_AUDIT_METHOD_MAX));
    tg_audit_bound_str(&n, r->uri.data,
                       tg_audit_kept(r->uri.len, TG_AUDIT_URI_MAX));
    tg_audit_bound_str(&n, r->reason.data, r->reason.len);
    tg_audit_bound_str(&n, r->user.data,
                       tg_audit_kept(r->user.len, TG_AUDIT_USER_MAX));
    tg_audit_bound_str(&n, r->policy.data, r->policy.len);
    tg_audit_bound_str(&n, r->request_id.data,
                       tg_audit_kept(r->request_id.len,
                                     TG_AUDIT_REQUEST_ID_MAX));

    if (r->body_sha256 != NULL) {
        tg_audit_bound_add(&n, strlen(r->body_sha256));
    }

    if (r->prev != NULL) {
        tg_audit_bound_add(&n, strlen(r->prev));
    }

    if (r->items.data != NULL) {
        /* copied as they are */
        n = (r->items.len < SIZE_MAX / 2 - n) ? n + r->items.len
                                              : SIZE_MAX - TG_AUDIT_ATTEMPT;

    } else if (r->instances != NULL) {
        for (i = 0; i < r->ninstances; i++) {
            n += TG_AUDIT_INSTANCE;
            tg_audit_bound_str(&n, r->instances[i].instance_id.data,
                             r->instances[i].instance_id.len);
            tg_audit_bound_str(&n, r->instances[i].current_version.data,
                             r->instances[i].current_version.len);
        }
    }

    if (r->denied != NULL) {
        for (i = 0; i < r->ndenied; i++) {
            n += TG_AUDIT_ITEM;
            tg_audit_bound_str(&n, r->denied[i].data, r->denied[i].len);
        }
    }

    if (r->upstream != NULL) {
        for (i = 0; i < r->nupstream; i++) {
            n += TG_AUDIT_ATTEMPT;
            tg_audit_bound_str(&n, r->upstream[i].addr.data,
                             r->upstream[i].addr.len);
        }
    }

    if (r->reentries != NULL) {
        for (i = 0; i < r->nreentries; i++) {
            n += TG_AUDIT_ITEM;
            tg_audit_bound_str(&n, r->reentries[i].data, r->reentries[i].len);
        }
    }

    return n;
}


/* n += the escaped length of len bytes at most; SIZE_MAX once too many */
static void
tg_audit_bound_add(size_t *n, size_t len)
{
    if (len > (SIZE_MAX - *n - TG_AUDIT_ATTEMPT) / TG_AUDIT_ESCAPE_MAX) {
        *n = SIZE_MAX - TG_AUDIT_ATTEMPT;
        return;
    }

    *n += len * TG_AUDIT_ESCAPE_MAX;
}


static void
tg_audit_bound_str(size_t *n, const unsigned char *s, size_t len)
{
    if (s != NULL) {
        tg_audit_bound_add(n, len);
    }
}


/*
 * The bytes of a field kept: those that come from the request line and
 * headers (method, uri, user) or the upstream (request_id) have no
 * bound but nginx's buffers, and a start reads the file's last record
 * back within a length it knows (ngx_http_taurus_guard_audit_record_max()).
 */
static size_t
tg_audit_kept(size_t len, size_t max)
{
    return (len < max) ? len : max;
}


size_t
tg_audit_encode(const tg_audit_record_t *rec, unsigned char *buf,
    size_t size)
{
    tg_out_t  o;

    if (rec == NULL) {
        return 0;
    }

    /* a buffer of the bound needs no sizing pass */

    if (buf == NULL || size < tg_audit_bound(rec)) {
        tg_out_init(&o, NULL, 0);
        tg_audit_write_head(&o, rec);
        tg_audit_write_link(&o, rec->prev);

        if (buf == NULL || size < o.len) {
            return o.len;
        }
    }

    tg_out_init(&o, buf, size);
    tg_audit_write_head(&o, rec);
    tg_audit_write_link(&o, rec->prev);

    return o.len;
}


void
tg_audit_write_head(tg_out_t *o, const tg_audit_record_t *r)
{
    int          brief;
    size_t       i;
    const char  *s;
    char         ts[TG_RFC3339_MS_LEN + 1];

    s = (r->id != NULL) ? r->id : "";
    tg_audit_str(o, "{\"id\":\"", (const unsigned char *) s, strlen(s));

    /* an unrepresentable time is an empty string, never a made-up one */
    if (tg_rfc3339_ms(r->time_sec, r->time_msec, ts) == TG_OK) {
        tg_audit_lit(o, ",\"time\":\"");
        tg_out_put(o, ts, TG_RFC3339_MS_LEN);
        tg_out_byte(o, '"');

    } else {
        tg_audit_lit(o, ",\"time\":\"\"");
    }

    tg_audit_str(o, ",\"client\":\"", r->client.data,
                 (r->client.data != NULL) ? r->client.len : 0);

    if (r->project_id.data != NULL) {
        tg_audit_str(o, ",\"project_id\":\"", r->project_id.data,
                     r->project_id.len);
    }

    if (r->method.data != NULL) {
        tg_audit_str(o, ",\"method\":\"", r->method.data,
                     tg_audit_kept(r->method.len, TG_AUDIT_METHOD_MAX));
    }

    if (r->uri.data != NULL) {
        tg_audit_str(o, ",\"uri\":\"", r->uri.data,
                     tg_audit_kept(r->uri.len, TG_AUDIT_URI_MAX));
    }

    if (r->instances != NULL && r->ninstances > 0) {
        tg_audit_lit(o, ",\"instances\":[");

        /* the brief form of the link (tg_audit.h): body_sha256 covers them */
        brief = (r->has_delay && r->body_sha256 != NULL);

        if (brief) {
            tg_out_hash_pause(o);
        }

        if (r->items.data != NULL) {
            tg_out_put(o, r->items.data, r->items.len);

        } else {
            for (i = 0; i < r->ninstances; i++) {
                if (i > 0) {
                    tg_out_byte(o, ',');
                }

                tg_audit_str(o, "{\"instance_id\":\"",
                             r->instances[i].instance_id.data,
                             r->instances[i].instance_id.len);
                tg_audit_str(o, ",\"current_version\":\"",
                             r->instances[i].current_version.data,
                             r->instances[i].current_version.len);
                tg_out_byte(o, '}');
            }
        }

        if (brief) {
            tg_out_hash_resume(o);
        }

        tg_out_byte(o, ']');
    }

    if (r->has_delay) {
        if (r->delay_kind == TG_DELAY_BOOL) {
            if (r->delay) {
                tg_audit_lit(o, ",\"delay\":true");

            } else {
                tg_audit_lit(o, ",\"delay\":false");
            }

        } else if (r->delay) {
            tg_audit_lit(o, ",\"delay\":\"true\"");

        } else {
            tg_audit_lit(o, ",\"delay\":\"false\"");
        }
    }

    s = tg_decision_name(r->decision);
    tg_audit_str(o, ",\"decision\":\"", (const unsigned char *) s,
                 strlen(s));

    if (r->reason.data != NULL) {
        tg_audit_str(o, ",\"reason\":\"", r->reason.data,
                     r->reason.len);
    }

    if (r->denied != NULL && r->ndenied > 0) {
        tg_audit_lit(o, ",\"denied\":[");

        for (i = 0; i < r->ndenied; i++) {
            if (i > 0) {
                tg_out_byte(o, ',');
            }

            tg_audit_str(o, "\"", r->denied[i].data, r->denied[i].len);
        }

        tg_out_byte(o, ']');
    }

    if (r->status != 0) {
        tg_audit_num(o, ",\"status\":", r->status);
    }

    if (r->body_sha256 != NULL) {
        tg_audit_str(o, ",\"body_sha256\":\"",
                     (const unsigned char *) r->body_sha256,
                     strlen(r->body_sha256));
    }

    if (r->user.data != NULL) {
        tg_audit_str(o, ",\"user\":\"", r->user.data,
                     tg_audit_kept(r->user.len, TG_AUDIT_USER_MAX));
    }

    if (r->policy.data != NULL) {
        tg_audit_str(o, ",\"policy\":\"", r->policy.data,
                     r->policy.len);
    }

    if (r->duration_ms != -1) {
        tg_audit_num(o, ",\"duration_ms\":", r->duration_ms);
    }

    if (r->bytes != -1) {
        tg_audit_num(o, ",\"bytes\":", r->bytes);
    }

    if (r->has_forwarded) {
        if (r->forwarded) {
            tg_audit_lit(o, ",\"forwarded\":true");

        } else {
            tg_audit_lit(o, ",\"forwarded\":false");
        }
    }

    if (r->request_id.data != NULL) {
        tg_audit_str(o, ",\"request_id\":\"", r->request_id.data,
                     tg_audit_kept(r->request_id.len,
                                   TG_AUDIT_REQUEST_ID_MAX));
    }

    if (r->upstream != NULL && r->nupstream > 0) {
        tg_audit_lit(o, ",\"upstream\":[");

        for (i = 0; i < r->nupstream; i++) {
            if (i > 0) {
                tg_out_byte(o, ',');
            }

            tg_audit_str(o, "{\"addr\":\"", r->upstream[i].addr.data,
                         r->upstream[i].addr.len);

            if (r->upstream[i].status != 0) {
                tg_audit_num(o, ",\"status\":", r->upstream[i].status);
            }

            tg_audit_num(o, ",\"bytes_sent\":", r->upstream[i].bytes_sent);
            tg_out_byte(o, '}');
        }

        tg_out_byte(o, ']');
    }

    if (r->reentries != NULL && r->nreentries > 0) {
        tg_audit_lit(o, ",\"reentries\":[");

        for (i = 0; i < r->nreentries; i++) {
            if (i > 0) {
                tg_out_byte(o, ',');
            }

            tg_audit_str(o, "\"", r->reentries[i].data,
                         r->reentries[i].len);
        }

        tg_out_byte(o, ']');
    }
}


void
tg_audit_write_link(tg_out_t *o, const char *prev)
{
    /* last, so a reader sees the whole record before the link */

    if (prev != NULL) {
        tg_audit_str(o, ",\"prev\":\"", (const unsigned char *) prev,
                     strlen(prev));
    }

    tg_audit_lit(o, "}\n");
}


/*
 * The stand-in names only what the gateway made or checked itself, each
 * of a known length: an id and a digest of hex digits, a project ID that
 * passed tg_project_id_check(), the decision, numbers.  A field that is
 * not so is left out, which keeps the stand-in short whatever the record
 * held.
 */

void
tg_audit_write_stand_in(tg_out_t *o, const tg_audit_record_t *r,
    size_t bytes)
{
    const char  *s;
    char         ts[TG_RFC3339_MS_LEN + 1];

    s = (r->id != NULL && tg_audit_hex(r->id, TG_AUDIT_ID_LEN)) ? r->id : "";
    tg_audit_str(o, "{\"id\":\"", (const unsigned char *) s, strlen(s));

    if (tg_rfc3339_ms(r->time_sec, r->time_msec, ts) == TG_OK) {
        tg_audit_lit(o, ",\"time\":\"");
        tg_out_put(o, ts, TG_RFC3339_MS_LEN);
        tg_out_byte(o, '"');

    } else {
        tg_audit_lit(o, ",\"time\":\"\"");
    }

    s = tg_decision_name(r->decision);
    tg_audit_str(o, ",\"decision\":\"", (const unsigned char *) s,
                 strlen(s));

    if (r->project_id.data != NULL
        && tg_project_id_check(r->project_id.data, r->project_id.len)
           == TG_OK)
    {
        tg_audit_str(o, ",\"project_id\":\"", r->project_id.data,
                     r->project_id.len);
    }

    if (r->body_sha256 != NULL && tg_audit_hex(r->body_sha256, 64)) {
        tg_audit_str(o, ",\"body_sha256\":\"",
                     (const unsigned char *) r->body_sha256, 64);
    }

    if (r->status > 0 && r->status < 1000) {
        tg_audit_num(o, ",\"status\":", r->status);
    }

    tg_audit_lit(o, ",\"truncated\":true");
    tg_audit_num(o, ",\"bytes\":", (int64_t) bytes);
}


void
tg_audit_write_stand_in_link(tg_out_t *o, const char *link)
{
    if (link != NULL && tg_audit_hex(link, 64)) {
        tg_audit_str(o, ",\"link\":\"", (const unsigned char *) link, 64);
    }

    tg_out_byte(o, '}');
}


/* s is exactly len hex digits */
static int
tg_audit_hex(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')
              || (s[i] >= 'A' && s[i] <= 'F')))
        {
            return 0;
        }
    }

    return s[len] == '\0';
}


/*
 * head, the escaped string and its closing quote; head is a constant of
 * ours that ends with the opening quote.  A NULL s is the empty string.
 */
static void
tg_audit_field(tg_out_t *o, const char *head, size_t head_len,
    const unsigned char *s, size_t len)
{
    unsigned char  *p;

    /*
     * Most strings have nothing to escape (the id, the digests, the
     * addresses): with room for them as they are, the head, the string
     * and its closing quote go in one piece.
     */

    if (s != NULL && tg_json_plain_len(s, len) == len
        && (p = tg_out_reserve(o, head_len + len + 1)) != NULL)
    {
        memcpy(p, head, head_len);
        memcpy(p + head_len, s, len);
        p[head_len + len] = '"';
        return;
    }

    tg_out_put(o, head, head_len);

    if (s != NULL) {
        tg_out_json(o, s, len);
    }

    tg_out_byte(o, '"');
}


/* head (",\"name\":") and v in decimal, as printf's %lld writes it */
static void
tg_audit_int(tg_out_t *o, const char *head, size_t head_len, int64_t v)
{
    char      *p;
    uint64_t   u;
    char       num[24];

    tg_out_put(o, head, head_len);

    /* the magnitude as unsigned: -INT64_MIN does not fit an int64_t */
    u = (v < 0) ? 0 - (uint64_t) v : (uint64_t) v;
    p = num + sizeof(num);

    while (u >= 100) {
        p -= 2;
        tg_dec2(p, (unsigned) (u % 100));
        u /= 100;
    }

    if (u >= 10) {
        p -= 2;
        tg_dec2(p, (unsigned) u);

    } else {
        *--p = (char) ('0' + u);
    }

    if (v < 0) {
        *--p = '-';
    }

    tg_out_put(o, p, (size_t) (num + sizeof(num) - p));
}


/*
 * Where the brief form's pieces are in a line of ours: the items, then
 * right after them ],"delay": and its value, later body_sha256's digits.
 * Strings in a record are escaped, so none of the names looked for can
 * be found inside one.  0 when the line has no brief form.
 */

static int
tg_audit_brief_form(const unsigned char *line, size_t len,
    tg_audit_brief_t *br)
{
    int     in_string;
    size_t  i, k, n;

    static const char  *delays[] = { "true", "false", "\"true\"",
                                     "\"false\"" };

    i = tg_audit_find(line, len, 0, tg_audit_instances,
                      tg_lit_len(tg_audit_instances));
    if (i == len) {
        return 0;
    }

    br->items = i + tg_lit_len(tg_audit_instances);

    /* the ']' that closes the array: the first one outside a string */

    in_string = 0;

    for (i = br->items; i < len; i++) {
        if (in_string) {
            if (line[i] == '\\') {
                i++;

            } else if (line[i] == '"') {
                in_string = 0;
            }

        } else if (line[i] == '"') {
            in_string = 1;

        } else if (line[i] == ']') {
            break;
        }
    }

    if (i >= len || len - i < tg_lit_len(tg_audit_body_delay)
        || memcmp(line + i, tg_audit_body_delay,
                  tg_lit_len(tg_audit_body_delay)) != 0)
    {
        return 0;
    }

    br->items_end = i;
    i += tg_lit_len(tg_audit_body_delay);

    for (k = 0; k < sizeof(delays) / sizeof(delays[0]); k++) {
        n = strlen(delays[k]);

        if (len - i > n && memcmp(line + i, delays[k], n) == 0
            && (line[i + n] == ',' || line[i + n] == '}'))
        {
            break;
        }
    }

    if (k == sizeof(delays) / sizeof(delays[0])) {
        return 0;
    }

    br->delay_end = i + n;

    i = tg_audit_find(line, len, br->delay_end, tg_audit_body_sha256,
                      tg_lit_len(tg_audit_body_sha256));
    if (i == len) {
        return 0;
    }

    i += tg_lit_len(tg_audit_body_sha256);

    if (len - i < TG_SHA256_LEN * 2 + 1 || line[i + TG_SHA256_LEN * 2] != '"')
    {
        return 0;
    }

    for (k = 0; k < TG_SHA256_LEN * 2; k++) {
        if (!((line[i + k] >= '0' && line[i + k] <= '9')
              || (line[i + k] >= 'a' && line[i + k] <= 'f')))
        {
            return 0;
        }
    }

    br->body_sha256 = i;

    return 1;
}


/* the first lit in p[from, len), or len */

static size_t
tg_audit_find(const unsigned char *p, size_t len, size_t from,
    const char *lit, size_t n)
{
    size_t  i;

    if (n > len) {
        return len;
    }

    for (i = from; i <= len - n; i++) {
        if (p[i] == (unsigned char) lit[0] && memcmp(p + i, lit, n) == 0) {
            return i;
        }
    }

    return len;
}


/* the hex SHA-256 of up to three pieces, one after the other */

static tg_rc_t
tg_audit_sha256_hex(const void *a, size_t alen, const void *b, size_t blen,
    const void *c, size_t clen, char hex[65])
{
    tg_rc_t        rc;
    tg_sha256_t    sha;
    unsigned char  md[TG_SHA256_LEN];

    tg_sha256_init(&sha);
    tg_sha256_update(&sha, a, alen);
    tg_sha256_update(&sha, b, blen);
    tg_sha256_update(&sha, c, clen);

    rc = tg_sha256_final(&sha, md);
    if (rc != TG_OK) {
        return rc;
    }

    tg_sha256_hex_of(md, hex);

    return TG_OK;
}


/* one hash: a binary upgrade's two masters may read back every record */

tg_rc_t
tg_audit_chain_digest(const unsigned char *line, size_t len, char hex[65])
{
    tg_audit_brief_t  br;

    if (!tg_audit_brief_form(line, len, &br)) {
        return tg_audit_sha256_hex(line, len, "", 0, "", 0, hex);
    }

    return tg_audit_sha256_hex(line, br.items, line + br.items_end,
                               len - br.items_end, "", 0, hex);
}


tg_rc_t
tg_audit_line_digests(const unsigned char *line, size_t len,
    tg_audit_digests_t *d)
{
    tg_rc_t           rc;
    tg_audit_brief_t  br;
    char              body[65];

    d->brief[0] = '\0';
    d->body_ok = 0;
    d->items = 0;
    d->items_end = 0;
    d->body_sha256 = 0;

    rc = tg_audit_sha256_hex(line, len, "", 0, "", 0, d->full);
    if (rc != TG_OK || !tg_audit_brief_form(line, len, &br)) {
        return rc;
    }

    rc = tg_audit_chain_digest(line, len, d->brief);
    if (rc != TG_OK) {
        return rc;
    }

    /* the body again: its head, the items to the delay's value, '}' */

    rc = tg_audit_sha256_hex(tg_audit_body_head,
                             tg_lit_len(tg_audit_body_head), line + br.items,
                             br.delay_end - br.items, "}", 1, body);
    if (rc != TG_OK) {
        return rc;
    }

    d->body_ok = (memcmp(body, line + br.body_sha256, TG_SHA256_LEN * 2)
                  == 0);
    d->items = br.items;
    d->items_end = br.items_end;
    d->body_sha256 = br.body_sha256;

    return TG_OK;
}

