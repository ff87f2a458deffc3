/*
 * The audit record encoder.
 *
 * One pass of the same code both sizes and writes a record: the writer
 * counts every byte and stores it only in the second pass, which runs
 * only when the caller's buffer holds the whole record, so the length
 * returned is the length written by construction.  Every string, trusted
 * or not, goes through tg_json_escape().
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tg_audit.h"
#include "tg_escape.h"


typedef struct {
    unsigned char       *pos;       /* NULL: count only */
    size_t               len;
} tg_audit_out_t;


static void tg_audit_record(tg_audit_out_t *o, const tg_audit_record_t *r);
static void tg_audit_raw(tg_audit_out_t *o, const char *s, size_t len);
static void tg_audit_lit(tg_audit_out_t *o, const char *s);
static void tg_audit_string(tg_audit_out_t *o, const unsigned char *s,
    size_t len);
static void tg_audit_field(tg_audit_out_t *o, const char *name,
    const unsigned char *s, size_t len);
static void tg_audit_int(tg_audit_out_t *o, const char *name, int64_t v);
static void tg_put_digits(char *p, unsigned v, int n);


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


tg_rc_t
tg_rfc3339_ms(int64_t sec, int msec, char out[TG_RFC3339_MS_LEN + 1])
{
    time_t     t;
    struct tm  tm;

    if (out == NULL || msec < 0 || msec > 999) {
        return TG_ERR_ARG;
    }

    t = (time_t) sec;

    if ((int64_t) t != sec || gmtime_r(&t, &tm) == NULL) {
        return TG_ERR_ARG;
    }

    /* the format has room for years 0000..9999 only */
    if (tm.tm_year < 0 - 1900 || tm.tm_year > 9999 - 1900) {
        return TG_ERR_ARG;
    }

    tg_put_digits(out, (unsigned) (tm.tm_year + 1900), 4);
    out[4] = '-';
    tg_put_digits(out + 5, (unsigned) (tm.tm_mon + 1), 2);
    out[7] = '-';
    tg_put_digits(out + 8, (unsigned) tm.tm_mday, 2);
    out[10] = 'T';
    tg_put_digits(out + 11, (unsigned) tm.tm_hour, 2);
    out[13] = ':';
    tg_put_digits(out + 14, (unsigned) tm.tm_min, 2);
    out[16] = ':';
    tg_put_digits(out + 17, (unsigned) tm.tm_sec, 2);
    out[19] = '.';
    tg_put_digits(out + 20, (unsigned) msec, 3);
    out[23] = 'Z';
    out[24] = '\0';

    return TG_OK;
}


static void
tg_put_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char) ('0' + v % 10);
        v /= 10;
    }
}


size_t
tg_audit_encode(const tg_audit_record_t *rec, unsigned char *buf,
    size_t size)
{
    tg_audit_out_t  o;

    if (rec == NULL) {
        return 0;
    }

    o.pos = NULL;
    o.len = 0;

    tg_audit_record(&o, rec);

    if (buf != NULL && size >= o.len) {
        o.pos = buf;
        o.len = 0;

        tg_audit_record(&o, rec);
    }

    return o.len;
}


static void
tg_audit_record(tg_audit_out_t *o, const tg_audit_record_t *r)
{
    size_t       i;
    const char  *s;
    char         ts[TG_RFC3339_MS_LEN + 1];

    s = (r->id != NULL) ? r->id : "";
    tg_audit_lit(o, "{");
    tg_audit_field(o, "id", (const unsigned char *) s, strlen(s));

    /* an unrepresentable time is an empty string, never a made-up one */
    if (tg_rfc3339_ms(r->time_sec, r->time_msec, ts) != TG_OK) {
        ts[0] = '\0';
    }

    tg_audit_lit(o, ",");
    tg_audit_field(o, "time", (const unsigned char *) ts, strlen(ts));

    tg_audit_lit(o, ",");
    tg_audit_field(o, "client", r->client.data,
                   (r->client.data != NULL) ? r->client.len : 0);

    if (r->project_id.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "project_id", r->project_id.data,
                       r->project_id.len);
    }

    if (r->method.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "method", r->method.data, r->method.len);
    }

    if (r->uri.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "uri", r->uri.data, r->uri.len);
    }

    if (r->instances != NULL && r->ninstances > 0) {
        tg_audit_lit(o, ",\"instances\":[");

        for (i = 0; i < r->ninstances; i++) {
            tg_audit_lit(o, (i == 0) ? "{" : ",{");
            tg_audit_field(o, "instance_id", r->instances[i].instance_id.data,
                           r->instances[i].instance_id.len);
            tg_audit_lit(o, ",");
            tg_audit_field(o, "current_version",
                           r->instances[i].current_version.data,
                           r->instances[i].current_version.len);
            tg_audit_lit(o, "}");
        }

        tg_audit_lit(o, "]");
    }

    if (r->has_delay) {
        if (r->delay_kind == TG_DELAY_BOOL) {
            tg_audit_lit(o, r->delay ? ",\"delay\":true" : ",\"delay\":false");

        } else {
            tg_audit_lit(o, r->delay ? ",\"delay\":\"true\""
                                     : ",\"delay\":\"false\"");
        }
    }

    s = tg_decision_name(r->decision);
    tg_audit_lit(o, ",");
    tg_audit_field(o, "decision", (const unsigned char *) s, strlen(s));

    if (r->reason.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "reason", r->reason.data, r->reason.len);
    }

    if (r->denied != NULL && r->ndenied > 0) {
        tg_audit_lit(o, ",\"denied\":[");

        for (i = 0; i < r->ndenied; i++) {
            if (i > 0) {
                tg_audit_lit(o, ",");
            }

            tg_audit_string(o, r->denied[i].data, r->denied[i].len);
        }

        tg_audit_lit(o, "]");
    }

    if (r->status != 0) {
        tg_audit_int(o, "status", r->status);
    }

    if (r->body_sha256 != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "body_sha256",
                       (const unsigned char *) r->body_sha256,
                       strlen(r->body_sha256));
    }

    if (r->user.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "user", r->user.data, r->user.len);
    }

    if (r->policy.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "policy", r->policy.data, r->policy.len);
    }

    if (r->duration_ms != -1) {
        tg_audit_int(o, "duration_ms", r->duration_ms);
    }

    if (r->bytes != -1) {
        tg_audit_int(o, "bytes", r->bytes);
    }

    if (r->has_forwarded) {
        tg_audit_lit(o, r->forwarded ? ",\"forwarded\":true"
                                     : ",\"forwarded\":false");
    }

    if (r->request_id.data != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "request_id", r->request_id.data,
                       r->request_id.len < TG_AUDIT_REQUEST_ID_MAX
                       ? r->request_id.len : TG_AUDIT_REQUEST_ID_MAX);
    }

    if (r->upstream != NULL && r->nupstream > 0) {
        tg_audit_lit(o, ",\"upstream\":[");

        for (i = 0; i < r->nupstream; i++) {
            tg_audit_lit(o, (i == 0) ? "{" : ",{");
            tg_audit_field(o, "addr", r->upstream[i].addr.data,
                           (r->upstream[i].addr.data != NULL)
                           ? r->upstream[i].addr.len : 0);

            if (r->upstream[i].status != 0) {
                tg_audit_int(o, "status", r->upstream[i].status);
            }

            tg_audit_int(o, "bytes_sent", r->upstream[i].bytes_sent);
            tg_audit_lit(o, "}");
        }

        tg_audit_lit(o, "]");
    }

    if (r->reentries != NULL && r->nreentries > 0) {
        tg_audit_lit(o, ",\"reentries\":[");

        for (i = 0; i < r->nreentries; i++) {
            if (i > 0) {
                tg_audit_lit(o, ",");
            }

            tg_audit_string(o, r->reentries[i].data, r->reentries[i].len);
        }

        tg_audit_lit(o, "]");
    }

    /* last, so a reader sees the whole record before the link */

    if (r->prev != NULL) {
        tg_audit_lit(o, ",");
        tg_audit_field(o, "prev", (const unsigned char *) r->prev,
                       strlen(r->prev));
    }

    tg_audit_lit(o, "}\n");
}


