
/*
 * taurus-guard: one guarded request, in order (SPEC.md): route, body,
 * validate, authorize, sign, audit, forward, answer.
 *
 * The check runs in the precontent phase, which "satisfy any" cannot
 * skip, and reads the body the way ngx_http_mirror_module does: the ctx
 * is the re-entry sentinel, the phase waits with NGX_DONE and resumes
 * once the body is whole.  Every path that is not "forward" ends in a
 * JSON refusal; nothing is forwarded before its audit record is on disk.
 *
 * A batch goes to the upstream once: the content handler (the proxy's)
 * is wrapped so that the secret headers exist only while it builds its
 * request, and any later way back into a location with a content
 * handler (error_page, post_action, X-Accel-Redirect) is refused and
 * counted in the done record, in guarded locations and in others.
 */


#include <openssl/rand.h>

#include "ngx_http_taurus_guard_module.h"
#include "tg_escape.h"


#define NGX_HTTP_TG_ROUTE_PREFIX  "/v3/"
#define NGX_HTTP_TG_ROUTE_SUFFIX  "/instances/database-version/upgrade"
#define NGX_HTTP_TG_REQUEST_ID    "X-Request-Id"


static ngx_http_taurus_guard_ctx_t *ngx_http_taurus_guard_get_ctx(
    ngx_http_request_t *r);
static ngx_http_taurus_guard_ctx_t *ngx_http_taurus_guard_create_ctx(
    ngx_http_request_t *r, ngx_http_taurus_guard_loc_conf_t *lcf);
