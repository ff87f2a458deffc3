
/*
 * taurus-guard: IAM tokens fetched by the gateway itself.
 *
 *     taurus_guard_token iam=/_tg_iam password_file=PATH [refresh=1h];
 *
 * A token is scoped to one project, so tokens are kept per project, in
 * shared memory: all workers use the one fetched.  The fetch is a
 * subrequest to an internal location the operator points at IAM's
 * "POST /v3/auth/tokens" with proxy_pass, so TLS, timeouts and resolving
 * are nginx's usual settings.  One fetch at a time per project: a worker
 * marks the slot "fetching" under the zone's lock, the others look again
 * every NGX_HTTP_TG_IAM_POLL ms.  A token close to its end (refresh) is
 * renewed by a background subrequest while it is still used; with no
 * valid token left and the fetch failed, the request is refused.  A 401
 * from the endpoint drops the token it refused.
 *
 * The password and the tokens are never logged; the request body that
 * carries the password is wiped when the request ends.
 */


#include <openssl/crypto.h>

#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_IAM_FILE_MAX     4096
#define NGX_HTTP_TG_IAM_ZONE_SIZE    (4 * 1024 * 1024)
#define NGX_HTTP_TG_IAM_TOKEN_MAX    (64 * 1024)

#define ngx_http_tg_shpool(iam)                                              \
    ((ngx_slab_pool_t *) (iam)->zone->shm.addr)
#define ngx_http_tg_sh(iam)                                                  \
    ((ngx_http_taurus_guard_iam_sh_t *) ngx_http_tg_shpool(iam)->data)


typedef struct {
    ngx_http_taurus_guard_iam_t  *iam;
    ngx_http_taurus_guard_ctx_t  *ctx;       /* NULL: a background renewal */
    u_char                        project[TG_PROJECT_ID_LEN];
    ngx_uint_t                    done;      /* its answer was handled */
} ngx_http_taurus_guard_iam_fetch_t;


static ngx_int_t ngx_http_taurus_guard_fetch_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *what);
static ngx_int_t ngx_http_taurus_guard_iam_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_http_taurus_guard_metadata_answer(
    ngx_http_request_t *sr, ngx_http_taurus_guard_iam_t *iam,
    ngx_str_t *profile, time_t *expires, const char **problem);
static ngx_int_t ngx_http_taurus_guard_fetch_body(ngx_http_request_t *sr,
    ngx_str_t *body, const char **problem);
static ngx_http_taurus_guard_iam_slot_t *ngx_http_taurus_guard_iam_slot(
    ngx_http_taurus_guard_iam_t *iam, u_char *project, ngx_uint_t add);
static ngx_int_t ngx_http_taurus_guard_iam_take(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_uint_t *renew);
static ngx_int_t ngx_http_taurus_guard_iam_fetch(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_uint_t background);
static ngx_int_t ngx_http_taurus_guard_iam_fetched(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static ngx_int_t ngx_http_taurus_guard_iam_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *token, time_t *expires,
    const char **problem);
static void ngx_http_taurus_guard_iam_end_fetch(
    ngx_http_taurus_guard_iam_t *iam, u_char *project, ngx_str_t *token,
    time_t expires);
static void ngx_http_taurus_guard_iam_poll(ngx_event_t *ev);
static void ngx_http_taurus_guard_iam_abandoned(void *data);
static void ngx_http_taurus_guard_iam_cleanup(void *data);
static void ngx_http_taurus_guard_iam_wait_cleanup(void *data);
static tg_iam_cred_t *ngx_http_taurus_guard_iam_cred(ngx_log_t *log,
    ngx_http_taurus_guard_iam_t *iam);


