
/*
 * taurus-guard: one guarded request, in order (README, "One guarded
 * request, in order"): route, body, validate, authorize, secrets, sign,
 * audit, then forward.
 *
 * The check runs in the precontent phase, which "satisfy any" cannot
 * skip, and reads the body the way ngx_http_mirror_module does: the ctx
 * is the re-entry sentinel, the phase waits with NGX_DONE and resumes
 * once the body is whole.  From there one function walks the steps in
 * order from ctx->step, whoever wakes the request (the body, a fetch, a
 * flush).  Every path that is not "forward" ends in a refusal
 * (ngx_http_taurus_guard_refuse.c); nothing is forwarded before its
 * audit record is on disk (ngx_http_taurus_guard_forward.c).
 */


#include "ngx_http_taurus_guard_module.h"


static void ngx_http_taurus_guard_body_handler(ngx_http_request_t *r);
static void ngx_http_taurus_guard_resume_handler(ngx_http_request_t *r);
static void ngx_http_taurus_guard_run(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken);
static ngx_int_t ngx_http_taurus_guard_subrequest_refused(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_validate(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_authorize(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_denied_reason(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_array_t *denied, ngx_str_t *reason);
static ngx_int_t ngx_http_taurus_guard_policy_step(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx);
static ngx_int_t ngx_http_taurus_guard_sign_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_flag_t woken);


/*
 * The rewrite phase, the first a location runs: a guarded request gets
 * its ctx here, before the access checks (allow and deny, auth_request,
 * limit_req, limit_conn, a "return") may refuse it.  An error_page or
 * post_action that sends such a refusal on then finds it, as it finds
 * that of a request refused while its body was read, and no content
 * handler sends on a request the gateway never checked.
 */

ngx_int_t
ngx_http_taurus_guard_rewrite_handler(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (r != r->main) {

        /*
         * A subrequest into a guarded location (a mirror, an
         * auth_request) is refused here, before the phases after this
         * one: a limit_req or limit_conn of the location, or a
         * "return", would refuse it first, and an "error_page 503 =
         * @fallback" that proxies would then forward the main
         * request's body, never checked.  A fetch of the gateway's own
         * is the precontent handler's to check.
         */

        if (!lcf->guard || ngx_http_taurus_guard_is_fetch(r)) {
            return NGX_DECLINED;
        }

        return ngx_http_taurus_guard_subrequest_refused(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    if (!lcf->guard) {

        /*
         * Still set, so no internal redirect zeroed it: "rewrite ... last"
         * took the request out of a guarded location before its checks.
         * It is this location's now, as it was before the ctx was made
         * in the rewrite phase.
         */

        if (ctx != NULL && ctx->step == NGX_HTTP_TG_STEP_ROUTE) {
            ngx_http_taurus_guard_drop_ctx(r);
        }

        return NGX_DECLINED;
    }

    if (ctx != NULL) {
        return NGX_DECLINED;
    }

    if (r->internal && ngx_http_taurus_guard_get_ctx(r) != NULL) {
        /* the same request again: the precontent handler finds it */
        ngx_http_set_ctx(r, NULL, ngx_http_taurus_guard_module);
        return NGX_DECLINED;
    }

    if (ngx_http_taurus_guard_create_ctx(r, lcf) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_taurus_guard_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_str_t                          reason;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (!lcf->guard) {

        /* the phase's entry (module.c) lets these go before the call */

        if (!r->internal) {
            return NGX_DECLINED;
        }

        if (r != r->main) {

            /*
             * A subrequest with a body (a mirror's) that an error_page
             * sent here: nginx may have refused it in a guarded location
             * before any module ran there (a Content-Length over that
             * location's client_max_body_size is refused while nginx
             * picks the location), and nothing here says where it came
             * from.  Its body is the main request's, never checked: it
             * is not sent on.
             */

            if (r->error_page
                && r->request_body != NULL
                && (r->request_body->bufs != NULL
                    || r->request_body->temp_file != NULL)
                && !ngx_http_taurus_guard_is_fetch(r))
            {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "taurus_guard: a subrequest with a body sent"
                              " on by error_page refused");
                return NGX_HTTP_FORBIDDEN;
            }

            /* a fetch of the gateway's own only where it may be served */
            rc = ngx_http_taurus_guard_fetch_check(r);
            return (rc == NGX_OK) ? NGX_DECLINED : rc;
        }

        /* an internal redirect: is it a guarded request coming back? */

        ctx = ngx_http_taurus_guard_get_ctx(r);

        if (ctx == NULL) {
            return NGX_DECLINED;
        }

        return ngx_http_taurus_guard_reentry(r, ctx);
    }

    if (r != r->main) {
        rc = ngx_http_taurus_guard_fetch_check(r);

        if (rc == NGX_OK) {
            /* a fetch of the gateway's own: a token, credentials */
            return NGX_DECLINED;
        }

        if (rc != NGX_DECLINED) {
            return rc;
        }

        /* one the rewrite phase did not see (it refuses them first) */

        return ngx_http_taurus_guard_subrequest_refused(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    if (ctx == NULL && r->internal) {

        /*
         * An internal redirect zeroed the contexts: a guarded request
         * redirected here is the same request, at the step it was at,
         * not a new one.  One that access checks refused before it was
         * checked is checked here, unless its response is sent.
         */

        ctx = ngx_http_taurus_guard_get_ctx(r);

        if (ctx != NULL
            && (ctx->step != NGX_HTTP_TG_STEP_ROUTE || r->post_action))
        {
            return ngx_http_taurus_guard_reentry(r, ctx);
        }
    }

    if (ctx != NULL && ctx->step != NGX_HTTP_TG_STEP_ROUTE) {

        /* the phases again: resumed */

        switch (ctx->step) {

        case NGX_HTTP_TG_STEP_FORWARD:
            return ngx_http_taurus_guard_reentry(r, ctx);

        case NGX_HTTP_TG_STEP_DONE:
            return ctx->status;

        default:
            /* still waiting: the body, a fetch, a flush */
            return NGX_DONE;
        }
    }

    if (ctx == NULL) {
        ctx = ngx_http_taurus_guard_create_ctx(r, lcf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* this location's user, after "set" and auth_request_set */

    if (lcf->audit_user != NULL) {
        ctx->user_cv = lcf->audit_user;
    }

    if (ngx_http_taurus_guard_ctx_user(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* where a fetch or a flush that made the request wait brings it back */
    ctx->resume = ngx_http_taurus_guard_resume_handler;
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

    /*
     * Room for the items this body can hold, not for taurus_guard_max_batch
     * of them: 32 bytes each, the default 100 took 3,200 bytes of the
     * request's pool for a batch of one, and a pool block of its own.
     */

    batch.max_items = lcf->max_batch;
    batch.room = tg_batch_room(lcf->max_batch, raw.len);
    batch.items = ngx_palloc(r->pool, batch.room * sizeof(tg_instance_t));
    batch.scratch_size = raw.len ? raw.len : 1;
    batch.scratch = ngx_pnalloc(r->pool, batch.scratch_size);

    if (batch.items == NULL || batch.scratch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    trc = tg_batch_parse(&batch, raw.data, raw.len, err, sizeof(err));

    /* what the batch keeps is in scratch now, the message in err */

    ngx_http_taurus_guard_release_body(r, &raw);

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

        /*
         * Report mode previews a policy for the projects the allow-list
         * names.  A project it does not name at all is refused in both
         * modes: forwarding it would also fetch a token (and take a
         * fetch slot) for any project id a caller makes up.
         */

        if (lcf->mode != NGX_HTTP_TG_MODE_REPORT
            || !tg_allow_has_project(mcf->allow, ctx->project_id.data,
                                     ctx->project_id.len))
        {
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

    /*
     * The metadata service's credentials serve every project: the
     * fetcher keeps them under one key of TG_PROJECT_ID_LEN zero bytes,
     * which no project ID (32 letters or digits) can be.
     */

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
 * Steps 5 and 6: sign, then put the allow record on disk.  NGX_DECLINED
 * goes on to the forward, which refuses a record not on disk; NGX_DONE
 * waits for the flush; anything else finalizes.
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
        (void) ngx_http_taurus_guard_audit(r, lcf->audit, &rec,
                                           NGX_HTTP_TG_AUDIT_LATER);

        return NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    /* 5. sign; a failure forwards nothing */

    ngx_str_null(&reason);

    if (ngx_http_taurus_guard_sign(r, lcf, ctx, &reason) != NGX_OK) {
        if (reason.len == 0) {
            ngx_str_set(&reason, "could not sign the request");
        }

        return ngx_http_taurus_guard_refuse(r, ctx,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            &reason, NULL, 0);
    }

    /* 6. the record is on disk before anything leaves */

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

    /* the instances as the body has them: copied, not escaped again */
    if (tg_batch_items(ctx->batch, ctx->body.data, ctx->body.len,
                       &rec.items)
        != TG_OK)
    {
        rec.items.data = NULL;
    }

    /*
     * A later record closes it, whatever comes: done, or error when it
     * is not forwarded (which stands alone if the allow was not written).
     * The step moves first: nothing that happens during the write may
     * find the request still at signing, and sign and record it again.
     */
    ctx->step = NGX_HTTP_TG_STEP_AUDIT;

    rc = ngx_http_taurus_guard_audit(r, lcf->audit, &rec,
                                     NGX_HTTP_TG_AUDIT_DURABLE);

    if (rc == NGX_AGAIN) {
        /* blocked until written at the end of the turn and flushed */
        return NGX_DONE;
    }

    /* not even queued: refused by the next step, nothing forwarded */
    ctx->sync_failed = (rc != NGX_OK);

    return NGX_DECLINED;
}


/*
 * A subrequest into a guarded location would forward the main request's
 * body, never checked.  The 403 stands: no error_page sends the
 * subrequest on to an unguarded location (an "error_page 403 =
 * @fallback" that proxies), which would forward that body after all.
 */

static ngx_int_t
ngx_http_taurus_guard_subrequest_refused(ngx_http_request_t *r)
{
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "taurus_guard: subrequest to a guarded location refused");
    r->error_page = 1;
    return NGX_HTTP_FORBIDDEN;
}