static void ngx_http_taurus_guard_ctx_cleanup(void *data);
static ngx_int_t ngx_http_taurus_guard_route(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason);
static ngx_int_t ngx_http_taurus_guard_content_type(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_content_encoding(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_policy_step(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static void ngx_http_taurus_guard_body_handler(ngx_http_request_t *r);
static void ngx_http_taurus_guard_resume_handler(ngx_http_request_t *r);
static void ngx_http_taurus_guard_run(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken);
static ngx_int_t ngx_http_taurus_guard_validate(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_authorize(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_denied_reason(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_array_t *denied, ngx_str_t *reason);
static ngx_int_t ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_sign_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_flag_t woken);
static ngx_int_t ngx_http_taurus_guard_forward(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken);
static ngx_int_t ngx_http_taurus_guard_read_body(ngx_http_request_t *r,
    ngx_str_t *raw);
static ngx_int_t ngx_http_taurus_guard_replace_body(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_taurus_guard_record(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, tg_audit_record_t *rec);
static ngx_int_t ngx_http_taurus_guard_refuse(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after);
static ngx_int_t ngx_http_taurus_guard_refuse_text(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, const char *text);
static ngx_int_t ngx_http_taurus_guard_send_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after);
static ngx_int_t ngx_http_taurus_guard_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_reentry(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_content_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_unsigned_request(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_client_gone(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_not_forwarded(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason);
static void ngx_http_taurus_guard_close(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
static void ngx_http_taurus_guard_upstream_request_id(ngx_http_request_t *r,
    tg_str_t *id);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_taurus_guard_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_str_t                          reason;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (!lcf->enable) {

        /* a flag and a bit: all an unguarded location pays */

        if (!r->internal || r != r->main) {
            return NGX_DECLINED;
        }

        /* an internal redirect: is it a forwarded batch coming back? */

        ctx = ngx_http_taurus_guard_get_ctx(r);

        if (ctx == NULL || ctx->step != NGX_HTTP_TG_STEP_FORWARD) {
            return NGX_DECLINED;
        }

        return ngx_http_taurus_guard_reentry(r, ctx);
    }

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx != NULL && ctx->step != NGX_HTTP_TG_STEP_ROUTE) {

        /* the phases again: resumed, redirected, or a subrequest */

        switch (ctx->step) {

        case NGX_HTTP_TG_STEP_FORWARD:
            if (r == r->main) {
                return ngx_http_taurus_guard_reentry(r, ctx);
            }

            return NGX_DECLINED;

        case NGX_HTTP_TG_STEP_DONE:
            return ctx->status;

        default:
            /* still waiting: the body, a fetch, a flush */
            return NGX_DONE;
        }
    }

    if (r != r->main) {
        if (ctx != NULL && ctx->fetcher) {
            /* a fetch of the gateway's own: a token, credentials */
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

    ctx->step = NGX_HTTP_TG_STEP_BODY;

    rc = ngx_http_taurus_guard_route(r, ctx, &reason);

    if (rc != NGX_OK) {
        rc = ngx_http_taurus_guard_refuse(r, ctx, rc, &reason, NULL, 0);
        goto refused;
    }

    if (ngx_http_taurus_guard_content_type(r) != NGX_OK) {
        rc = ngx_http_taurus_guard_refuse_text(r, ctx,
                 NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                 "Content-Type must be application/json"
                 " (charset=utf-8 allowed), sent once");
        goto refused;
    }

    if (ngx_http_taurus_guard_content_encoding(r) != NGX_OK) {
        rc = ngx_http_taurus_guard_refuse_text(r, ctx,
                 NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                 "Content-Encoding other than identity:"
                 " the body is read only as it was sent");
        goto refused;
    }

    if (r->headers_in.content_length_n > (off_t) lcf->max_body_size) {
        rc = ngx_http_taurus_guard_refuse_text(r, ctx,
                 NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                 "body larger than taurus_guard_max_body_size");
        goto refused;
    }

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_taurus_guard_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* the log handler records what nginx refused while reading */
        ctx->step = NGX_HTTP_TG_STEP_DONE;
        ctx->status = rc;
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;

refused:

    /*
     * The response is ours: finalize here and stop the phases.  Returning
     * the output filter's NGX_OK would run the next phase, the proxy.
     */

    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
}


static void
ngx_http_taurus_guard_body_handler(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_run(r, ngx_http_taurus_guard_get_ctx(r), 0);
}


/* a fetch or a flush this request waited for is over, or timed out */

static void
ngx_http_taurus_guard_resume_handler(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx->fetch_pending) {
        /* an event of the connection, not the end of the fetch */
        return;
    }

    ngx_http_taurus_guard_run(r, ctx, 1);
}


/*
 * The one way back into the guard once the body is whole, in the spirit
 * of ngx_http_core_run_phases(): ctx->step says where the request is,
 * and the steps run in order from there until one waits (NGX_DONE: a
 * fetch, a flush; ctx->resume brings it back here), refuses, or lets it
 * go on to the proxy (NGX_DECLINED resumes the phases).  woken: it
 * waited, so the client may have left meanwhile.
 */

static void
ngx_http_taurus_guard_run(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken)
{
    ngx_int_t                          rc;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    rc = NGX_DECLINED;

    switch (ctx->step) {

    case NGX_HTTP_TG_STEP_BODY:
        ctx->step = NGX_HTTP_TG_STEP_VALIDATE;
        rc = ngx_http_taurus_guard_validate(r, lcf, ctx);
        if (rc != NGX_DECLINED) {
            break;
        }

        /* fall through */

    case NGX_HTTP_TG_STEP_VALIDATE:
        ctx->step = NGX_HTTP_TG_STEP_AUTHORIZE;
        rc = ngx_http_taurus_guard_authorize(r, lcf, ctx);
        if (rc != NGX_DECLINED) {
            break;
        }

        /* fall through */

    case NGX_HTTP_TG_STEP_AUTHORIZE:
        ctx->step = NGX_HTTP_TG_STEP_SECRETS;

        /* fall through */

    case NGX_HTTP_TG_STEP_SECRETS:
        rc = ngx_http_taurus_guard_secrets(r, lcf, ctx);
        if (rc != NGX_DECLINED) {
            break;
        }

        ctx->step = NGX_HTTP_TG_STEP_SIGN;

        /* fall through */

    case NGX_HTTP_TG_STEP_SIGN:
        rc = ngx_http_taurus_guard_sign_audit(r, lcf, ctx, woken);
        if (rc != NGX_DECLINED) {
            break;
        }

        /* fall through */

    case NGX_HTTP_TG_STEP_AUDIT:
        rc = ngx_http_taurus_guard_forward(r, ctx, woken);
        break;

    default:
        /* forwarded or done already: nothing left to run */
        return;
    }

    if (rc == NGX_DONE) {
        return;
    }

    if (rc == NGX_DECLINED) {
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    /* an error_page re-entry must not find the phase still waiting */

    if (ctx->step < NGX_HTTP_TG_STEP_AUDIT) {
        ctx->step = NGX_HTTP_TG_STEP_DONE;
        ctx->status = (rc >= NGX_HTTP_SPECIAL_RESPONSE)
                      ? (ngx_uint_t) rc : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * Step 3: the whole body, validated strictly.  NGX_DECLINED goes on;
 * anything else is what the request is finalized with.
 */

static ngx_int_t
ngx_http_taurus_guard_validate(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    u_char      *p;
    size_t       len;
    tg_rc_t      trc;
    ngx_int_t    rc;
    ngx_str_t    raw, reason;
    tg_batch_t   batch;
    char         err[TG_BATCH_ERR_SIZE];

    rc = ngx_http_taurus_guard_read_body(r, &raw);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        || (rc == NGX_OK && raw.len > lcf->max_body_size))
    {
        return ngx_http_taurus_guard_refuse_text(r, ctx,
                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                   "body larger than taurus_guard_max_body_size");
    }

    if (rc != NGX_OK) {
        return ngx_http_taurus_guard_refuse_text(r, ctx,
                   NGX_HTTP_SERVICE_UNAVAILABLE,
                   "could not read the request body");
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
        return ngx_http_taurus_guard_refuse_text(r, ctx,
                   NGX_HTTP_SERVICE_UNAVAILABLE,
                   "could not validate the body");
    }

    if (trc != TG_OK) {
        len = ngx_strlen(err);
        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        reason.data = ngx_cpymem(p, err, len) - len;
        reason.len = len;

        return ngx_http_taurus_guard_refuse(r, ctx, NGX_HTTP_BAD_REQUEST,
                                            &reason, NULL, 0);
    }

    /* from here on the batch is the request's: the policy marks it */

    ctx->batch = ngx_palloc(r->pool, sizeof(tg_batch_t));
    if (ctx->batch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ctx->batch = batch;

    return NGX_DECLINED;
}


/*
 * Step 4: the allow-list, all or nothing, then the project's policy;
 * the canonical body is what goes on.  NGX_DECLINED goes on.
 */

static ngx_int_t
ngx_http_taurus_guard_authorize(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_int_t                           rc;
    ngx_str_t                           body, reason;
    tg_str_t                           *d;
    tg_batch_t                         *batch;
    ngx_uint_t                          i;
    ngx_array_t                        *denied;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    batch = ctx->batch;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    denied = ngx_array_create(r->pool, 4, sizeof(tg_str_t));
    if (denied == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < batch->nitems; i++) {
        if (tg_allow_contains(mcf->allow, ctx->project_id.data,
                              ctx->project_id.len,
                              batch->items[i].instance_id.data,
                              batch->items[i].instance_id.len))
        {
            continue;
        }

        d = ngx_array_push(denied);
        if (d == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *d = batch->items[i].instance_id;
    }

    if (denied->nelts) {
        if (ngx_http_taurus_guard_denied_reason(r, ctx, denied, &reason)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (lcf->mode != NGX_HTTP_TG_MODE_REPORT) {
            return ngx_http_taurus_guard_refuse(r, ctx, NGX_HTTP_FORBIDDEN,
                                                &reason, denied, 0);
        }

        /* report mode: forwarded, and recorded as what it would be */

        ctx->would_deny = 1;
        ctx->reason = reason;
        ctx->denied = denied;
    }

    rc = ngx_http_taurus_guard_policy_step(r, lcf, ctx);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    /* the upstream gets the canonical body, never the bytes received */

    body.len = tg_batch_serialized_len(batch);
    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if ((size_t) (tg_batch_serialize(batch, body.data) - body.data)
        != body.len
        || tg_sha256_hex(body.data, body.len, ctx->hash) != TG_OK)
    {
        return ngx_http_taurus_guard_refuse_text(r, ctx,
                   NGX_HTTP_SERVICE_UNAVAILABLE,
                   "could not serialize the body");
    }

    ctx->body = body;

    return NGX_DECLINED;
}


/*
 * The project's policy (taurus_guard_policy).  NGX_DECLINED goes on;
 * anything else is what the request is finalized with.  In report mode a breach
 * goes on as "would_deny"; a policy that cannot be checked (its zone is
 * full) refuses in both modes.
 */

static ngx_int_t
ngx_http_taurus_guard_policy_step(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_int_t                           rc;
    ngx_flag_t                          report;
    ngx_http_taurus_guard_policy_t     *p;
    ngx_http_taurus_guard_verdict_t     v;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    p = ngx_http_taurus_guard_policy_find(mcf, ctx->project_id.data);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    report = (lcf->mode == NGX_HTTP_TG_MODE_REPORT);

    rc = ngx_http_taurus_guard_policy_check(r, p, &ctx->project_id,
                                            ctx->batch, ctx->id, report,
                                            &ctx->ticket, &v);
    if (rc == NGX_OK) {
        return NGX_DECLINED;
    }

    if (rc == NGX_DECLINED && report) {
        if (!ctx->would_deny) {
            ctx->would_deny = 1;
            ctx->reason = v.reason;
        }

        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR || v.status == 0) {
        v.status = NGX_HTTP_SERVICE_UNAVAILABLE;

        if (v.reason.len == 0) {
            ngx_str_set(&v.reason, "could not check the project's policy");
        }
    }

    /* 403, 409 and 429 are denials, the 503 of a full zone an error */

    return ngx_http_taurus_guard_refuse(r, ctx, v.status, &v.reason, NULL,
                                        v.retry_after);
}


/*
 * Secrets the gateway fetches itself, the metadata service's AK/SK and
 * an IAM token, are in hand before signing.  NGX_DONE: waiting for a
 * fetch, ngx_http_taurus_guard_resume_handler() comes back here and asks
 * again; ngx_http_taurus_guard_fetch_get() bounds how often, and a
 * secret it cannot give refuses the batch.  NGX_DECLINED goes on.
 */

static ngx_int_t
ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx)
{
    size_t     line;
    ngx_int_t  rc;

    static u_char  shared_key[TG_PROJECT_ID_LEN];

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
                return ngx_http_taurus_guard_refuse_text(r, ctx,
                           NGX_HTTP_SERVICE_UNAVAILABLE,
                           "no usable credentials");
            }
        }

        if (tg_cred_parse(&ctx->cred, ctx->cred_text.data,
                          ctx->cred_text.len, &line)
            != TG_OK)
        {
            return ngx_http_taurus_guard_refuse_text(r, ctx,
                       NGX_HTTP_SERVICE_UNAVAILABLE,
                       "no usable credentials");
        }
    }

    if (lcf->token != NULL && lcf->token->fetch != NULL && ctx->token.len == 0)
    {
        /* for the 401 of the endpoint */
        ctx->token_src = lcf->token->fetch;

        rc = ngx_http_taurus_guard_fetch_get(r, lcf->token->fetch, ctx,
                                             ctx->project_id.data,
                                             &ctx->token);
        if (rc == NGX_AGAIN) {
            return NGX_DONE;
        }

        if (rc != NGX_OK) {
            return ngx_http_taurus_guard_refuse_text(r, ctx,
                       NGX_HTTP_SERVICE_UNAVAILABLE,
                       "no usable IAM token");
        }
    }

    return NGX_DECLINED;
}


/*
 * Steps 6 and 5: sign, then put the allow record on disk.  NGX_DECLINED
 * forwards, NGX_DONE waits for the flush, anything else finalizes.
 */

static ngx_int_t
ngx_http_taurus_guard_sign_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_flag_t woken)
{
    ngx_int_t           rc;
    ngx_str_t           reason;
    tg_audit_record_t   rec;

    if (woken && ngx_http_taurus_guard_client_gone(r)) {
        /* gone while a fetch ran: nothing is allowed, nothing forwarded */
        ctx->decision = TG_DECISION_ERROR;
        ctx->status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
        ctx->step = NGX_HTTP_TG_STEP_DONE;
        ngx_str_set(&ctx->reason,
                    "client closed the connection before the forward");

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "taurus_guard: request %s: %V", ctx->id, &ctx->reason);

        ngx_http_taurus_guard_record(r, ctx, &rec);
        rec.instances = ctx->batch->items;
        rec.ninstances = ctx->batch->nitems;
        (void) ngx_http_taurus_guard_audit(r, lcf->audit, &rec, 0);

        return NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    /* 6. sign; a failure forwards nothing */

    ngx_str_null(&reason);

    if (ngx_http_taurus_guard_sign(r, lcf, ctx, &reason) != NGX_OK) {
        if (reason.len == 0) {
            ngx_str_set(&reason, "could not sign the request");
        }

        return ngx_http_taurus_guard_refuse(r, ctx,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            &reason, NULL, 0);
    }

    /* 5. the record is on disk before anything leaves */

    ctx->decision = ctx->would_deny ? TG_DECISION_WOULD_DENY
                                    : TG_DECISION_ALLOW;
    ctx->status = 0;

    ngx_http_taurus_guard_record(r, ctx, &rec);

    if (ctx->denied != NULL) {
        rec.denied = ctx->denied->elts;
        rec.ndenied = ctx->denied->nelts;
    }
    rec.instances = ctx->batch->items;
    rec.ninstances = ctx->batch->nitems;
    rec.has_delay = 1;
    rec.delay = ctx->batch->delay;
    rec.delay_kind = ctx->batch->delay_kind;
    rec.body_sha256 = ctx->hash;

    rc = ngx_http_taurus_guard_audit(r, lcf->audit, &rec, 1);

    /*
     * A later record closes it, whatever comes: done, or error when it
     * is not forwarded (which stands alone if the allow was not written).
     */
    ctx->step = NGX_HTTP_TG_STEP_AUDIT;

    if (rc == NGX_AGAIN) {
        /* blocked until the group flush, then ctx->resume */
        return NGX_DONE;
    }

    ctx->sync_failed = (rc != NGX_OK);

    return NGX_DECLINED;
}


/*
 * The allow record is on disk, or could not be put there: forward the
 * canonical body, or refuse with 503 and forward nothing.  A client gone
 * while the request waited gets nothing forwarded either.
 */

static ngx_int_t
ngx_http_taurus_guard_forward(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken)
{
    ngx_uint_t  status;

    static ngx_str_t  gone = ngx_string("client closed the connection"
                                        " before the forward");
    static ngx_str_t  no_body = ngx_string("could not set the body to"
                                           " forward");

    if (ctx->sync_failed) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: audit record %s not on disk,"
                      " request refused", ctx->id);

        /* the audit code may have said why: a timeout, say */

        if (ctx->sync_reason.len == 0) {
            ngx_str_set(&ctx->sync_reason, "audit log unavailable");
        }

        return ngx_http_taurus_guard_refuse(r, ctx,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            &ctx->sync_reason, NULL, 0);
    }

    if (woken && ngx_http_taurus_guard_client_gone(r)) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
        return ngx_http_taurus_guard_not_forwarded(r, ctx, status, &gone);
    }

    if (ngx_http_taurus_guard_replace_body(r, &ctx->body) != NGX_OK) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return ngx_http_taurus_guard_not_forwarded(r, ctx, status, &no_body);
    }

    ctx->step = NGX_HTTP_TG_STEP_FORWARD;

    /*
     * The proxy's handler, set from clcf->handler when the location was
     * found, runs with the secret headers; an internal redirect finds
     * the location again and so never keeps this wrapper.
     */

    if (r->content_handler != NULL) {
        ctx->content_handler = r->content_handler;
        r->content_handler = ngx_http_taurus_guard_content_handler;

    } else {
        /* nothing here builds an upstream request: no secret needed */
        ngx_http_taurus_guard_secrets_pop(r, ctx);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "taurus_guard: batch %s allowed for project \"%V\"",
                  ctx->id, &ctx->project_id);

    return NGX_DECLINED;
}


/*
 * An allowed batch that is not forwarded: the record closing its allow
 * says why, and the request ends with status (499: nothing is sent).
 */

static ngx_int_t
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
 * The content handler of a forwarded batch: the secret headers are in
 * r->headers_in while the wrapped handler runs.  With the body read
 * already, the proxy's ngx_http_read_client_request_body() calls
 * ngx_http_upstream_init() at once, and its create_request() copies the
 * headers into the request buffer, which retries reuse.
 */

static ngx_int_t
ngx_http_taurus_guard_content_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_flag_t                    built;
    ngx_http_handler_pt           handler;
    ngx_http_upstream_t          *u;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx == NULL || ctx->content_handler == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    handler = ctx->content_handler;
    ctx->content_handler = NULL;

    if (ngx_http_taurus_guard_secrets_push(r, ctx) != NGX_OK) {
        ngx_http_taurus_guard_secrets_pop(r, ctx);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = handler(r);

    u = r->upstream;

    built = (u != NULL && u->request_bufs != NULL
             && (r->request_body == NULL
                 || u->request_bufs != r->request_body->bufs));

    ngx_http_taurus_guard_secrets_pop(r, ctx);

    if (built) {
        return rc;
    }

    /*
     * A cache lock, a thread read or a handler of another kind: the
     * request would be built later, without the secrets.  Fail closed.
     */

    if (u != NULL) {
        u->create_request = ngx_http_taurus_guard_unsigned_request;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: batch %s: the content handler did not"
                  " build its upstream request at once, nothing unsigned"
                  " is forwarded", ctx->id);

    return rc;
}


static ngx_int_t
ngx_http_taurus_guard_unsigned_request(ngx_http_request_t *r)
{
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "taurus_guard: upstream request built after the secret"
                  " headers were taken back, refused");

    return NGX_ERROR;
}


/*
 * A forwarded batch back in the phases after an internal redirect
 * (error_page, post_action, X-Accel-Redirect).  Where a content handler
 * would send it again, it is refused; a static page or "return" may
 * still answer.
 */

static ngx_int_t
ngx_http_taurus_guard_reentry(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_http_core_loc_conf_t  *clcf;

    if (r->content_handler == NULL
        || r->content_handler == ngx_http_taurus_guard_content_handler)
    {
        /* nothing to forward, or the phases resuming towards the proxy */
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ctx->nreentries < NGX_HTTP_TG_REENTRIES) {
        ctx->reentries[ctx->nreentries].data = clcf->name.data;
        ctx->reentries[ctx->nreentries].len = clcf->name.len;
    }

    ctx->nreentries++;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: batch %s forwarded already, a second"
                  " forward from \"%V\" refused", ctx->id, &clcf->name);

    if (r->post_action) {
        /* the response is sent: end quietly, as the action would */
        ngx_http_finalize_request(r, NGX_OK);
        return NGX_DONE;
    }

    ngx_http_finalize_request(r, ngx_http_taurus_guard_refuse_text(r, ctx,
                                     NGX_HTTP_BAD_GATEWAY,
                                     "the batch was forwarded already;"
                                     " it is not sent a second time"));
    return NGX_DONE;
}


/*
 * Whether the client went away while its request waited: HTTP/2 marks
 * the stream's connection on RST_STREAM, an HTTP/1 socket reads as
 * closed (the body is read whole, so what is left is a next request).
 */

static ngx_int_t
ngx_http_taurus_guard_client_gone(ngx_http_request_t *r)
{
    u_char             buf;
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = r->connection;

    if (c->error) {
        return 1;
    }

#if (NGX_HTTP_V2)
    if (r->stream != NULL) {
        return 0;
    }
#endif

    n = recv(c->fd, &buf, 1, MSG_PEEK);

    if (n > 0) {
        return 0;
    }

    if (n == 0) {
        return 1;
    }

    err = ngx_socket_errno;

    return (err == NGX_EAGAIN || err == NGX_EINTR) ? 0 : 1;
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
 * The gateway reads the body as bytes: a body its sender declared
 * encoded (gzip, deflate, ...) would be read differently from how it
 * was sent, so only "identity", or no Content-Encoding, is accepted.
 */

static ngx_int_t
ngx_http_taurus_guard_content_encoding(ngx_http_request_t *r)
{
    u_char           *p, *last;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

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

        if (h[i].key.len != sizeof("Content-Encoding") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Encoding",
                               sizeof("Content-Encoding") - 1) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        if ((size_t) (last - p) != sizeof("identity") - 1
            || ngx_strncasecmp(p, (u_char *) "identity",
                               sizeof("identity") - 1) != 0)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
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


/*
 * The one way a refusal leaves the gateway.  The status says the rest:
 * the error code is TG.0 and the status, the decision "deny" for 403,
 * 409 and 429 (the allow-list, the policy), "error" for 5xx, "invalid"
 * for the other 4xx.  Where the request is says what is recorded:
 * before the allow record, a record of the refusal (with the batch and
 * what was denied); after it, the error record closing the allow; after
 * the forward (a second forward refused), nothing: the done record
 * counts it.  The log handler counts each request once in the metrics.
 */

static ngx_int_t
ngx_http_taurus_guard_refuse(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after)
{
    ngx_int_t           rc;
    tg_audit_record_t   rec;

    static ngx_str_t  unavailable = ngx_string("audit log unavailable");

    if (ctx->step == NGX_HTTP_TG_STEP_FORWARD) {
        return ngx_http_taurus_guard_send_json(r, ctx, status, reason, NULL,
                                               0);
    }

    if (ctx->step == NGX_HTTP_TG_STEP_AUDIT) {
        (void) ngx_http_taurus_guard_not_forwarded(r, ctx, status, reason);
        return ngx_http_taurus_guard_send_json(r, ctx, status, reason, NULL,
                                               0);
    }

    ctx->decision = (status == NGX_HTTP_FORBIDDEN
                     || status == NGX_HTTP_CONFLICT
                     || status == NGX_HTTP_TOO_MANY_REQUESTS)
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

    if (ngx_http_taurus_guard_audit(r, ctx->audit, &rec, 0) != NGX_OK) {
        /* a decision that cannot be recorded is not given */
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
        reason = &unavailable;
        denied = NULL;
        ctx->status = status;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_taurus_guard_send_json(r, ctx, status, reason, denied,
                                           retry_after);
}


static ngx_int_t
ngx_http_taurus_guard_refuse_text(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, const char *text)
{
    ngx_str_t  reason;

    reason.data = (u_char *) text;
    reason.len = ngx_strlen(text);

    return ngx_http_taurus_guard_refuse(r, ctx, status, &reason, NULL, 0);
}


/* {"error_code":"TG.0403","error_msg":"...","audit_id":"...",
 *  "denied":["..."]} */

static ngx_int_t
ngx_http_taurus_guard_send_json(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after)
{
    u_char           *p;
    size_t            len;
    tg_str_t         *d;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

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
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
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

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

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
 * Every guarded response carries the audit id, the upstream's too; a
 * request nginx refused before the handler ran gets its id here.  The
 * SDKs show X-Request-Id as an error's request id: a refusal carries the
 * audit id there, a forwarded answer the cloud's own, untouched (the
 * audit id when the cloud sent none, a proxy error, say).
 */

static ngx_int_t
ngx_http_taurus_guard_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                         i, request_id;
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

    if (ctx->step == NGX_HTTP_TG_STEP_FORWARD && ctx->token_src != NULL
        && r->headers_out.status == NGX_HTTP_UNAUTHORIZED)
    {
        /* expired early or revoked: the next request fetches a new one */
        ngx_http_taurus_guard_fetch_refused(r, ctx);
    }

    /* the id is the gateway's: one the upstream sent is not passed on */

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

        if (o[i].key.len == sizeof(NGX_HTTP_TG_ID_HEADER) - 1
            && ngx_strncasecmp(o[i].key.data, (u_char *) NGX_HTTP_TG_ID_HEADER,
                               o[i].key.len) == 0)
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
        ngx_str_set(&h->key, "X-Taurus-Guard-Decision");
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
 * The log phase closes an allowed batch, and writes the record of a
 * guarded request nginx refused before the gateway decided
 * (client_max_body_size, a broken chunked body, a client gone).  A
 * response below 400 the gateway never decided on ("return 200", a
 * redirect) is not a decision: it gets no record.
 */

ngx_int_t
ngx_http_taurus_guard_log_handler(ngx_http_request_t *r)
{
    ngx_flag_t                    forwarded;
    ngx_uint_t                    status, upstream;
    tg_audit_record_t             rec;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_taurus_guard_get_ctx(r);

    if (ctx == NULL || ctx->audit == NULL) {
        return NGX_OK;
    }

    status = r->headers_out.status;
    forwarded = (ctx->step == NGX_HTTP_TG_STEP_FORWARD);

    /* what the batch took of its policy: given back, or spent */

    if (ctx->ticket.policy != NULL) {
        ngx_http_taurus_guard_policy_end(r, &ctx->ticket, &ctx->project_id,
                                         ctx->batch, ctx->id, forwarded,
                                         r->upstream
                                         ? r->upstream->headers_in.status_n
                                         : 0);
    }

    if (status == 0 && r->connection->error) {
        status = 499;
    }

    if (forwarded || ctx->step == NGX_HTTP_TG_STEP_AUDIT) {

        /* an allow record no other record closed yet */

        if (!forwarded) {
            ctx->decision = TG_DECISION_ERROR;
            ctx->status = status;
            ngx_str_set(&ctx->reason,
                        "the request ended before the forward");
        }

        ngx_http_taurus_guard_close(r, ctx);

        if (forwarded) {
            upstream = r->upstream ? r->upstream->headers_in.status_n : 0;
            ngx_http_taurus_guard_metrics_request(r,
                                                  ctx->would_deny
                                                  ? TG_DECISION_WOULD_DENY
                                                  : TG_DECISION_ALLOW,
                                                  status, upstream);
        } else {
            ngx_http_taurus_guard_metrics_request(r,
                                                  (tg_decision_t) ctx->decision,
                                                  ctx->status, 0);
        }

        return NGX_OK;
    }

    if (ctx->decision != NGX_HTTP_TG_UNDECIDED) {
        ngx_http_taurus_guard_metrics_request(r,
                                              (tg_decision_t) ctx->decision,
                                              ctx->status, 0);
        return NGX_OK;
    }

    if (status != 0 && status < NGX_HTTP_BAD_REQUEST) {
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

    ngx_http_taurus_guard_metrics_request(r, (tg_decision_t) ctx->decision,
                                          status, 0);

    return NGX_OK;
}


/*
 * The one record that closes an allow: "done" once the batch went to
 * the content handler, with whether the upstream received it (some try
 * sent it bytes), each try, and the second forwards refused; "error"
 * with the reason when it never went.
 */

static void
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
        (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec, 0);
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

                if (st[i].bytes_sent > 0) {
                    rec.forwarded = 1;
                }
            }

            rec.upstream = a;
            rec.nupstream = n;
        }
    }

    if (r->upstream != NULL && r->upstream->request_sent
        && r->upstream->peer.connection != NULL
        && r->upstream->peer.connection->sent > 0)
    {
        /* the try in flight when the client went, not yet in a state */
        rec.forwarded = 1;
    }

    if (r->upstream != NULL) {
        ngx_http_taurus_guard_upstream_request_id(r, &rec.request_id);
    }

    if (ctx->nreentries) {
        rec.reentries = ctx->reentries;
        rec.nreentries = ngx_min(ctx->nreentries, NGX_HTTP_TG_REENTRIES);
    }

    (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec, 0);
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
    ctx->resume = ngx_http_taurus_guard_resume_handler;
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