char *
ngx_http_taurus_guard_iam_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_str_t *value, ngx_uint_t n)
{
    size_t                        line;
    tg_rc_t                       rc;
    ngx_str_t                     s;
    ngx_uint_t                    i;
    ngx_pool_cleanup_t           *cln;
    ngx_http_taurus_guard_iam_t  *iam;

    iam = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_t));
    if (iam == NULL) {
        return NGX_CONF_ERROR;
    }

    iam->refresh = 3600;

    for (i = 1; i < n; i++) {

        if (ngx_strncmp(value[i].data, "iam=", 4) == 0) {
            iam->uri.data = value[i].data + 4;
            iam->uri.len = value[i].len - 4;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            iam->watch.path.data = value[i].data + 14;
            iam->watch.path.len = value[i].len - 14;
            continue;
        }

        if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            iam->refresh = ngx_parse_time(&s, 1);
            if (iam->refresh == (time_t) NGX_ERROR || iam->refresh <= 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_token: invalid \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    iam->margin = ngx_min(30, ngx_max(iam->refresh / 4, 1));

    if (iam->uri.len == 0 || iam->uri.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: \"iam=\" takes the URI of"
                           " an internal location that proxies to IAM");
        return NGX_CONF_ERROR;
    }

    if (iam->watch.path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: \"iam=\" needs"
                           " \"password_file=PATH\"");
        return NGX_CONF_ERROR;
    }

    iam->watch.conf_file = cf->conf_file->file.name.data;
    iam->watch.conf_line = cf->conf_file->line;

    if (ngx_conf_full_name(cf->cycle, &iam->watch.path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    iam->data = ngx_http_taurus_guard_read_private(cf, &iam->watch,
                                                   NGX_HTTP_TG_IAM_FILE_MAX,
                                                   &iam->size);
    if (iam->data == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_taurus_guard_iam_cleanup;
    cln->data = iam;

    rc = tg_iam_cred_parse(&iam->cred, iam->data, iam->size, &line);

    if (rc != TG_OK) {
        if (line) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_token: \"%V\", line %uz: %s",
                               &iam->watch.path, line, tg_strerror(rc));
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_token: \"%V\": %s",
                               &iam->watch.path, tg_strerror(rc));
        }

        return NGX_CONF_ERROR;
    }

    if (ngx_http_taurus_guard_fetch_zone(cf, iam, &iam->watch.path)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    token->iam = iam;
    token->watch = iam->watch;

    return NGX_CONF_OK;
}


/*
 * taurus_guard_credentials metadata=URI [refresh=TIME]: the ECS metadata
 * service's temporary AK/SK and security token, shared by all workers.
 */