static void
tg_audit_raw(tg_audit_out_t *o, const char *s, size_t len)
{
    if (o->pos != NULL) {
        memcpy(o->pos + o->len, s, len);
    }

    o->len += len;
}


static void
tg_audit_lit(tg_audit_out_t *o, const char *s)
{
    tg_audit_raw(o, s, strlen(s));
}


/* a quoted, escaped JSON string; a NULL s is the empty string */
static void
tg_audit_string(tg_audit_out_t *o, const unsigned char *s, size_t len)
{
    unsigned char  *end;

    if (s == NULL) {
        len = 0;
    }

    tg_audit_lit(o, "\"");

    if (len > 0) {
        if (o->pos != NULL) {
            end = tg_json_escape(o->pos + o->len, s, len);
            o->len = end - o->pos;

        } else {
            o->len += tg_json_escaped_len(s, len);
        }
    }

    tg_audit_lit(o, "\"");
}


/* "name":"value"; names are our own constants, escaped all the same */
static void
tg_audit_field(tg_audit_out_t *o, const char *name, const unsigned char *s,
    size_t len)
{
    tg_audit_string(o, (const unsigned char *) name, strlen(name));
    tg_audit_lit(o, ":");
    tg_audit_string(o, s, len);
}


/* ,"name":number */
static void
tg_audit_int(tg_audit_out_t *o, const char *name, int64_t v)
{
    int   n;
    char  num[32];

    tg_audit_lit(o, ",");
    tg_audit_string(o, (const unsigned char *) name, strlen(name));
    tg_audit_lit(o, ":");

    n = snprintf(num, sizeof(num), "%" PRId64, v);
    if (n < 0 || (size_t) n >= sizeof(num)) {
        n = 0;
    }

    /* n == 0 cannot happen for an int64_t; keep the JSON valid anyway */
    if (n == 0) {
        tg_audit_lit(o, "0");
        return;
    }

    tg_audit_raw(o, num, (size_t) n);
}


tg_rc_t
tg_audit_parse_link(const unsigned char *line, size_t len, char prev[65],
    char decision[16])
{
    size_t    i;
    cJSON    *root, *p, *d;
    tg_rc_t   rc;

    root = cJSON_ParseWithLength((const char *) line, len);

    if (root == NULL || !cJSON_IsObject(root)) {
        rc = TG_ERR_SYNTAX;
        goto done;
    }

    p = cJSON_GetObjectItemCaseSensitive(root, "prev");
    d = cJSON_GetObjectItemCaseSensitive(root, "decision");

    if (!cJSON_IsString(p) || !cJSON_IsString(d)
        || strlen(p->valuestring) != 64 || strlen(d->valuestring) > 15)
    {
        rc = TG_ERR_MISSING_KEY;
        goto done;
    }

    for (i = 0; i < 64; i++) {
        if (!((p->valuestring[i] >= '0' && p->valuestring[i] <= '9')
              || (p->valuestring[i] >= 'a' && p->valuestring[i] <= 'f')))
        {
            rc = TG_ERR_MISSING_KEY;
            goto done;
        }
    }

    memcpy(prev, p->valuestring, 65);
    memcpy(decision, d->valuestring, strlen(d->valuestring) + 1);

    rc = TG_OK;

done:

    cJSON_Delete(root);

    return rc;
}
