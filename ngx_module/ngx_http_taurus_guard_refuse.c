
/*
 * taurus-guard: what the gateway answers and records of a refusal.  One
 * function turns (status, reason) into the error code, the decision, the
 * audit record and the JSON answer; the response headers of every
 * guarded answer carry the audit id (X-Taurus-Guard-Id, and X-Request-Id
 * on those that are not the cloud's).
 */


#include "ngx_http_taurus_guard_module.h"
#include "tg_escape.h"


/*
 * Bytes of a refused target kept in its record: the route is 71 bytes,
 * the rest is the caller's, who may send kilobytes of it in every
 * request line.
 */


static ngx_int_t ngx_http_taurus_guard_send_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after);
static ngx_buf_t *ngx_http_taurus_guard_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied);
static ngx_int_t ngx_http_taurus_guard_nginx_page(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
static void ngx_http_taurus_guard_upstream_request_id(ngx_http_request_t *r,
    tg_str_t *id);


/*
 * Fills rec with what every record of the request carries, from the
 * request and its ctx as they are now; it writes nothing.  The caller
 * adds what its kind of record has (the batch, the denied IDs, the
 * tries) and hands it to ngx_http_taurus_guard_audit().
 */

void
ngx_http_taurus_guard_record(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, tg_audit_record_t *rec)
{
    ngx_time_t                         *tp;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    /*
     * Refused before the check started: the user is asked for now.  A
     * user whose value cannot be made (no memory) is left out; the record
     * is still written, as a decision without it beats none.
     */
    (void) ngx_http_taurus_guard_ctx_user(r, ctx);

    ngx_memzero(rec, sizeof(tg_audit_record_t));

    tp = ngx_timeofday();

    rec->id = (const char *) ctx->id;
    rec->time_sec = tp->sec;
    rec->time_msec = (int) tp->msec;
    rec->client.data = r->connection->addr_text.data;
    rec->client.len = r->connection->addr_text.len;
    rec->decision = (tg_decision_t) ctx->decision;
    rec->project_id.data = ctx->project_id.data;
    rec->project_id.len = ctx->project_id.len;
    rec->status = (int) ctx->status;
    rec->policy.data = (const unsigned char *) mcf->policy;
    rec->policy.len = TG_SHA256_HEX_LEN;
    rec->duration_ms = -1;
    rec->bytes = -1;

    if (ctx->user.len) {
        rec->user.data = ctx->user.data;
        rec->user.len = ctx->user.len;
    }

    if (ctx->decision != TG_DECISION_ALLOW
        && ctx->decision != TG_DECISION_DONE)
    {
        rec->reason.data = ctx->reason.data;
        rec->reason.len = ctx->reason.len;
    }

    if (ctx->project_id.len == 0) {
        /* a refused route: say what was asked */
        rec->method.data = r->method_name.data;
        rec->method.len = r->method_name.len;
        rec->uri.data = r->unparsed_uri.data;
        rec->uri.len = r->unparsed_uri.len;
    }
}


/*
 * The one way a refusal leaves the gateway.  The status says the rest:
 * the error code is TG.0 and the status, the decision "deny" for 403
 * and for the policy's 409 and 429, "error" for 5xx, "invalid" for the
 * other 4xx.  Where the request is says what is recorded:
 * before the allow record, a record of the refusal (with the batch and
 * what was denied); after it, the error record closing the allow; after
 * the forward (a second forward refused), nothing: the done record
 * counts it; after a refusal (a redirect sent it on), nothing: its
 * record is written.  The log handler counts each request once in the
 * metrics.
 */

ngx_int_t
ngx_http_taurus_guard_refuse(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after)
{
    ngx_int_t           rc;
    tg_audit_record_t   rec;

    static ngx_str_t  unavailable = ngx_string("audit log unavailable");

    if (ctx->step == NGX_HTTP_TG_STEP_FORWARD
        || (ctx->step == NGX_HTTP_TG_STEP_DONE
            && ctx->decision != NGX_HTTP_TG_UNDECIDED))
    {
        return ngx_http_taurus_guard_send_json(r, ctx, status, reason, NULL,
                                               0);
    }

    if (ctx->step == NGX_HTTP_TG_STEP_AUDIT) {
        (void) ngx_http_taurus_guard_not_forwarded(r, ctx, status, reason);
        return ngx_http_taurus_guard_send_json(r, ctx, status, reason, NULL,
                                               0);
    }

    /*
     * A 409 or a 429 is a denial when the policy gave it.  nginx's own
     * (a limit_req_status 429 that error_page sends on, refused in
     * ngx_http_taurus_guard_reentry()) is recorded as the log handler
     * records one answered at once: "invalid".
     */

    ctx->decision = (status == NGX_HTTP_FORBIDDEN
                     || ((status == NGX_HTTP_CONFLICT
                          || status == NGX_HTTP_TOO_MANY_REQUESTS)
                         && ctx->step == NGX_HTTP_TG_STEP_AUTHORIZE))
                    ? TG_DECISION_DENY
                    : (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
                    ? TG_DECISION_ERROR : TG_DECISION_INVALID;
    ctx->reason = *reason;
    ctx->status = status;
    ctx->step = NGX_HTTP_TG_STEP_DONE;

    ngx_http_taurus_guard_record(r, ctx, &rec);

    if (ctx->batch != NULL) {
        rec.instances = ctx->batch->items;
        rec.ninstances = ctx->batch->nitems;
        rec.has_delay = 1;
        rec.delay = ctx->batch->delay;
        rec.delay_kind = ctx->batch->delay_kind;
    }

    if (denied != NULL) {
        rec.denied = denied->elts;
        rec.ndenied = denied->nelts;
    }

    ngx_http_taurus_guard_secrets_pop(r, ctx);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: request %s refused (%s): %ui",
                  ctx->id, tg_decision_name((tg_decision_t) ctx->decision),
                  status);

    if (ngx_http_taurus_guard_audit(r, ctx->audit, &rec, NGX_HTTP_TG_AUDIT_NOW)
        != NGX_OK)
    {
        /* a decision that cannot be recorded is not given */
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
        reason = &unavailable;
        denied = NULL;
        ctx->status = status;
    }

    /*
     * Retry-After says when a cooldown ends or a quota frees: it belongs
     * to a 409 or a 429 only, never to the 503 that replaced one.
     */

    if (status != NGX_HTTP_CONFLICT && status != NGX_HTTP_TOO_MANY_REQUESTS) {
        retry_after = 0;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_taurus_guard_send_json(r, ctx, status, reason, denied,
                                           retry_after);
}


ngx_int_t
ngx_http_taurus_guard_refuse_text(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, const char *text)
{
    ngx_str_t  reason;

    reason.data = (u_char *) text;
    reason.len = ngx_strlen(text);

    return ngx_http_taurus_guard_refuse(r, ctx, status, &reason, NULL, 0);
}


/* the refusal's JSON with its headers (Retry-After, Allow), sent */

static ngx_int_t
ngx_http_taurus_guard_send_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    b = ngx_http_taurus_guard_json(r, ctx, status, reason, denied);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;

    if (retry_after > 0) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.len = ngx_sprintf(h->value.data, "%T", retry_after)
                       - h->value.data;
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The answer's body, {"error_code":"TG.0403","error_msg":"...",
 * "audit_id":"...","denied":["..."]}, with its Content-Type and
 * Content-Length set.
 */

static ngx_buf_t *
ngx_http_taurus_guard_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied)
{
    u_char      *p;
    size_t       len;
    tg_str_t    *d;
    ngx_buf_t   *b;
    ngx_uint_t   i;

    len = sizeof("{\"error_code\":\"TG.0NNN\",\"error_msg\":\"\","
                 "\"audit_id\":\"\"}") - 1
          + tg_json_escaped_len(reason->data, reason->len)
          + TG_AUDIT_ID_LEN;

    d = NULL;

    if (denied != NULL && denied->nelts) {
        d = denied->elts;
        len += sizeof(",\"denied\":[]") - 1;

        for (i = 0; i < denied->nelts; i++) {
            len += sizeof("\"\",") - 1
                   + tg_json_escaped_len(d[i].data, d[i].len);
        }
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    p = b->last;
    p = ngx_sprintf(p, "{\"error_code\":\"TG.%04ui\",\"error_msg\":\"",
                    status % 10000);
    p = tg_json_escape(p, reason->data, reason->len);
    p = ngx_cpymem(p, "\",\"audit_id\":\"", sizeof("\",\"audit_id\":\"") - 1);
    p = ngx_cpymem(p, ctx->id, TG_AUDIT_ID_LEN);
    *p++ = '"';

    if (d != NULL) {
        p = ngx_cpymem(p, ",\"denied\":[", sizeof(",\"denied\":[") - 1);

        for (i = 0; i < denied->nelts; i++) {
            if (i) {
                *p++ = ',';
            }

            *p++ = '"';
            p = tg_json_escape(p, d[i].data, d[i].len);
            *p++ = '"';
        }

        *p++ = ']';
    }

    *p++ = '}';

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    return b;
}


/*
 * Every guarded response carries the audit id, the upstream's too; a
 * request nginx refused before the handler ran gets its id here.  The
 * SDKs show X-Request-Id as an error's request id: a refusal carries the
 * audit id there, a forwarded answer the cloud's own, untouched (the
 * audit id when the cloud sent none, a proxy error, say).  Called for
 * a main request by the module's header filter (module.c), which sends
 * the headers on unless this fails.
 */

ngx_int_t
ngx_http_taurus_guard_response_headers(ngx_http_request_t *r)
{
    ngx_uint_t                         i, request_id;
    ngx_list_part_t                   *part;
    ngx_table_elt_t                   *h, *o;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx == NULL) {
        lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

        if (!lcf->guard) {
            return NGX_OK;
        }

        ctx = ngx_http_taurus_guard_create_ctx(r, lcf);
        if (ctx == NULL) {
            /* already refused (500) for the same reason: answer anyway */
            return NGX_OK;
        }
    }

    if (ctx->step == NGX_HTTP_TG_STEP_FORWARD && ctx->token_src != NULL
        && r->headers_out.status == NGX_HTTP_UNAUTHORIZED)
    {
        /* expired early or revoked: the next request fetches a new one */
        ngx_http_taurus_guard_fetch_refused(r, ctx);
    }

    /*
     * The id and the decision are the gateway's: an upstream's header of
     * either name is not passed on, whatever proxy_pass_header says.
     */

    request_id = 0;
    part = &r->headers_out.headers.part;
    o = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            o = part->elts;
            i = 0;
        }

        if ((o[i].key.len == sizeof(NGX_HTTP_TG_ID_HEADER) - 1
             && ngx_strncasecmp(o[i].key.data,
                                (u_char *) NGX_HTTP_TG_ID_HEADER,
                                o[i].key.len) == 0)
            || (o[i].key.len == sizeof(NGX_HTTP_TG_DECISION_HEADER) - 1
                && ngx_strncasecmp(o[i].key.data,
                                   (u_char *) NGX_HTTP_TG_DECISION_HEADER,
                                   o[i].key.len) == 0))
        {
            o[i].hash = 0;
            continue;
        }

        if (o[i].hash != 0
            && o[i].key.len == sizeof(NGX_HTTP_TG_REQUEST_ID) - 1
            && ngx_strncasecmp(o[i].key.data, (u_char *) NGX_HTTP_TG_REQUEST_ID,
                               o[i].key.len) == 0)
        {
            if (ctx->step == NGX_HTTP_TG_STEP_FORWARD) {
                request_id = 1;

            } else {
                /* not the cloud's answer: the caller quotes the audit id */
                o[i].hash = 0;
            }
        }
    }

    if (!request_id) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, NGX_HTTP_TG_REQUEST_ID);
        h->value.data = ctx->id;
        h->value.len = TG_AUDIT_ID_LEN;
    }

    if (ctx->would_deny && ctx->step == NGX_HTTP_TG_STEP_FORWARD) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        /* report mode: the caller learns what enforce mode would do */

        h->hash = 1;
        ngx_str_set(&h->key, NGX_HTTP_TG_DECISION_HEADER);
        ngx_str_set(&h->value, "would_deny");
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, NGX_HTTP_TG_ID_HEADER);
    h->value.data = ctx->id;
    h->value.len = TG_AUDIT_ID_LEN;

    if (r->err_status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        && r->headers_out.status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        && ctx->decision == NGX_HTTP_TG_UNDECIDED
        && !r->internal)
    {
        return ngx_http_taurus_guard_nginx_page(r, ctx);
    }

    return NGX_OK;
}


