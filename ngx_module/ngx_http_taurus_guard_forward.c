
/*
 * taurus-guard: an allowed batch after its allow record, to its end.
 * It is forwarded once: the content handler (the proxy's) is wrapped so
 * that the secret headers exist only while it builds its request, and
 * any later way back into a location with a content handler
 * (error_page, post_action, X-Accel-Redirect) is refused and counted.
 * The log phase writes the record closing each allow (done, or error
 * when it was not forwarded), and that of a request nginx refused
 * before the gateway decided.
 */


#include "ngx_http_taurus_guard_module.h"


static ngx_int_t ngx_http_taurus_guard_content_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_unsigned_request(
    ngx_http_request_t *r);


/*
 * The allow record is on disk, or could not be put there: forward the
 * canonical body, or refuse with 503 and forward nothing.  A client gone
 * while the request waited gets nothing forwarded either.
 */

ngx_int_t
ngx_http_taurus_guard_forward(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken)
{
    ngx_str_t   reason;
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

    /*
     * A flush long enough to age the signature, or to take a fetched
     * secret to within its margin of its end (where a request would no
     * longer take it: it could expire in flight): signed again, now.
     */

    if (woken
        && (ngx_time() - ctx->signed_at >= NGX_HTTP_TG_SIGN_AGE
            || (ctx->usable_until && ngx_time() >= ctx->usable_until)))
    {
        ngx_str_null(&reason);

        if (ngx_http_taurus_guard_sign_again(r, ctx, &reason) != NGX_OK) {
            if (reason.len == 0) {
                ngx_str_set(&reason, "could not sign the request");
            }

            return ngx_http_taurus_guard_refuse(r, ctx,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            &reason, NULL, 0);
        }
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
 * A guarded request back in the phases after an internal redirect
 * (error_page, post_action, X-Accel-Redirect, a named location).  It
 * reaches a content handler that sends it somewhere once: the forward of
 * its checked batch.  Where a content handler would send it again, or
 * send what the gateway never checked (nginx refused it while the body
 * was read, and error_page sent it on), it is refused; a static page or
 * "return" may still answer.
 */

ngx_int_t
ngx_http_taurus_guard_reentry(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    u_char                    *p;
    ngx_uint_t                 status;
    ngx_str_t                  reason;
    ngx_http_core_loc_conf_t  *clcf;

    if (r->content_handler == NULL
        || r->content_handler == ngx_http_taurus_guard_content_handler)
    {
        /* nothing to forward, or the phases resuming towards the proxy */
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ctx->step == NGX_HTTP_TG_STEP_FORWARD) {
        if (ctx->nreentries < NGX_HTTP_TG_REENTRIES) {
            ctx->reentries[ctx->nreentries].data = clcf->name.data;
            ctx->reentries[ctx->nreentries].len = clcf->name.len;
        }

        ctx->nreentries++;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "taurus_guard: batch %s forwarded already, a second"
                      " forward from \"%V\" refused", ctx->id, &clcf->name);

    } else {
        /* decided: the gateway refused it, else nginx did before */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "taurus_guard: request %s not forwarded from \"%V\":"
                      " %s", ctx->id, &clcf->name,
                      (ctx->decision != NGX_HTTP_TG_UNDECIDED)
                      ? "the gateway refused it"
                      : "it was refused before it was checked");
    }

    if (r->post_action) {
        /* the response is sent: end quietly, as the action would */
        ngx_http_finalize_request(r, NGX_OK);
        return NGX_DONE;
    }

    if (ctx->step == NGX_HTTP_TG_STEP_FORWARD) {
        ngx_http_finalize_request(r, ngx_http_taurus_guard_refuse_text(r, ctx,
                                         NGX_HTTP_BAD_GATEWAY,
                                         "the batch was forwarded already;"
                                         " it is not sent a second time"));
        return NGX_DONE;
    }

    /*
     * nginx's own status, where it is known: the one it refused with
     * while the body was read, or the one error_page kept ("=" alone
     * keeps none: 400 then).
     */

    status = (ctx->step == NGX_HTTP_TG_STEP_DONE
              && ctx->status >= NGX_HTTP_BAD_REQUEST)
             ? ctx->status
             : (r->err_status >= NGX_HTTP_BAD_REQUEST)
             ? (ngx_uint_t) r->err_status : 0;

    p = ngx_pnalloc(r->pool, 80);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    reason.data = p;

    if (status) {
        reason.len = ngx_snprintf(p, 80, "refused by nginx before the"
                                  " gateway decided (status %ui), not"
                                  " forwarded", status)
                     - p;

    } else {
        ngx_str_set(&reason, "refused by nginx before the gateway decided,"
                             " not forwarded");
        status = NGX_HTTP_BAD_REQUEST;
    }

    ngx_http_finalize_request(r, ngx_http_taurus_guard_refuse(r, ctx, status,
                                     &reason, NULL, 0));
    return NGX_DONE;
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
                                         forwarded
                                         ? ngx_http_taurus_guard_outcome(r)
                                         : NGX_HTTP_TG_UNSENT);
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

    (void) ngx_http_taurus_guard_audit(r, ctx->audit, &rec,
                                       NGX_HTTP_TG_AUDIT_LATER);

    ngx_http_taurus_guard_metrics_request(r, (tg_decision_t) ctx->decision,
                                          status, 0);

    return NGX_OK;
}
