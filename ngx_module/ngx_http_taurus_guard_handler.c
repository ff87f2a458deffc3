
/*
 * taurus-guard: one guarded request, in order (SPEC.md): route, body,
 * validate, authorize, sign, audit, forward, answer.
 *
 * The check runs in the precontent phase, which "satisfy any" cannot
 * skip, and reads the body the way ngx_http_mirror_module does: the ctx
 * is the re-entry sentinel, the phase waits with NGX_DONE and resumes
 * once the body is whole.  Every path that is not "forward" ends in a
 * JSON refusal; nothing is forwarded before its audit record is on disk.
 */


#include "ngx_http_taurus_guard_module.h"
#include "tg_escape.h"
#include <openssl/rand.h>


#define NGX_HTTP_TG_ROUTE_PREFIX  "/v3/"
#define NGX_HTTP_TG_ROUTE_SUFFIX  "/instances/database-version/upgrade"


typedef struct {
    ngx_uint_t                   status;
    const char                  *code;
    tg_decision_t                decision;
    ngx_str_t                    reason;
    tg_batch_t                  *batch;     /* when the body was valid */
    ngx_array_t                 *denied;    /* of tg_str_t */
} ngx_http_taurus_guard_refusal_t;


static ngx_http_taurus_guard_ctx_t *ngx_http_taurus_guard_get_ctx(
    ngx_http_request_t *r);
static ngx_http_taurus_guard_ctx_t *ngx_http_taurus_guard_create_ctx(
    ngx_http_request_t *r, ngx_http_taurus_guard_loc_conf_t *lcf);