/*
 * A body over client_max_body_size is refused by nginx itself: on
 * Content-Length before any phase runs, on a chunked body while the
 * gateway reads it.  On a guarded location that is the gateway's 413
 * all the same, so its answer is the API's error shape with the audit
 * id, not nginx's HTML page: the body filter (module.c) sends ctx->page
 * in place of the page's buffers.  Not internal and still 413: no
 * error_page of the operator's took it elsewhere.  As for the gateway's
 * own refusals, its record is written before the answer names its id,
 * or the answer is a 503.
 */

static ngx_int_t
ngx_http_taurus_guard_nginx_page(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_str_t          *reason;
    ngx_uint_t          status;
    ngx_buf_t          *b;
    tg_audit_record_t   rec;

    static ngx_str_t  too_large = ngx_string("body larger than"
                                             " client_max_body_size");
    static ngx_str_t  unavailable = ngx_string("audit log unavailable");
    static ngx_str_t  refused = ngx_string("refused by nginx before the"
                                           " gateway decided (status 413)");

    status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    reason = &too_large;

    if (ctx->audit != NULL) {
        ctx->decision = TG_DECISION_INVALID;
        ctx->status = status;
        ctx->reason = refused;
        ctx->step = NGX_HTTP_TG_STEP_DONE;

        ngx_http_taurus_guard_record(r, ctx, &rec);

        if (ngx_http_taurus_guard_audit(r, ctx->audit, &rec,
                                        NGX_HTTP_TG_AUDIT_NOW)
            != NGX_OK)
        {
            /* a refusal that cannot be recorded names no record */
            status = NGX_HTTP_SERVICE_UNAVAILABLE;
            reason = &unavailable;
            ctx->status = status;
            r->headers_out.status = status;
        }
    }

    b = ngx_http_taurus_guard_json(r, ctx, status, reason, NULL);
    if (b == NULL) {
        return NGX_ERROR;
    }

    ctx->page = ngx_alloc_chain_link(r->pool);
    if (ctx->page == NULL) {
        return NGX_ERROR;
    }

    ctx->page->buf = b;
    ctx->page->next = NULL;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return NGX_OK;
}