char *
ngx_http_taurus_guard_metadata_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred, ngx_str_t *value, ngx_uint_t n)
{
    ngx_str_t                     s;
    ngx_uint_t                    i;
    ngx_http_taurus_guard_iam_t  *meta;

    static ngx_str_t  none = ngx_string("metadata");

    meta = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_t));
    if (meta == NULL) {
        return NGX_CONF_ERROR;
    }

    meta->kind = NGX_HTTP_TG_FETCH_METADATA;
    meta->refresh = 900;

    for (i = 1; i < n; i++) {

        if (ngx_strncmp(value[i].data, "metadata=", 9) == 0) {
            meta->uri.data = value[i].data + 9;
            meta->uri.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            meta->refresh = ngx_parse_time(&s, 1);
            if (meta->refresh == (time_t) NGX_ERROR || meta->refresh <= 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_credentials: invalid"
                                   " \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials: invalid parameter"
                           " \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    meta->margin = ngx_min(30, ngx_max(meta->refresh / 4, 1));

    if (meta->uri.len == 0 || meta->uri.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials: \"metadata=\" takes"
                           " the URI of an internal location that proxies"
                           " to the metadata service");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_taurus_guard_fetch_zone(cf, meta, &none) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cred->fetch = meta;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_taurus_guard_fetch_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *what)
{
    ngx_str_t  name;

    name.len = sizeof("taurus_guard_fetch:") - 1 + what->len + 1
               + iam->uri.len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(name.data, "taurus_guard_fetch:%V:%V", what, &iam->uri);

    iam->zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_TG_IAM_ZONE_SIZE,
                                      &ngx_http_taurus_guard_module);
    if (iam->zone == NULL) {
        return NGX_ERROR;
    }

    iam->zone->init = ngx_http_taurus_guard_iam_init_zone;
    iam->zone->data = iam;

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_iam_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t                 *shpool;
    ngx_http_taurus_guard_iam_sh_t  *sh;

    /*
     * Every directive naming the same source shares this zone: its state
     * is reached through zone->shm.addr, never cached in one of them.
     * A reload finds the tokens in hand.
     */

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (data != NULL || zone->shm.exists) {
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_taurus_guard_iam_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;

    return NGX_OK;
}


/*
 * NGX_OK: ctx->token is a token valid for a while yet; NGX_AGAIN: the
 * request waits for a fetch (its own or another's), then ctx->resume
 * runs; NGX_ERROR: no token can be had.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out)
{
    ngx_int_t                          rc;
    ngx_uint_t                         renew;
    ngx_pool_cleanup_t                *cln;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    ctx->fetch_src = iam;
    ctx->fetch_key = key;
    ctx->fetch_out = out;

    if (iam->kind == NGX_HTTP_TG_FETCH_IAM) {
        /* for the 401 of the endpoint */
        ctx->iam = iam;
    }

    rc = ngx_http_taurus_guard_iam_take(r, iam, ctx, &renew);

    if (rc == NGX_OK) {
        if (renew) {
            /* still good: this request goes on, a renewal runs beside */
            (void) ngx_http_taurus_guard_iam_fetch(r, iam, ctx, 1);
        }

        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* NGX_DECLINED: no valid token; fetch it, or wait for who does */

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, ctx->fetch_key, 1);

    if (slot == NULL) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: more than %d projects with IAM"
                      " tokens", NGX_HTTP_TG_IAM_SLOTS);
        return NGX_ERROR;
    }

    if (slot->fetching != 0
        && ngx_time() - slot->fetching < NGX_HTTP_TG_IAM_STALE)
    {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);

        /* the timer must not outlive the request */

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_taurus_guard_iam_wait_cleanup;
        cln->data = &ctx->iam_wait;

        ctx->iam_deadline = ngx_time() + NGX_HTTP_TG_IAM_STALE;
        ctx->iam_pending = 1;
        ctx->iam_wait.handler = ngx_http_taurus_guard_iam_poll;
        ctx->iam_wait.data = r;
        ctx->iam_wait.log = r->connection->log;

        r->write_event_handler = ngx_http_request_empty_handler;
        ngx_add_timer(&ctx->iam_wait, NGX_HTTP_TG_IAM_POLL);

        return NGX_AGAIN;
    }

    slot->fetching = ngx_time();

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);

    return ngx_http_taurus_guard_iam_fetch(r, iam, ctx, 0);
}


/*
 * Copies the project's token to the request when it is valid for more
 * than iam->margin seconds (30, or a quarter of refresh if less);
 * *renew when it is within refresh of its end and nobody renews it yet
 * (the caller then does).
 */

static ngx_int_t
ngx_http_taurus_guard_iam_take(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_uint_t *renew)
{
    time_t                             now;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    *renew = 0;
    now = ngx_time();

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, ctx->fetch_key, 0);

    if (slot == NULL || slot->token == NULL
        || slot->expires - now <= iam->margin)
    {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        return NGX_DECLINED;
    }

    if (ngx_http_taurus_guard_secret_copy(r->pool, slot->token, slot->len,
                                          ctx->fetch_out)
        != NGX_OK)
    {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        return NGX_ERROR;
    }

    if (slot->expires - now < iam->refresh
        && (slot->fetching == 0
            || now - slot->fetching >= NGX_HTTP_TG_IAM_STALE))
    {
        slot->fetching = now;
        *renew = 1;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);

    return NGX_OK;
}


/* the zone's lock is held */

static ngx_http_taurus_guard_iam_slot_t *
ngx_http_taurus_guard_iam_slot(ngx_http_taurus_guard_iam_t *iam,
    u_char *project, ngx_uint_t add)
{
    ngx_uint_t                         i;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    for (i = 0; i < ngx_http_tg_sh(iam)->nslots; i++) {
        slot = &ngx_http_tg_sh(iam)->slots[i];

        if (ngx_memcmp(slot->project, project, TG_PROJECT_ID_LEN) == 0) {
            return slot;
        }
    }

    if (!add || ngx_http_tg_sh(iam)->nslots == NGX_HTTP_TG_IAM_SLOTS) {
        return NULL;
    }

    slot = &ngx_http_tg_sh(iam)->slots[ngx_http_tg_sh(iam)->nslots++];
    ngx_memzero(slot, sizeof(ngx_http_taurus_guard_iam_slot_t));
    ngx_memcpy(slot->project, project, TG_PROJECT_ID_LEN);

    return slot;
}