static void ngx_http_taurus_guard_ctx_cleanup(void *data);
static ngx_int_t ngx_http_taurus_guard_route(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason);
static ngx_int_t ngx_http_taurus_guard_content_type(ngx_http_request_t *r);
static void ngx_http_taurus_guard_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_process(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_denied_reason(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_array_t *denied, ngx_str_t *reason);
static void ngx_http_taurus_guard_continue(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_taurus_guard_token_ready(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_no_secret(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, const char *reason);
static ngx_int_t ngx_http_taurus_guard_sign_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static void ngx_http_taurus_guard_synced(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_forward(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_read_body(ngx_http_request_t *r,
    ngx_str_t *raw);
static ngx_int_t ngx_http_taurus_guard_replace_body(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_taurus_guard_record(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, tg_audit_record_t *rec);
static ngx_int_t ngx_http_taurus_guard_refuse(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_http_taurus_guard_refusal_t *rf);
static ngx_int_t ngx_http_taurus_guard_send_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_http_taurus_guard_refusal_t *rf);
static ngx_int_t ngx_http_taurus_guard_header_filter(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_taurus_guard_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;
    ngx_http_taurus_guard_refusal_t    rf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (!lcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx != NULL && ctx->started) {
        return ctx->phase_rc;
    }

    if (r != r->main) {
        if (ctx != NULL && ctx->iam_fetch) {
            /* the gateway's own IAM token request */
            return NGX_DECLINED;
        }

        /* a subrequest would forward the main request's unchecked body */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: subrequest to a guarded location"
                      " refused");
        return NGX_HTTP_FORBIDDEN;
    }

    if (ctx == NULL) {
        ctx = ngx_http_taurus_guard_create_ctx(r, lcf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->started = 1;
    ctx->phase_rc = NGX_DONE;

    ngx_memzero(&rf, sizeof(ngx_http_taurus_guard_refusal_t));
    rf.decision = TG_DECISION_INVALID;

    rc = ngx_http_taurus_guard_route(r, ctx, &rf.reason);

    if (rc != NGX_OK) {
        rf.status = rc;
        rf.code = (rc == NGX_HTTP_NOT_ALLOWED) ? "TG.0405" : "TG.0404";
        goto refuse;
    }

    if (ngx_http_taurus_guard_content_type(r) != NGX_OK) {
        rf.status = NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
        rf.code = "TG.0415";
        ngx_str_set(&rf.reason, "Content-Type must be application/json"
                                " (charset=utf-8 allowed), sent once");
        goto refuse;
    }

    if (r->headers_in.content_length_n > (off_t) lcf->max_body_size) {
        rf.status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        rf.code = "TG.0413";
        ngx_str_set(&rf.reason, "body larger than taurus_guard_max_body_size");
        goto refuse;
    }

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_taurus_guard_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* the log handler records what nginx refused while reading */
        ctx->phase_rc = rc;
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;

refuse:

    /*
     * The response is ours: finalize here and stop the phases.  Returning
     * the output filter's NGX_OK would run the next phase, the proxy.
     */

    ngx_http_finalize_request(r, ngx_http_taurus_guard_refuse(r, ctx, &rf));
    return NGX_DONE;
}


static void
ngx_http_taurus_guard_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    ctx = ngx_http_taurus_guard_get_ctx(r);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    rc = ngx_http_taurus_guard_process(r, lcf, ctx);

    ngx_http_taurus_guard_continue(r, rc);
}


/*
 * Where a step of the guard that ran outside the phase handler leads:
 * NGX_DONE waits (a fetch, a flush), NGX_DECLINED resumes the phases,
 * towards the proxy, anything else finalizes the request with it.
 */

static void
ngx_http_taurus_guard_continue(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_taurus_guard_ctx_t  *ctx;

    if (rc == NGX_DONE) {
        return;
    }

    if (rc != NGX_DECLINED) {
        /* an error_page re-entry must not find the phase still waiting */
        ctx = ngx_http_taurus_guard_get_ctx(r);

        if (ctx != NULL && ctx->phase_rc == NGX_DONE) {
            ctx->phase_rc = (rc >= NGX_HTTP_SPECIAL_RESPONSE)
                            ? rc : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (rc == NGX_DECLINED) {
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * Validates, authorizes, signs and audits the whole body.  Returns
 * NGX_DECLINED when the request may go on to the proxy, anything else is
 * what the request is finalized with.
 */

static ngx_int_t
ngx_http_taurus_guard_process(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    u_char                             *p;
    size_t                              len;
    tg_rc_t                             trc;
    ngx_int_t                           rc;
    ngx_str_t                           raw, body;
    tg_str_t                           *d;
    tg_batch_t                          batch;
    ngx_uint_t                          i;
    ngx_http_taurus_guard_refusal_t     rf;
    ngx_http_taurus_guard_main_conf_t  *mcf;
    char                                err[TG_BATCH_ERR_SIZE];

    ngx_memzero(&rf, sizeof(ngx_http_taurus_guard_refusal_t));

    rc = ngx_http_taurus_guard_read_body(r, &raw);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        || (rc == NGX_OK && raw.len > lcf->max_body_size))
    {
        rf.status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        rf.code = "TG.0413";
        rf.decision = TG_DECISION_INVALID;
        ngx_str_set(&rf.reason, "body larger than taurus_guard_max_body_size");
        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    if (rc != NGX_OK) {
        rf.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        rf.code = "TG.0503";
        rf.decision = TG_DECISION_ERROR;
        ngx_str_set(&rf.reason, "could not read the request body");
        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    /* 3. validate strictly */

    ngx_memzero(&batch, sizeof(tg_batch_t));

    batch.max_items = lcf->max_batch;
    batch.items = ngx_palloc(r->pool, lcf->max_batch * sizeof(tg_instance_t));
    batch.scratch_size = raw.len ? raw.len : 1;
    batch.scratch = ngx_pnalloc(r->pool, batch.scratch_size);

    if (batch.items == NULL || batch.scratch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    trc = tg_batch_parse(&batch, raw.data, raw.len, err, sizeof(err));

    if (trc == TG_ERR_NOMEM || trc == TG_ERR_ARG
        || trc == TG_ERR_BUF_TOO_SMALL)
    {
        /* the gateway failed, not the body */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: validator failed: %s",
                      tg_strerror(trc));
        rf.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        rf.code = "TG.0503";
        rf.decision = TG_DECISION_ERROR;
        ngx_str_set(&rf.reason, "could not validate the body");
        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    if (trc != TG_OK) {
        len = ngx_strlen(err);
        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rf.reason.data = ngx_cpymem(p, err, len) - len;
        rf.reason.len = len;
        rf.status = NGX_HTTP_BAD_REQUEST;
        rf.code = "TG.0400";
        rf.decision = TG_DECISION_INVALID;
        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    rf.batch = &batch;

    /* 4. authorize: all or nothing */

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    rf.denied = ngx_array_create(r->pool, 4, sizeof(tg_str_t));
    if (rf.denied == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < batch.nitems; i++) {
        if (tg_allow_contains(mcf->allow, ctx->project_id.data,
                              ctx->project_id.len,
                              batch.items[i].instance_id.data,
                              batch.items[i].instance_id.len))
        {
            continue;
        }

        d = ngx_array_push(rf.denied);
        if (d == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *d = batch.items[i].instance_id;
    }

    if (rf.denied->nelts) {
        rf.status = NGX_HTTP_FORBIDDEN;
        rf.code = "TG.0403";
        rf.decision = TG_DECISION_DENY;

        if (ngx_http_taurus_guard_denied_reason(r, ctx, rf.denied, &rf.reason)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    rf.denied = NULL;

    /* the upstream gets the canonical body, never the bytes received */

    body.len = tg_batch_serialized_len(&batch);
    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if ((size_t) (tg_batch_serialize(&batch, body.data) - body.data)
        != body.len
        || tg_sha256_hex(body.data, body.len, ctx->hash) != TG_OK)
    {
        rf.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        rf.code = "TG.0503";
        rf.decision = TG_DECISION_ERROR;
        ngx_str_set(&rf.reason, "could not serialize the body");
        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    ctx->body = body;

    ctx->batch = ngx_palloc(r->pool, sizeof(tg_batch_t));
    if (ctx->batch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ctx->batch = batch;

    return ngx_http_taurus_guard_secrets(r, lcf, ctx);
}


/*
 * Secrets the gateway fetches itself, the metadata service's AK/SK and
 * an IAM token, are in hand before signing.  NGX_DONE: waiting for a
 * fetch, ngx_http_taurus_guard_token_ready() comes back here and asks
 * again; ngx_http_taurus_guard_fetch_get() bounds how often, and a
 * secret it cannot give refuses the batch.
 */

static ngx_int_t
ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    size_t     line;
    ngx_int_t  rc;

    static u_char  shared_key[TG_PROJECT_ID_LEN];

    ctx->resume = ngx_http_taurus_guard_token_ready;

    if (lcf->cred != NULL && lcf->cred->fetch != NULL
        && ctx->cred.ak.len == 0)
    {
        if (ctx->cred_text.len == 0) {
            rc = ngx_http_taurus_guard_fetch_get(r, lcf->cred->fetch, ctx,
                                                 shared_key, &ctx->cred_text);
            if (rc == NGX_AGAIN) {
                return NGX_DONE;
            }

            if (rc != NGX_OK) {
                return ngx_http_taurus_guard_no_secret(r, ctx,
                                                       "no usable"
                                                       " credentials");
            }
        }

        if (tg_cred_parse(&ctx->cred, ctx->cred_text.data,
                          ctx->cred_text.len, &line)
            != TG_OK)
        {
            return ngx_http_taurus_guard_no_secret(r, ctx,
                                                   "no usable credentials");
        }
    }

    if (lcf->token != NULL && lcf->token->iam != NULL && ctx->token.len == 0)
    {
        /* for the 401 of the endpoint */
        ctx->iam = lcf->token->iam;

        rc = ngx_http_taurus_guard_fetch_get(r, lcf->token->iam, ctx,
                                             ctx->project_id.data,
                                             &ctx->token);
        if (rc == NGX_AGAIN) {
            return NGX_DONE;
        }

        if (rc != NGX_OK) {
            return ngx_http_taurus_guard_no_secret(r, ctx,
                                                   "no usable IAM token");
        }
    }

    return ngx_http_taurus_guard_sign_audit(r, lcf, ctx);
}


/* a fetch this request waited for is over, one way or the other */

static void
ngx_http_taurus_guard_token_ready(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    ctx = ngx_http_taurus_guard_get_ctx(r);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (ctx->iam_pending) {
        /* an event of the connection, not the end of the fetch */
        return;
    }

    ngx_http_taurus_guard_continue(r,
                                   ngx_http_taurus_guard_secrets(r, lcf, ctx));
}


static ngx_int_t
ngx_http_taurus_guard_no_secret(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, const char *reason)
{
    ngx_http_taurus_guard_refusal_t  rf;

    ngx_memzero(&rf, sizeof(ngx_http_taurus_guard_refusal_t));

    rf.status = NGX_HTTP_SERVICE_UNAVAILABLE;
    rf.code = "TG.0503";
    rf.decision = TG_DECISION_ERROR;
    rf.batch = ctx->batch;
    rf.reason.data = (u_char *) reason;
    rf.reason.len = ngx_strlen(reason);

    return ngx_http_taurus_guard_refuse(r, ctx, &rf);
}


/*
 * Steps 6 and 5: sign, then put the allow record on disk.  NGX_DECLINED
 * forwards, NGX_DONE waits for the flush, anything else finalizes.
 */

static ngx_int_t
ngx_http_taurus_guard_sign_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_int_t                         rc;
    tg_audit_record_t                 rec;
    ngx_http_taurus_guard_refusal_t   rf;

    ngx_memzero(&rf, sizeof(ngx_http_taurus_guard_refusal_t));

    /* 6. sign; a failure forwards nothing */

    if (ngx_http_taurus_guard_sign(r, lcf, ctx, &rf.reason) != NGX_OK)
    {
        rf.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        rf.code = "TG.0503";
        rf.decision = TG_DECISION_ERROR;
        rf.batch = ctx->batch;

        if (rf.reason.len == 0) {
            ngx_str_set(&rf.reason, "could not sign the request");
        }

        return ngx_http_taurus_guard_refuse(r, ctx, &rf);
    }

    /* 5. the record is on disk before anything leaves */

    ctx->decision = TG_DECISION_ALLOW;
    ctx->status = 0;

    ngx_http_taurus_guard_record(r, ctx, &rec);
    rec.instances = ctx->batch->items;
    rec.ninstances = ctx->batch->nitems;
    rec.has_delay = 1;
    rec.delay = ctx->batch->delay;
    rec.delay_kind = ctx->batch->delay_kind;
    rec.body_sha256 = ctx->hash;

    ctx->resume = ngx_http_taurus_guard_synced;

    rc = ngx_http_taurus_guard_audit(r, lcf->audit, &rec, 1);

    if (rc == NGX_AGAIN) {
        /* blocked until the group flush, then ctx->resume */
        return NGX_DONE;
    }

    ctx->sync_failed = (rc != NGX_OK);

    return ngx_http_taurus_guard_forward(r, ctx);
}


static void
ngx_http_taurus_guard_synced(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_taurus_guard_get_ctx(r);

    ngx_http_taurus_guard_continue(r, ngx_http_taurus_guard_forward(r, ctx));
}


/*
 * The allow record is on disk, or could not be put there: forward the
 * canonical body, or refuse with 503 and forward nothing.
 */

static ngx_int_t
ngx_http_taurus_guard_forward(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_http_taurus_guard_refusal_t  rf;

    if (ctx->sync_failed) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: audit record %s not written,"
                      " request refused", ctx->id);

        ngx_memzero(&rf, sizeof(ngx_http_taurus_guard_refusal_t));
        rf.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        rf.code = "TG.0503";
        rf.decision = TG_DECISION_ERROR;
        ngx_str_set(&rf.reason, "audit log unavailable");

        ctx->decision = TG_DECISION_ERROR;
        ctx->reason = rf.reason;
        ctx->status = rf.status;
        ctx->phase_rc = rf.status;

        return ngx_http_taurus_guard_send_json(r, ctx, &rf);
    }

    if (ngx_http_taurus_guard_replace_body(r, &ctx->body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->forwarded = 1;
    ctx->phase_rc = NGX_DECLINED;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "taurus_guard: batch %s allowed for project \"%V\"",
                  ctx->id, &ctx->project_id);

    return NGX_DECLINED;
}


/* "not allowed for project P: I1, I2" (IDs are escaped on output) */

static ngx_int_t
ngx_http_taurus_guard_denied_reason(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_array_t *denied, ngx_str_t *reason)
{
    u_char      *p;
    size_t       len;
    tg_str_t    *d;
    ngx_uint_t   i;

    d = denied->elts;

    len = sizeof("not allowed for project : ") - 1 + ctx->project_id.len;

    for (i = 0; i < denied->nelts; i++) {
        len += d[i].len + sizeof(", ") - 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    reason->data = p;

    p = ngx_cpymem(p, "not allowed for project ",
                   sizeof("not allowed for project ") - 1);
    p = ngx_cpymem(p, ctx->project_id.data, ctx->project_id.len);
    *p++ = ':';
    *p++ = ' ';

    for (i = 0; i < denied->nelts; i++) {
        if (i) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_cpymem(p, d[i].data, d[i].len);
    }

    reason->len = p - reason->data;

    return NGX_OK;
}


/*
 * The route is checked on the request target exactly as sent: nginx
 * normalizes r->uri for matching but the proxy may forward the raw form,
 * so percent-encoding, dot segments, doubled or trailing slashes,
 * ";params", a query or an absolute-form target are all refused.
 */

static ngx_int_t
ngx_http_taurus_guard_route(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason)
{
    u_char      *p;
    ngx_str_t   *u;
    ngx_uint_t   i;

    u = &r->unparsed_uri;

    /*
     * After a rewrite or an internal redirect the proxy sends r->uri, not
     * what the caller sent: the route checked must be the one forwarded.
     */

    if (!r->valid_unparsed_uri
        || r->uri.len != u->len
        || ngx_strncmp(r->uri.data, u->data, u->len) != 0)
    {
        ngx_str_set(reason, "no such route: rewritten inside nginx");
        return NGX_HTTP_NOT_FOUND;
    }

    if (r->schema_start != NULL || r->host_start != NULL) {
        ngx_str_set(reason, "absolute-form request target");
        return NGX_HTTP_NOT_FOUND;
    }

    if (u->len != sizeof(NGX_HTTP_TG_ROUTE_PREFIX) - 1 + TG_PROJECT_ID_LEN
                  + sizeof(NGX_HTTP_TG_ROUTE_SUFFIX) - 1)
    {
        ngx_str_set(reason, "no such route");
        return NGX_HTTP_NOT_FOUND;
    }

    p = u->data;

    if (ngx_strncmp(p, NGX_HTTP_TG_ROUTE_PREFIX,
                    sizeof(NGX_HTTP_TG_ROUTE_PREFIX) - 1) != 0)
    {
        ngx_str_set(reason, "no such route");
        return NGX_HTTP_NOT_FOUND;
    }

    p += sizeof(NGX_HTTP_TG_ROUTE_PREFIX) - 1;

    if (tg_project_id_check(p, TG_PROJECT_ID_LEN) != TG_OK) {
        ngx_str_set(reason, "no such route: malformed project ID");
        return NGX_HTTP_NOT_FOUND;
    }

    for (i = 0; i < sizeof(NGX_HTTP_TG_ROUTE_SUFFIX) - 1; i++) {
        if (p[TG_PROJECT_ID_LEN + i] != NGX_HTTP_TG_ROUTE_SUFFIX[i]) {
            ngx_str_set(reason, "no such route");
            return NGX_HTTP_NOT_FOUND;
        }
    }

    if (r->method != NGX_HTTP_POST) {
        /* a refused route: the record says what was asked instead */
        ngx_str_set(reason, "method not allowed");
        return NGX_HTTP_NOT_ALLOWED;
    }

    ctx->project_id.data = p;
    ctx->project_id.len = TG_PROJECT_ID_LEN;

    return NGX_OK;
}


/* "application/json", optionally "; charset=utf-8", sent exactly once */

static ngx_int_t
ngx_http_taurus_guard_content_type(ngx_http_request_t *r)
{
    u_char           *p, *last;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    part = &r->headers_in.headers.part;
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

        if (h[i].key.len == sizeof("Content-Type") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Type",
                               sizeof("Content-Type") - 1) == 0)
        {
            n++;
        }
    }

    if (n != 1 || r->headers_in.content_type == NULL) {
        return NGX_DECLINED;
    }

    p = r->headers_in.content_type->value.data;
    last = p + r->headers_in.content_type->value.len;

    if (last - p < (ssize_t) sizeof("application/json") - 1
        || ngx_strncasecmp(p, (u_char *) "application/json",
                           sizeof("application/json") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    p += sizeof("application/json") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == last) {
        return NGX_OK;
    }

    if (*p++ != ';') {
        return NGX_DECLINED;
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if ((size_t) (last - p) == sizeof("charset=utf-8") - 1
        && ngx_strncasecmp(p, (u_char *) "charset=utf-8",
                           sizeof("charset=utf-8") - 1) == 0)
    {
        return NGX_OK;
    }

    if ((size_t) (last - p) == sizeof("charset=\"utf-8\"") - 1
        && ngx_strncasecmp(p, (u_char *) "charset=\"utf-8\"",
                           sizeof("charset=\"utf-8\"") - 1) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * The whole body in one buffer, from memory or from the temp file: a
 * body in a file is a body, never "no body".
 */

static ngx_int_t
ngx_http_taurus_guard_read_body(ngx_http_request_t *r, ngx_str_t *raw)
{
    u_char       *p;
    off_t         total, size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    raw->data = NULL;
    raw->len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    total = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        total += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    if (total > (off_t) NGX_MAX_SIZE_T_VALUE / 2) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    raw->len = (size_t) total;

    if (raw->len == 0) {
        return NGX_OK;
    }

    raw->data = ngx_pnalloc(r->pool, raw->len);
    if (raw->data == NULL) {
        return NGX_ERROR;
    }

    p = raw->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            size = b->file_last - b->file_pos;

            n = ngx_read_file(b->file, p, (size_t) size, b->file_pos);

            if (n != (ssize_t) size) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "taurus_guard: short read of the body from"
                              " \"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            p += size;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    return NGX_OK;
}


/*
 * The proxy sends r->request_body->bufs with r->headers_in.content_length_n
 * as Content-Length: both now describe the canonical body.
 */

static ngx_int_t
ngx_http_taurus_guard_replace_body(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->start = body->data;
    b->pos = body->data;
    b->last = body->data + body->len;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->headers_in.content_length_n = body->len;
    r->headers_in.chunked = 0;

    return NGX_OK;
}


static void
ngx_http_taurus_guard_record(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, tg_audit_record_t *rec)
{
    ngx_time_t                         *tp;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

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
        rec->uri.len = ngx_min(r->unparsed_uri.len, 512);
    }
}


static ngx_int_t
ngx_http_taurus_guard_refuse(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_http_taurus_guard_refusal_t *rf)
{
    ngx_int_t                          rc;
    tg_audit_record_t                  rec;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    ctx->decision = rf->decision;
    ctx->reason = rf->reason;
    ctx->status = rf->status;
    ctx->phase_rc = rf->status;

    ngx_http_taurus_guard_record(r, ctx, &rec);

    if (rf->batch != NULL) {
        rec.instances = rf->batch->items;
        rec.ninstances = rf->batch->nitems;
        rec.has_delay = 1;
        rec.delay = rf->batch->delay;
        rec.delay_kind = rf->batch->delay_kind;
    }

    if (rf->denied != NULL) {
        rec.denied = rf->denied->elts;
        rec.ndenied = rf->denied->nelts;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: request %s refused (%s): %ui",
                  ctx->id, tg_decision_name(rf->decision), rf->status);

    if (ngx_http_taurus_guard_audit(r, lcf->audit, &rec, 0) != NGX_OK) {
        /* a decision that cannot be recorded is not given */
        rf->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        rf->code = "TG.0503";
        rf->denied = NULL;
        ngx_str_set(&rf->reason, "audit log unavailable");
        ctx->status = rf->status;
        ctx->phase_rc = rf->status;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_taurus_guard_send_json(r, ctx, rf);
}


/* {"error_code":"TG.0403","error_msg":"...","audit_id":"...",
 *  "denied":["..."]} */

static ngx_int_t
ngx_http_taurus_guard_send_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_http_taurus_guard_refusal_t *rf)
{
    u_char           *p;
    size_t            len;
    tg_str_t         *d;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    len = sizeof("{\"error_code\":\"\",\"error_msg\":\"\",\"audit_id\":\"\"}")
          - 1 + ngx_strlen(rf->code)
          + tg_json_escaped_len(rf->reason.data, rf->reason.len)
          + TG_AUDIT_ID_LEN;

    d = NULL;

    if (rf->denied != NULL && rf->denied->nelts) {
        d = rf->denied->elts;
        len += sizeof(",\"denied\":[]") - 1;

        for (i = 0; i < rf->denied->nelts; i++) {
            len += sizeof("\"\",") - 1
                   + tg_json_escaped_len(d[i].data, d[i].len);
        }
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    p = ngx_cpymem(p, "{\"error_code\":\"", sizeof("{\"error_code\":\"") - 1);
    p = ngx_cpymem(p, rf->code, ngx_strlen(rf->code));
    p = ngx_cpymem(p, "\",\"error_msg\":\"", sizeof("\",\"error_msg\":\"") - 1);
    p = tg_json_escape(p, rf->reason.data, rf->reason.len);
    p = ngx_cpymem(p, "\",\"audit_id\":\"", sizeof("\",\"audit_id\":\"") - 1);
    p = ngx_cpymem(p, ctx->id, TG_AUDIT_ID_LEN);
    *p++ = '"';

    if (d != NULL) {
        p = ngx_cpymem(p, ",\"denied\":[", sizeof(",\"denied\":[") - 1);

        for (i = 0; i < rf->denied->nelts; i++) {
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

    r->headers_out.status = rf->status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (rf->status == NGX_HTTP_NOT_ALLOWED) {
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
 * Every guarded response carries the audit id, the upstream's too; a
 * request nginx refused before the handler ran gets its id here.
 */

static ngx_int_t
ngx_http_taurus_guard_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                         i;
    ngx_list_part_t                   *part;
    ngx_table_elt_t                   *h, *o;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx == NULL) {
        lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

        if (!lcf->enable) {
            return ngx_http_next_header_filter(r);
        }

        ctx = ngx_http_taurus_guard_create_ctx(r, lcf);
        if (ctx == NULL) {
            /* already refused (500) for the same reason: answer anyway */
            return ngx_http_next_header_filter(r);
        }
    }

    if (ctx->forwarded && ctx->iam != NULL
        && r->headers_out.status == NGX_HTTP_UNAUTHORIZED)
    {
        /* expired early or revoked: the next request fetches a new one */
        ngx_http_taurus_guard_iam_refused(r, ctx);
    }

    /* the id is the gateway's: one the upstream sent is not passed on */

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

        if (o[i].key.len == sizeof(NGX_HTTP_TG_ID_HEADER) - 1
            && ngx_strncasecmp(o[i].key.data, (u_char *) NGX_HTTP_TG_ID_HEADER,
                               o[i].key.len) == 0)
        {
            o[i].hash = 0;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, NGX_HTTP_TG_ID_HEADER);
    h->value.data = ctx->id;
    h->value.len = TG_AUDIT_ID_LEN;

    return ngx_http_next_header_filter(r);
}


ngx_int_t
ngx_http_taurus_guard_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_taurus_guard_header_filter;

    return NGX_OK;
}


/*
 * The log phase writes the completion record of a forwarded batch, and
 * the record of a guarded request nginx refused before the gateway
 * decided (client_max_body_size, a broken chunked body, a client gone).
 */

ngx_int_t
ngx_http_taurus_guard_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                    status;
    tg_audit_record_t             rec;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx == NULL || ctx->audit == NULL) {
        return NGX_OK;
    }

    status = r->headers_out.status;

    if (status == 0 && r->connection->error) {
        status = 499;
    }

    if (ctx->forwarded) {
        ctx->decision = TG_DECISION_DONE;
        ngx_http_taurus_guard_record(r, ctx, &rec);

        rec.status = (int) status;
        rec.duration_ms = (int64_t) (ngx_current_msec - ctx->start);
        rec.bytes = (int64_t) (r->connection->sent - r->header_size);

        if (rec.bytes < 0) {
            rec.bytes = 0;
        }

        (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec, 0);
        return NGX_OK;
    }

    if (ctx->decision != NGX_HTTP_TG_UNDECIDED) {
        return NGX_OK;
    }

    ctx->decision = (status == NGX_HTTP_FORBIDDEN) ? TG_DECISION_DENY
                    : (status >= 500 || status == 499) ? TG_DECISION_ERROR
                    : TG_DECISION_INVALID;
    ctx->status = status;
    ctx->reason.data = ngx_pnalloc(r->pool, 80);

    if (ctx->reason.data != NULL) {
        ctx->reason.len = ngx_snprintf(ctx->reason.data, 80,
                                       "refused by nginx before the gateway"
                                       " decided (status %ui)", status)
                          - ctx->reason.data;
    }

    ngx_http_taurus_guard_record(r, ctx, &rec);

    (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec, 0);

    return NGX_OK;
}


/*
 * The ctx survives internal redirects (error_page after the proxy) the
 * way ngx_http_realip_module's does: it is found again through its pool
 * cleanup, so a forwarded batch always gets its completion record.
 */

static ngx_http_taurus_guard_ctx_t *
ngx_http_taurus_guard_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    if (ctx != NULL || !r->internal || r != r->main) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_taurus_guard_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_taurus_guard_module);
            return ctx;
        }
    }

    return NULL;
}


static ngx_http_taurus_guard_ctx_t *
ngx_http_taurus_guard_create_ctx(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf)
{
    u_char                       *p;
    ngx_uint_t                    i;
    ngx_pool_cleanup_t           *cln;
    ngx_http_taurus_guard_ctx_t  *ctx;
    u_char                        rnd[TG_AUDIT_ID_LEN / 2];

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_taurus_guard_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_taurus_guard_ctx_t));

    cln->handler = ngx_http_taurus_guard_ctx_cleanup;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "taurus_guard: RAND_bytes() failed");
        return NULL;
    }

    p = ctx->id;

    for (i = 0; i < sizeof(rnd); i++) {
        *p++ = "0123456789abcdef"[rnd[i] >> 4];
        *p++ = "0123456789abcdef"[rnd[i] & 0xf];
    }

    *p = '\0';

    ctx->decision = NGX_HTTP_TG_UNDECIDED;
    ctx->start = ngx_current_msec;
    ctx->audit = lcf->audit;

    /* now: $remote_user reads the Authorization header the guard strips */

    if (lcf->audit_user != NULL
        && ngx_http_complex_value(r, lcf->audit_user, &ctx->user) != NGX_OK)
    {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_taurus_guard_module);

    return ctx;
}


static void
ngx_http_taurus_guard_ctx_cleanup(void *data)
{
    /* only a marker for ngx_http_taurus_guard_get_ctx() */
}