/*
 * The body filter's part for nginx's 413 page (err_status 413, a chain
 * to send): where the header filter put the JSON in the page's place
 * (ctx->page), the page's buffers are taken as sent and the JSON is
 * what goes on, once; NULL when nothing is left to send.  Any other
 * response with that err_status goes on as it is.
 */

ngx_chain_t *
ngx_http_taurus_guard_page_body(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t                  *cl;
    ngx_http_taurus_guard_ctx_t  *ctx;

    if (r != r->main) {
        return in;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    if (ctx == NULL || ctx->page == NULL) {
        return in;
    }

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
    }

    if (ctx->page_sent) {
        return NULL;
    }

    ctx->page_sent = 1;

    return ctx->page;
}


/*
 * An allowed batch that is not forwarded: the record closing its allow
 * says why, and the request ends with status (499: nothing is sent).
 */

ngx_int_t
ngx_http_taurus_guard_not_forwarded(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason)
{
    ctx->decision = TG_DECISION_ERROR;
    ctx->reason = *reason;
    ctx->status = status;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "taurus_guard: batch %s not forwarded: %V",
                  ctx->id, reason);

    /* the error record closing the allow; ctx->step is DONE after it */

    ngx_http_taurus_guard_close(r, ctx);

    return status;
}


/*
 * What the upstream made of a batch handed to the proxy.  A try sent it
 * bytes if its connection did (the try in flight when the client went
 * may not have them in its state yet); it was answered if the upstream's
 * response header came (nginx gives a try that timed out or failed a
 * status too, but no header time).  NGX_HTTP_TG_UNSENT: no try sent a
 * byte.  NGX_HTTP_TG_UNANSWERED: some try that sent bytes got no answer,
 * so the upstream may have acted on it.  Else the status the upstream
 * answered the last try that sent bytes with.
 */