/*
 * The subrequest to the IAM location: POST, the password method scoped
 * to the project, and none of the caller's headers.  The slot is marked
 * "fetching" by the caller; a failure to start unmarks it.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_fetch(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_uint_t background)
{
    u_char                             *p;
    size_t                              len;
    ngx_buf_t                          *b;
    ngx_str_t                           args;
    ngx_uint_t                          flags;
    tg_iam_cred_t                      *cred;
    ngx_chain_t                        *cl;
    ngx_table_elt_t                    *h;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_request_t                 *sr;
    ngx_http_request_body_t            *rb;
    ngx_http_post_subrequest_t         *ps;
    ngx_http_taurus_guard_ctx_t        *sctx;
    ngx_http_taurus_guard_iam_fetch_t  *fetch;
    u_char                              project[TG_PROJECT_ID_LEN];

    ngx_memcpy(project, ctx->fetch_key, TG_PROJECT_ID_LEN);

    p = NULL;
    len = 0;
    fetch = NULL;

    if (iam->kind == NGX_HTTP_TG_FETCH_IAM) {
        cred = ngx_http_taurus_guard_iam_cred(r->connection->log, iam);

        len = tg_iam_request_body(cred, project, TG_PROJECT_ID_LEN, NULL,
                                  0);

        /* it holds the password */
        p = ngx_http_taurus_guard_secret_alloc(r->pool, len);
        if (p == NULL) {
            goto failed;
        }

        (void) tg_iam_request_body(cred, project, TG_PROJECT_ID_LEN, p, len);
    }

    fetch = ngx_palloc(r->pool, sizeof(ngx_http_taurus_guard_iam_fetch_t));
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_taurus_guard_ctx_t));

    if (fetch == NULL || ps == NULL || b == NULL || cl == NULL || rb == NULL
        || sctx == NULL)
    {
        goto failed;
    }

    fetch->iam = iam;
    fetch->ctx = background ? NULL : ctx;
    fetch->done = 0;
    ngx_memcpy(fetch->project, project, TG_PROJECT_ID_LEN);

    /*
     * A request ended before its fetch answered (a client gone, a worker
     * shutting down) must not leave the slot marked "fetching" for all.
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_http_taurus_guard_iam_abandoned;
    cln->data = fetch;

    ps->handler = ngx_http_taurus_guard_iam_fetched;
    ps->data = fetch;

    /* the answer without the service catalog is small enough for memory */
    ngx_str_set(&args, "nocatalog=true");

    flags = NGX_HTTP_SUBREQUEST_IN_MEMORY
            | (background ? NGX_HTTP_SUBREQUEST_BACKGROUND
                          : NGX_HTTP_SUBREQUEST_WAITED);

    if (ngx_http_subrequest(r, &iam->uri,
                            iam->kind == NGX_HTTP_TG_FETCH_IAM ? &args : NULL,
                            &sr, ps, flags)
        != NGX_OK)
    {
        goto failed;
    }

    /* none of the caller's headers, nor its body, goes to the service */

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sr->headers_in.content_type = NULL;
    sr->headers_in.authorization = NULL;
    sr->headers_in.chunked = 0;
    sr->request_body = rb;

    if (iam->kind == NGX_HTTP_TG_FETCH_METADATA) {
        sr->method = NGX_HTTP_GET;
        ngx_str_set(&sr->method_name, "GET");
        sr->headers_in.content_length_n = -1;

    } else {
        sr->method = NGX_HTTP_POST;
        ngx_str_set(&sr->method_name, "POST");
        sr->headers_in.content_length_n = len;

        b->start = p;
        b->pos = p;
        b->last = p + len;
        b->end = b->last;
        b->memory = 1;
        b->last_buf = 1;

        cl->buf = b;
        cl->next = NULL;
        rb->bufs = cl;

        h = ngx_list_push(&sr->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        ngx_str_set(&h->key, "Content-Type");
        ngx_str_set(&h->value, "application/json;charset=utf8");
        h->lowcase_key = (u_char *) "content-type";
        h->hash = ngx_hash_key(h->lowcase_key, h->key.len);

        sr->headers_in.content_type = h;
    }

    sctx->iam_fetch = 1;
    ngx_http_set_ctx(sr, sctx, ngx_http_taurus_guard_module);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: fetching from \"%V\"", &iam->uri);

    if (!background) {
        /* resumed when nginx posts this request after the subrequest */
        ctx->iam_pending = 1;
        r->write_event_handler = ctx->resume;
    }

    return NGX_AGAIN;

