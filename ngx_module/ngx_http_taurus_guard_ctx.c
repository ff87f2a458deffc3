
/*
 * taurus-guard: the request's context.
 *
 * Created when a guarded request first meets the gateway (the rewrite
 * phase handler, the precontent one, or the header filter for a
 * response nginx made before either ran), with the audit id every
 * record and answer of the request carries; found again after an
 * internal redirect through its pool cleanup, dropped when "rewrite
 * ... last" takes the request out of the guard before its check.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/rand.h>


static void ngx_http_taurus_guard_ctx_cleanup(void *data);


/*
 * The ctx survives internal redirects (error_page after the proxy) the
 * way ngx_http_realip_module's does: it is found again through its pool
 * cleanup, so a forwarded batch always gets its completion record.
 */

ngx_http_taurus_guard_ctx_t *
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


/*
 * Cached values of variables forgotten: the next reading evaluates them
 * again (a secret header taken back, a canonical body's length, a
 * fetch's body and headers; r->variables is shared with subrequests).
 */

void
ngx_http_taurus_guard_forget_vars(ngx_http_request_t *r, ngx_int_t *index,
    ngx_uint_t n)
{
    ngx_uint_t                  i;
    ngx_http_variable_value_t  *v;

    for (i = 0; i < n; i++) {
        v = &r->variables[index[i]];

        v->valid = 0;
        v->not_found = 0;
        v->len = 0;
        v->data = NULL;
    }
}


/* the request is not guarded after all: no later phase may find its ctx */

void
ngx_http_taurus_guard_drop_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_taurus_guard_ctx_cleanup) {
            /* ngx_destroy_pool() skips a cleanup without a handler */
            cln->handler = NULL;
        }
    }

    ngx_http_set_ctx(r, NULL, ngx_http_taurus_guard_module);
}


ngx_http_taurus_guard_ctx_t *
ngx_http_taurus_guard_create_ctx(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf)
{
    u_char                             *rnd;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_taurus_guard_ctx_t        *ctx;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_taurus_guard_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_taurus_guard_ctx_t));

    cln->handler = ngx_http_taurus_guard_ctx_cleanup;

    /*
     * One RAND_bytes() for NGX_HTTP_TG_IDS ids: a call costs far more
     * than its bytes (about 6,600 instructions for the 16 of one id,
     * 8,400 for the 1,024 of 64).  The configuration is made in the
     * master with none left, so each worker draws its own after the
     * fork, and every byte is handed out once.
     */

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    if (mcf->ids_left < TG_AUDIT_ID_LEN / 2) {
        if (RAND_bytes(mcf->ids, sizeof(mcf->ids)) != 1) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "taurus_guard: RAND_bytes() failed");
            return NULL;
        }

        mcf->ids_left = sizeof(mcf->ids);
    }

    mcf->ids_left -= TG_AUDIT_ID_LEN / 2;
    rnd = mcf->ids + mcf->ids_left;

    tg_hex_encode(rnd, TG_AUDIT_ID_LEN / 2, (char *) ctx->id);
    ctx->id[TG_AUDIT_ID_LEN] = '\0';

    ctx->decision = NGX_HTTP_TG_UNDECIDED;
    ctx->start = ngx_current_msec;
    ctx->audit = lcf->audit;

    /*
     * The user is asked for when the check starts or a record is made:
     * in the rewrite phase, "set" and auth_request_set have not run.
     */

    ctx->user_cv = lcf->audit_user;

    ngx_http_set_ctx(r, ctx, ngx_http_taurus_guard_module);

    return ctx;
}


/*
 * Once, before the guard strips the Authorization header that
 * $remote_user reads: when the check starts, or with the record of a
 * request refused before it.
 */

ngx_int_t
ngx_http_taurus_guard_ctx_user(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_http_complex_value_t  *cv;

    cv = ctx->user_cv;

    if (cv == NULL) {
        return NGX_OK;
    }

    ctx->user_cv = NULL;

    return ngx_http_complex_value(r, cv, &ctx->user);
}


static void
ngx_http_taurus_guard_ctx_cleanup(void *data)
{
    /* only a marker for ngx_http_taurus_guard_get_ctx() */
}