ngx_uint_t
ngx_http_taurus_guard_outcome(ngx_http_request_t *r)
{
    ngx_uint_t                  i, n, outcome;
    ngx_flag_t                  live;
    ngx_http_upstream_t        *u;
    ngx_http_upstream_state_t  *st;

    u = r->upstream;

    live = (u != NULL && u->request_sent && u->peer.connection != NULL
            && u->peer.connection->sent > 0);

    st = NULL;
    n = 0;

    if (r->upstream_states != NULL) {
        st = r->upstream_states->elts;
        n = r->upstream_states->nelts;
    }

    if (n == 0) {
        return live ? NGX_HTTP_TG_UNANSWERED : NGX_HTTP_TG_UNSENT;
    }

    outcome = NGX_HTTP_TG_UNSENT;

    for (i = 0; i < n; i++) {
        if (st[i].bytes_sent <= 0 && !(live && i == n - 1)) {
            continue;
        }

        if (st[i].header_time == (ngx_msec_t) -1 || st[i].status < 100) {
            return NGX_HTTP_TG_UNANSWERED;
        }

        outcome = st[i].status;
    }

    return outcome;
}


/*
 * The one record that closes an allow: "done" once the batch went to
 * the content handler, with whether the upstream received it (some try
 * sent it bytes), each try, and the second forwards refused; "error"
 * with the reason when it never went.
 */