failed:

    if (fetch != NULL) {
        /* unmarked here, not again when the request ends */
        fetch->done = 1;
    }

    ngx_http_taurus_guard_iam_end_fetch(iam, project, NULL, 0);

    return NGX_ERROR;
}


/*
 * The IAM answer is in memory: on 201 with X-Subject-Token and
 * token.expires_at, the token goes to shared memory for every worker;
 * the request that waited for it is posted by nginx and goes on.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_fetched(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_taurus_guard_iam_fetch_t *fetch = data;

    time_t                        expires;
    ngx_int_t                     rc2;
    ngx_str_t                     token;
    const char                   *problem;
    ngx_http_request_t           *r;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = fetch->ctx;
    r = sr->parent;

    fetch->done = 1;

    rc2 = (fetch->iam->kind == NGX_HTTP_TG_FETCH_METADATA)
          ? ngx_http_taurus_guard_metadata_answer(sr, fetch->iam, &token,
                                                  &expires, &problem)
          : ngx_http_taurus_guard_iam_answer(sr, fetch->iam, &token,
                                             &expires, &problem);

    if (rc2 != NGX_OK) {
        if (fetch->iam->kind == NGX_HTTP_TG_FETCH_IAM) {
            ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                          "taurus_guard: IAM token for project \"%*s\" not"
                          " fetched: %s", (size_t) TG_PROJECT_ID_LEN,
                          fetch->project, problem);
        } else {
            ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                          "taurus_guard: metadata credentials not"
                          " fetched: %s", problem);
        }

        ngx_http_taurus_guard_iam_end_fetch(fetch->iam, fetch->project,
                                            NULL, 0);
        if (ctx != NULL) {
            ctx->iam_pending = 0;
        }

        return rc;
    }

    ngx_http_taurus_guard_iam_end_fetch(fetch->iam, fetch->project, &token,
                                        expires);

    if (fetch->iam->kind == NGX_HTTP_TG_FETCH_IAM) {
        ngx_log_error(NGX_LOG_NOTICE, sr->connection->log, 0,
                      "taurus_guard: IAM token for project \"%*s\""
                      " fetched, valid for %T s", (size_t) TG_PROJECT_ID_LEN,
                      fetch->project, expires - ngx_time());
    } else {
        ngx_log_error(NGX_LOG_NOTICE, sr->connection->log, 0,
                      "taurus_guard: metadata credentials fetched, valid"
                      " for %T s", expires - ngx_time());
    }

    if (ctx != NULL) {
        if (ngx_http_taurus_guard_secret_copy(r->pool, token.data, token.len,
                                              ctx->fetch_out)
            != NGX_OK)
        {
            ctx->fetch_out->len = 0;
        }

        ctx->iam_pending = 0;
    }

    return rc;
}


static ngx_int_t
ngx_http_taurus_guard_iam_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *token, time_t *expires,
    const char **problem)
{
    int64_t               t;
    ngx_str_t             body;
    ngx_uint_t            i;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    ngx_http_upstream_t  *u;

    u = sr->upstream;

    if (u == NULL) {
        *problem = "the IAM location does not proxy";
        return NGX_ERROR;
    }

    if (u->headers_in.status_n != NGX_HTTP_CREATED
        && u->headers_in.status_n != NGX_HTTP_OK)
    {
        *problem = "IAM did not answer 201";
        return NGX_ERROR;
    }

    token->len = 0;

    part = &u->headers_in.headers.part;
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

        if (h[i].key.len == sizeof("X-Subject-Token") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Subject-Token",
                               h[i].key.len) == 0)
        {
            *token = h[i].value;
        }
    }

    if (token->len == 0 || token->len > NGX_HTTP_TG_IAM_TOKEN_MAX) {
        *problem = "no usable X-Subject-Token in the answer";
        return NGX_ERROR;
    }

    for (i = 0; i < token->len; i++) {
        if (token->data[i] < 0x21 || token->data[i] > 0x7e) {
            *problem = "X-Subject-Token is not one printable word";
            return NGX_ERROR;
        }
    }

    if (ngx_http_taurus_guard_fetch_body(sr, &body, problem) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tg_iam_expires_at(body.data, body.len, &t) != TG_OK) {
        *problem = "no token.expires_at in the answer (if it is cut"
                   " short, raise subrequest_output_buffer_size in the IAM"
                   " location)";
        return NGX_ERROR;
    }

    if (t <= ngx_time() + iam->margin) {
        *problem = "the token IAM gave expires at once: is the clock right?";
        return NGX_ERROR;
    }

    *expires = (time_t) t;

    return NGX_OK;
}


/* the metadata service's answer, as an SDK profile for tg_cred_parse() */

static ngx_int_t
ngx_http_taurus_guard_metadata_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *profile, time_t *expires,
    const char **problem)
{
    size_t                len, line;
    int64_t               t;
    tg_rc_t               rc;
    ngx_str_t             body;
    tg_cred_t             cred;

    if (sr->upstream == NULL
        || sr->upstream->headers_in.status_n != NGX_HTTP_OK)
    {
        *problem = "the metadata service did not answer 200";
        return NGX_ERROR;
    }

    if (ngx_http_taurus_guard_fetch_body(sr, &body, problem) != NGX_OK) {
        return NGX_ERROR;
    }

    profile->data = ngx_http_taurus_guard_secret_alloc(sr->pool,
                                                       body.len + 64);
    if (profile->data == NULL) {
        *problem = "no memory";
        return NGX_ERROR;
    }

    rc = tg_metadata_profile(body.data, body.len, profile->data,
                             body.len + 64, &len, &t);

    if (rc == TG_OK) {
        rc = tg_cred_parse(&cred, profile->data, len, &line);
    }

    if (rc != TG_OK) {
        OPENSSL_cleanse(profile->data, body.len + 64);
        *problem = "no usable credential in the answer";
        return NGX_ERROR;
    }

    profile->len = len;

    if (t <= ngx_time() + iam->margin) {
        OPENSSL_cleanse(profile->data, body.len + 64);
        *problem = "the credentials expire at once: is the clock right?";
        return NGX_ERROR;
    }

    *expires = (time_t) t;

    return NGX_OK;
}


/* nginx's postpone filter keeps an in-memory answer in sr->out */