void
ngx_http_taurus_guard_close(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_uint_t                  i, n;
    ngx_flag_t                  forwarded;
    tg_audit_record_t           rec;
    tg_audit_attempt_t         *a;
    ngx_http_upstream_state_t  *st;

    ngx_http_taurus_guard_secrets_pop(r, ctx);

    forwarded = (ctx->step == NGX_HTTP_TG_STEP_FORWARD);

    if (!forwarded && ctx->step != NGX_HTTP_TG_STEP_AUDIT) {
        /* no allow record, or closed already */
        return;
    }

    ctx->step = NGX_HTTP_TG_STEP_DONE;

    if (!forwarded) {
        ngx_http_taurus_guard_record(r, ctx, &rec);
        (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec,
                                           NGX_HTTP_TG_AUDIT_LATER);
        return;
    }

    ctx->decision = TG_DECISION_DONE;
    ctx->status = r->headers_out.status;

    if (ctx->status == 0 && r->connection->error) {
        ctx->status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    ngx_http_taurus_guard_record(r, ctx, &rec);

    rec.duration_ms = (int64_t) (ngx_current_msec - ctx->start);
    rec.bytes = (int64_t) (r->connection->sent - r->header_size);

    if (rec.bytes < 0) {
        rec.bytes = 0;
    }

    rec.has_forwarded = 1;

    if (r->upstream_states != NULL && r->upstream_states->nelts) {
        st = r->upstream_states->elts;
        n = r->upstream_states->nelts;

        a = ngx_pcalloc(r->pool, n * sizeof(tg_audit_attempt_t));

        if (a != NULL) {
            for (i = 0; i < n; i++) {
                if (st[i].peer != NULL) {
                    a[i].addr.data = st[i].peer->data;
                    a[i].addr.len = st[i].peer->len;
                }

                a[i].status = (int) st[i].status;
                a[i].bytes_sent = (int64_t) st[i].bytes_sent;
            }

            rec.upstream = a;
            rec.nupstream = n;
        }
    }

    rec.forwarded = (ngx_http_taurus_guard_outcome(r) != NGX_HTTP_TG_UNSENT);

    if (r->upstream != NULL) {
        ngx_http_taurus_guard_upstream_request_id(r, &rec.request_id);
    }

    if (ctx->nreentries) {
        rec.reentries = ctx->reentries;
        rec.nreentries = ngx_min(ctx->nreentries, NGX_HTTP_TG_REENTRIES);
    }

    (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec,
                                       NGX_HTTP_TG_AUDIT_LATER);
}


/* the cloud's X-Request-Id of the last try, for the done record */

static void
ngx_http_taurus_guard_upstream_request_id(ngx_http_request_t *r,
    tg_str_t *id)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->upstream->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof(NGX_HTTP_TG_REQUEST_ID) - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) NGX_HTTP_TG_REQUEST_ID,
                               h[i].key.len) == 0)
        {
            /* the encoder escapes it and keeps TG_AUDIT_REQUEST_ID_MAX */
            id->data = h[i].value.data;
            id->len = h[i].value.len;
            return;
        }
    }
}