static ngx_int_t
ngx_http_taurus_guard_fetch_body(ngx_http_request_t *sr, ngx_str_t *body,
    const char **problem)
{
    u_char       *p;
    size_t        len;
    ngx_chain_t  *cl;

    len = 0;

    for (cl = sr->out; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            *problem = "the answer is not in memory";
            return NGX_ERROR;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    /* a metadata answer holds the secret: wiped with the subrequest */
    p = ngx_http_taurus_guard_secret_alloc(sr->pool, len);
    if (p == NULL) {
        *problem = "no memory";
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = sr->out; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


/* a fetch is over: keep its token, or only unmark the slot */

static void
ngx_http_taurus_guard_iam_end_fetch(ngx_http_taurus_guard_iam_t *iam,
    u_char *project, ngx_str_t *token, time_t expires)
{
    u_char                            *copy;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, project, token != NULL);

    if (slot == NULL) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        return;
    }

    slot->fetching = 0;

    if (token != NULL) {
        copy = ngx_slab_alloc_locked(ngx_http_tg_shpool(iam), token->len);

        if (copy != NULL) {
            if (slot->token != NULL) {
                /* the token replaced is still secret */
                OPENSSL_cleanse(slot->token, slot->len);
                ngx_slab_free_locked(ngx_http_tg_shpool(iam), slot->token);
            }

            ngx_memcpy(copy, token->data, token->len);
            slot->token = copy;
            slot->len = token->len;
            slot->expires = expires;
        }
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
}


static void
ngx_http_taurus_guard_iam_abandoned(void *data)
{
    ngx_http_taurus_guard_iam_fetch_t  *fetch = data;

    if (!fetch->done) {
        ngx_http_taurus_guard_iam_end_fetch(fetch->iam, fetch->project, NULL,
                                            0);
    }
}


/* another worker fetches: look again until it is done or too late */

static void
ngx_http_taurus_guard_iam_poll(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    ngx_int_t                          rc;
    ngx_uint_t                         renew, fetching;
    ngx_connection_t                  *c;
    ngx_http_taurus_guard_ctx_t       *ctx;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    rc = ngx_http_taurus_guard_iam_take(r, ctx->fetch_src, ctx, &renew);

    if (rc == NGX_DECLINED) {
        ngx_shmtx_lock(&ngx_http_tg_shpool(ctx->fetch_src)->mutex);
        slot = ngx_http_taurus_guard_iam_slot(ctx->fetch_src,
                                              ctx->fetch_key, 0);
        fetching = (slot != NULL && slot->fetching != 0);
        ngx_shmtx_unlock(&ngx_http_tg_shpool(ctx->fetch_src)->mutex);

        if (fetching && ngx_time() < ctx->iam_deadline) {
            ngx_add_timer(ev, NGX_HTTP_TG_IAM_POLL);
            return;
        }
    }

    /* a token, or the fetch ended without one */

    ctx->iam_pending = 0;
    r->write_event_handler = ctx->resume;

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


/*
 * The endpoint refused a forwarded request with 401: drop the token it
 * was given, if it is still the project's, so the next request fetches
 * a new one.
 */

void
ngx_http_taurus_guard_iam_refused(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_http_taurus_guard_iam_t       *iam;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    iam = ctx->iam;

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, ctx->project_id.data, 0);

    if (slot != NULL && slot->token != NULL && slot->len == ctx->token.len
        && ngx_memcmp(slot->token, ctx->token.data, slot->len) == 0)
    {
        slot->expires = 0;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: the endpoint refused the IAM token of"
                  " project \"%V\" (401); a new one will be fetched",
                  &ctx->project_id);
}


/* the password file, re-read when it changed; the last good kept */

static tg_iam_cred_t *
ngx_http_taurus_guard_iam_cred(ngx_log_t *log,
    ngx_http_taurus_guard_iam_t *iam)
{
    u_char         *data;
    size_t          size, line;
    tg_rc_t         rc;
    ngx_int_t       n;
    ngx_str_t       problem;
    tg_iam_cred_t   parsed;

    n = ngx_http_taurus_guard_watch(log, &iam->watch,
                                    NGX_HTTP_TG_IAM_FILE_MAX, &data, &size,
                                    &problem);

    if (n == NGX_ERROR) {
        ngx_http_taurus_guard_watch_error(log, &iam->watch, NGX_LOG_ALERT,
                                          ngx_errno, &problem,
                                          "the previous password is kept");
    }

    if (n != NGX_OK) {
        return &iam->cred;
    }

    rc = tg_iam_cred_parse(&parsed, data, size, &line);

    if (rc != TG_OK) {
        OPENSSL_cleanse(data, size);
        ngx_free(data);

        problem.data = (u_char *) tg_strerror(rc);
        problem.len = ngx_strlen(problem.data);

        ngx_http_taurus_guard_watch_error(log, &iam->watch, NGX_LOG_ALERT,
                                          0, &problem,
                                          "the previous password is kept");
        return &iam->cred;
    }

    OPENSSL_cleanse(iam->data, iam->size);

    if (iam->owned) {
        ngx_free(iam->data);
    }

    iam->data = data;
    iam->size = size;
    iam->cred = parsed;
    iam->owned = 1;

    return &iam->cred;
}


static void
ngx_http_taurus_guard_iam_cleanup(void *data)
{
    ngx_http_taurus_guard_iam_t  *iam = data;

    if (iam->data != NULL) {
        OPENSSL_cleanse(iam->data, iam->size);
    }
}


static void
ngx_http_taurus_guard_iam_wait_cleanup(void *data)
{
    ngx_event_t  *ev = data;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }
}
