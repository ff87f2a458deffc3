
/*
 * taurus-guard: the fetcher, for secrets the gateway fetches itself.
 *
 * A fetched secret (an IAM token, an agency token, the metadata
 * service's credentials, a metadata session token) is kept per key (a
 * project, or one key for a secret every project shares) in shared
 * memory: all workers use the one fetched.  The fetch is a subrequest
 * to an internal location the operator points at the service with
 * proxy_pass, so TLS, timeouts and resolving are nginx's usual settings;
 * what it sends and how its answer reads are the kind's operations
 * (ngx_http_taurus_guard_fetch.h).  One fetch at a time per key: a
 * worker marks the slot "fetching" with its name under the zone's lock,
 * the others look again every NGX_HTTP_TG_FETCH_POLL ms, and take the
 * fetch over once that worker is gone.  A secret close to its end
 * (refresh) is renewed by a background subrequest while it is still
 * used; with no valid secret left and the fetch failed, the request is
 * refused.  A 401 drops the secret it refused: from the endpoint, the
 * token the request carried; from the service, the base it was asked
 * with.
 *
 * A fetch carries a secret (the IAM password in its body, a user or
 * session token in a header), and its URI is looked up in the server of
 * the request that asks: ngx_http_taurus_guard_fetch_check() lets it be
 * served only by an internal location, or a named one reached from one.
 *
 * A secret is taken only from the service's own answer, read whole:
 * one cut short (the connection closed before its Content-Length or
 * its last chunk, a read timed out) fails the fetch like any other bad
 * answer, whatever part of it came (ngx_http_taurus_guard_fetch_whole()).
 *
 * A secret is kept with the digest of the credentials it was asked
 * with (the kind's identity()): one asked with others than those in
 * effect now (a password file rewritten, then re-read at run time or
 * loaded by a reload, which keeps the zone) is wiped and fetched again,
 * never used.
 *
 * A zone has places for the secrets of NGX_HTTP_TG_PROJECTS keys, and a
 * reload keeps it: a new key takes the place of the one looked up least
 * recently, unless that one is being fetched into
 * (ngx_http_taurus_guard_fetch_evict()).
 *
 * A slot also remembers when its secret was fetched and whether its last
 * fetch failed, for the metrics and the health check, which read them
 * with ngx_http_taurus_guard_fetch_states(); every failed fetch is
 * counted by the kind of its source.
 *
 * When a secret expires is wall time (what the service says); how long
 * a fetch has run and how long a request waits for another's is
 * measured on nginx's monotonic clock, which all workers share, so that
 * a clock stepped back cannot hold a slot or a request for the length
 * of the step.
 */


#include "ngx_http_taurus_guard_fetch.h"
#include <openssl/crypto.h>


#define NGX_HTTP_TG_FETCH_ZONE_SIZE  (4 * 1024 * 1024)
#define NGX_HTTP_TG_FETCH_POLL       100       /* ms between looks */
#define NGX_HTTP_TG_FETCH_STALE      30000     /* ms: a fetch nobody ended */

/* what one request has fetched already (fctx->tried) */
#define NGX_HTTP_TG_TRIED_SECRET     0x01
#define NGX_HTTP_TG_TRIED_BASE       0x02

/* how often a request asks for a secret that has a base */
#define NGX_HTTP_TG_FETCH_ASKS       3

#define ngx_http_tg_shpool(src)                                              \
    ((ngx_slab_pool_t *) (src)->zone->shm.addr)
#define ngx_http_tg_sh(src)                                                  \
    ((ngx_http_taurus_guard_fetch_sh_t *) ngx_http_tg_shpool(src)->data)


/* one key's secret, shared by all workers */
typedef struct {
    u_char                        key[TG_PROJECT_ID_LEN];
    u_char                       *secret;   /* in the slab pool */
    size_t                        len;
    time_t                        expires;  /* wall time */
    time_t                        refreshed;    /* last fetched, wall */
    ngx_msec_t                    since;    /* fetching since, monotonic */
    ngx_msec_t                    used;     /* last looked up, monotonic */
    ngx_atomic_uint_t             fetcher;  /* who: its name, or 0 */
    ngx_uint_t                    failed;   /* the last fetch failed */
    u_char                        identity[NGX_HTTP_TG_IDENTITY_LEN];
                                            /* what it was asked with */
} ngx_http_taurus_guard_fetch_slot_t;


typedef struct {
    ngx_uint_t                    nslots;
    ngx_http_taurus_guard_fetch_slot_t  slots[NGX_HTTP_TG_PROJECTS];
} ngx_http_taurus_guard_fetch_sh_t;


/* a request's asking, across its re-entries */
struct ngx_http_taurus_guard_fetch_ctx_s {
    ngx_http_taurus_guard_fetch_t  *src;    /* what is being fetched */
    u_char                        *key;
    ngx_str_t                     *out;
    ngx_str_t                      base;    /* the base secret in hand */
    ngx_http_taurus_guard_fetch_t  *stage;  /* what these are of: */
    ngx_uint_t                     tried;
    ngx_uint_t                     asks;
    ngx_event_t                    wait;    /* for another's fetch */
    ngx_msec_t                     deadline;
};


/* one fetch in flight */
typedef struct {
    ngx_http_taurus_guard_fetch_t  *src;
    ngx_http_taurus_guard_ctx_t    *ctx;    /* NULL: a background renewal */
    u_char                          key[TG_PROJECT_ID_LEN];
    ngx_str_t                       base;   /* the base secret it carries */
    u_char                          identity[NGX_HTTP_TG_IDENTITY_LEN];
    ngx_uint_t                      done;   /* its answer was handled */
    ngx_uint_t                      ended;  /* its answer's end went by */
    ngx_uint_t                      refused;    /* by fetch_check() */
    ngx_uint_t                      uri_changes;    /* where let through */
    ngx_uint_t                      served; /* locations let through */
    ngx_uint_t                      handled;    /* served, when done */
} ngx_http_taurus_guard_fetch_sr_t;


/*
 * A base secret is kept under this key, all zero bytes: a project ID is
 * 32 letters or digits, never this.
 */
static u_char  ngx_http_taurus_guard_base_key[TG_PROJECT_ID_LEN];


static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t ngx_http_taurus_guard_fetch_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_http_taurus_guard_fetch_slot_t *ngx_http_taurus_guard_fetch_evict(
    ngx_http_taurus_guard_fetch_t *src);
static ngx_http_taurus_guard_fetch_slot_t *ngx_http_taurus_guard_fetch_slot(
    ngx_http_taurus_guard_fetch_t *src, u_char *key, ngx_uint_t add);
static ngx_int_t ngx_http_taurus_guard_fetch_identity(ngx_log_t *log,
    ngx_http_taurus_guard_fetch_t *src, u_char *md);
static void ngx_http_taurus_guard_fetch_forget(
    ngx_http_taurus_guard_fetch_t *src,
    ngx_http_taurus_guard_fetch_slot_t *slot);
static ngx_uint_t ngx_http_taurus_guard_fetch_claim(
    ngx_http_taurus_guard_fetch_slot_t *slot);
static ngx_uint_t ngx_http_taurus_guard_fetch_alive(
    ngx_http_taurus_guard_fetch_slot_t *slot);
static ngx_int_t ngx_http_taurus_guard_fetch_take(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, u_char *key, ngx_str_t *out,
    ngx_uint_t *renew, time_t *expires);
static ngx_uint_t ngx_http_taurus_guard_fetch_usable(
    ngx_http_taurus_guard_fetch_t *src,
    ngx_http_taurus_guard_fetch_slot_t *slot, time_t now);
static void ngx_http_taurus_guard_fetch_in_hand(
    ngx_http_taurus_guard_ctx_t *ctx, ngx_http_taurus_guard_fetch_t *src,
    time_t expires);
static ngx_int_t ngx_http_taurus_guard_fetch_start(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out, ngx_str_t *base, ngx_uint_t tried);
static void ngx_http_taurus_guard_fetch_renew(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, u_char *key);
static ngx_int_t ngx_http_taurus_guard_fetch_send(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *base);
static ngx_int_t ngx_http_taurus_guard_fetch_header(ngx_http_request_t *sr,
    ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_taurus_guard_fetch_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static ngx_int_t ngx_http_taurus_guard_fetch_whole(ngx_http_request_t *sr,
    ngx_int_t rc, ngx_uint_t ended, const char **problem);
static ngx_int_t ngx_http_taurus_guard_fetch_body_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static void ngx_http_taurus_guard_fetch_wipe(ngx_http_request_t *sr);
static void ngx_http_taurus_guard_fetch_unload(ngx_http_request_t *sr,
    ngx_http_taurus_guard_fetch_sr_t *fetch, ngx_int_t rc);
static void ngx_http_taurus_guard_fetch_end(ngx_http_taurus_guard_fetch_t *src,
    u_char *key, ngx_str_t *secret, time_t expires, u_char *identity);
static void ngx_http_taurus_guard_fetch_failed(
    ngx_http_taurus_guard_fetch_t *src, u_char *key);
static ngx_uint_t ngx_http_taurus_guard_fetch_source(
    ngx_http_taurus_guard_fetch_t *src, u_char *key);
static void ngx_http_taurus_guard_fetch_state(
    ngx_http_taurus_guard_fetch_t *src,
    ngx_http_taurus_guard_fetch_slot_t *slot, time_t now,
    ngx_http_taurus_guard_fetch_state_t *st);
static void ngx_http_taurus_guard_fetch_drop(
    ngx_http_taurus_guard_fetch_t *src, u_char *key, ngx_str_t *secret);
static void ngx_http_taurus_guard_fetch_poll(ngx_event_t *ev);
static void ngx_http_taurus_guard_fetch_abandoned(void *data);
static void ngx_http_taurus_guard_fetch_wait_cleanup(void *data);


/*
 * The zone of a source of fetched secrets.  Every directive naming the
 * same source (what, and the URI) shares it.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_fetch_t *src, ngx_str_t *what)
{
    u_char     *p;
    ngx_str_t   name;

    /*
     * what's length first: a ':' in it or in the URI cannot make two
     * sources one
     */

    name.data = ngx_pnalloc(cf->pool, sizeof("taurus_guard_fetch:::") - 1
                                      + NGX_SIZE_T_LEN + what->len
                                      + src->uri.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(name.data, "taurus_guard_fetch:%uz:%V:%V", what->len,
                    what, &src->uri);
    name.len = p - name.data;

    src->zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_TG_FETCH_ZONE_SIZE,
                                      &ngx_http_taurus_guard_module);
    if (src->zone == NULL) {
        return NGX_ERROR;
    }

    src->zone->init = ngx_http_taurus_guard_fetch_init_zone;
    src->zone->data = src;

    return NGX_OK;
}


/*
 * A source a directive uses (not a base: it is reached through its
 * user), listed once a zone for the metrics and the health check.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_register(ngx_conf_t *cf,
    ngx_http_taurus_guard_fetch_t *src)
{
    ngx_uint_t                          i;
    ngx_http_taurus_guard_fetch_t     **f;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    f = mcf->fetches.elts;

    for (i = 0; i < mcf->fetches.nelts; i++) {
        if (f[i]->zone == src->zone) {
            return NGX_OK;
        }
    }

    f = ngx_array_push(&mcf->fetches);
    if (f == NULL) {
        return NGX_ERROR;
    }

    *f = src;

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_fetch_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t                   *shpool;
    ngx_http_taurus_guard_fetch_sh_t  *sh;

    /*
     * Every directive naming the same source shares this zone: its state
     * is reached through zone->shm.addr, never cached in one of them.
     * A reload finds the secrets in hand.
     */

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (data != NULL || zone->shm.exists) {
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_taurus_guard_fetch_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;

    return NGX_OK;
}


/*
 * NGX_OK: *out is the secret of key, valid for a while yet; NGX_AGAIN:
 * the request waits for a fetch (its own or another's), then ctx->resume
 * runs and the caller asks again; NGX_ERROR: it cannot be had.
 *
 * A secret asked with a base needs that first: when none is in hand,
 * the fetch this request waits for is the base's.  A request fetches
 * each itself at most once, except that a fetch whose base was refused
 * (401) is tried again with a new one.  It asks once, or, with a base,
 * up to NGX_HTTP_TG_FETCH_ASKS times (the base first, or again after a
 * 401, then the secret): a secret still missing after that cannot be
 * had.  A wait for a fetch whose worker died is not counted as an ask.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out)
{
    u_char                             *bkey;
    time_t                              expires;
    ngx_int_t                           rc;
    ngx_str_t                          *base;
    ngx_uint_t                          renew;
    ngx_http_taurus_guard_fetch_ctx_t  *fctx;

    rc = ngx_http_taurus_guard_fetch_take(r, src, key, out, &renew,
                                          &expires);

    if (rc == NGX_OK) {
        ngx_http_taurus_guard_fetch_in_hand(ctx, src, expires);

        if (renew) {
            /* still good: this request goes on, a renewal runs beside */
            ngx_http_taurus_guard_fetch_renew(r, src, key);
        }

        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* NGX_DECLINED: nothing valid; fetch it, or wait for who does */

    fctx = ctx->fetch;

    if (fctx == NULL) {
        fctx = ngx_pcalloc(r->pool,
                           sizeof(ngx_http_taurus_guard_fetch_ctx_t));
        if (fctx == NULL) {
            return NGX_ERROR;
        }

        ctx->fetch = fctx;
    }

    if (fctx->stage != src) {
        fctx->stage = src;
        fctx->tried = 0;
        fctx->asks = 0;
    }

    if (fctx->asks++ >= (src->base ? NGX_HTTP_TG_FETCH_ASKS : 1)) {
        return NGX_ERROR;
    }

    base = NULL;

    if (src->base != NULL) {
        bkey = ngx_http_taurus_guard_base_key;
        base = &fctx->base;
        base->len = 0;

        rc = ngx_http_taurus_guard_fetch_take(r, src->base, bkey, base,
                                              &renew, &expires);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            if (fctx->tried & NGX_HTTP_TG_TRIED_BASE) {
                return NGX_ERROR;
            }

            return ngx_http_taurus_guard_fetch_start(r, src->base, ctx, bkey,
                                                     base,
                                                     NULL,
                                                     NGX_HTTP_TG_TRIED_BASE);
        }

        if (renew) {
            ngx_http_taurus_guard_fetch_renew(r, src->base, bkey);
        }
    }

    if (fctx->tried & NGX_HTTP_TG_TRIED_SECRET) {
        return NGX_ERROR;
    }

    return ngx_http_taurus_guard_fetch_start(r, src, ctx, key, out, base,
                                             NGX_HTTP_TG_TRIED_SECRET);
}


/*
 * Fetch key's secret, with base in hand if it needs one, or wait for
 * whoever fetches it; "tried" marks a fetch of this request's own.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_start(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out, ngx_str_t *base, ngx_uint_t tried)
{
    ngx_pool_cleanup_t                  *cln;
    ngx_http_taurus_guard_fetch_ctx_t   *fctx;
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    fctx = ctx->fetch;

    fctx->src = src;
    fctx->key = key;
    fctx->out = out;

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src, key, 1);

    if (slot == NULL) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: more than %d projects with IAM"
                      " tokens, all being fetched", NGX_HTTP_TG_PROJECTS);
        return NGX_ERROR;
    }

    if (!ngx_http_taurus_guard_fetch_claim(slot)) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);

        /* the timer must not outlive the request */

        if (fctx->wait.handler == NULL) {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NGX_ERROR;
            }

            cln->handler = ngx_http_taurus_guard_fetch_wait_cleanup;
            cln->data = &fctx->wait;
        }

        fctx->deadline = ngx_current_msec + NGX_HTTP_TG_FETCH_STALE;
        ctx->fetch_pending = 1;
        fctx->wait.handler = ngx_http_taurus_guard_fetch_poll;
        fctx->wait.data = r;
        fctx->wait.log = r->connection->log;

        r->write_event_handler = ngx_http_request_empty_handler;
        ngx_add_timer(&fctx->wait, NGX_HTTP_TG_FETCH_POLL);

        return NGX_AGAIN;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);

    fctx->tried |= tried;

    return ngx_http_taurus_guard_fetch_send(r, src, ctx, key, base);
}


/*
 * A renewal in the background, the slot already marked by take().  One
 * asked with a base goes with the base in hand; with none, the base is
 * renewed instead, and the next request renews key with it.
 */

static void
ngx_http_taurus_guard_fetch_renew(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, u_char *key)
{
    u_char                              *bkey;
    time_t                               expires;
    ngx_int_t                            rc;
    ngx_str_t                            base;
    ngx_uint_t                           renew, start;
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    if (src->base == NULL) {
        (void) ngx_http_taurus_guard_fetch_send(r, src, NULL, key, NULL);
        return;
    }

    bkey = ngx_http_taurus_guard_base_key;

    rc = ngx_http_taurus_guard_fetch_take(r, src->base, bkey, &base, &renew,
                                          &expires);

    if (rc == NGX_OK) {
        if (renew) {
            (void) ngx_http_taurus_guard_fetch_send(r, src->base, NULL, bkey,
                                                    NULL);
        }

        (void) ngx_http_taurus_guard_fetch_send(r, src, NULL, key, &base);
        return;
    }

    ngx_http_taurus_guard_fetch_end(src, key, NULL, 0, NULL);

    if (rc == NGX_ERROR) {
        return;
    }

    ngx_shmtx_lock(&ngx_http_tg_shpool(src->base)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src->base, bkey, 1);
    start = (slot != NULL && ngx_http_taurus_guard_fetch_claim(slot));

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src->base)->mutex);

    if (start) {
        (void) ngx_http_taurus_guard_fetch_send(r, src->base, NULL, bkey,
                                                NULL);
    }
}


/*
 * Copies key's secret to *out (and when it expires to *expires) when it
 * is valid for more than src->margin seconds (30, or a quarter of
 * refresh if less) and was asked with the credentials in effect; *renew
 * when it is within refresh of its end and nobody renews it yet (the
 * caller then does).  A secret that lives no longer than refresh is
 * renewed halfway through its life instead: within refresh of its end
 * from the start, each new one would start the next renewal, one fetch
 * after another for as long as requests come.  A secret asked with
 * other credentials is wiped: the next fetch replaces it.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_take(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, u_char *key, ngx_str_t *out,
    ngx_uint_t *renew, time_t *expires)
{
    time_t                               now, life, renew_at;
    ngx_http_taurus_guard_fetch_slot_t  *slot;
    u_char                               id[NGX_HTTP_TG_IDENTITY_LEN];

    *renew = 0;
    now = ngx_time();

    if (ngx_http_taurus_guard_fetch_identity(r->connection->log, src, id)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src, key, 0);

    if (slot != NULL && slot->secret != NULL
        && ngx_memcmp(slot->identity, id, NGX_HTTP_TG_IDENTITY_LEN) != 0)
    {
        ngx_http_taurus_guard_fetch_forget(src, slot);
    }

    if (slot == NULL || !ngx_http_taurus_guard_fetch_usable(src, slot, now)) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);
        return NGX_DECLINED;
    }

    if (ngx_http_taurus_guard_secret_copy(r->pool, slot->secret, slot->len,
                                          out)
        != NGX_OK)
    {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);
        return NGX_ERROR;
    }

    *expires = slot->expires;

    life = slot->expires - slot->refreshed;
    renew_at = (src->refresh < life) ? src->refresh : life / 2;

    if (slot->expires - now < renew_at) {
        *renew = ngx_http_taurus_guard_fetch_claim(slot);
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);

    return NGX_OK;
}


/*
 * The zone's lock is held.  A secret is used only while more than
 * src->margin seconds of it are left: closer to its end it could expire
 * on its way to the endpoint.
 */

static ngx_uint_t
ngx_http_taurus_guard_fetch_usable(ngx_http_taurus_guard_fetch_t *src,
    ngx_http_taurus_guard_fetch_slot_t *slot, time_t now)
{
    return (slot->secret != NULL && slot->expires - now > src->margin);
}


/*
 * A secret the request will send (not a base it asks with): the first of
 * them to come within its margin of its end is what the forward looks at
 * once the allow record is on disk (sign_again()).
 */

static void
ngx_http_taurus_guard_fetch_in_hand(ngx_http_taurus_guard_ctx_t *ctx,
    ngx_http_taurus_guard_fetch_t *src, time_t expires)
{
    time_t  until;

    until = expires - src->margin;

    if (ctx->usable_until == 0 || until < ctx->usable_until) {
        ctx->usable_until = until;
    }
}


/*
 * A batch about to be forwarded, signed again after a long wait for its
 * flush (ngx_http_taurus_guard_sign_again()): key's secret as it is in
 * shared memory now (the one it had, or the one a renewal put there
 * meanwhile), if it is still usable, more than its margin from its end,
 * as a request would take it, and was asked with the credentials in
 * effect.  Nothing is fetched, nor renewed: the allow record is written,
 * and the batch goes now or not at all.  NGX_OK; NGX_DECLINED: no such
 * secret; NGX_ERROR: the credentials in effect or the copy failed.  The
 * caller refuses the batch on anything but NGX_OK.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_now(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, u_char *key, ngx_str_t *out)
{
    ngx_int_t                            rc;
    ngx_http_taurus_guard_fetch_slot_t  *slot;
    u_char                               id[NGX_HTTP_TG_IDENTITY_LEN];

    if (ngx_http_taurus_guard_fetch_identity(r->connection->log, src, id)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src, key, 0);

    if (slot != NULL
        && ngx_memcmp(slot->identity, id, NGX_HTTP_TG_IDENTITY_LEN) == 0
        && ngx_http_taurus_guard_fetch_usable(src, slot, ngx_time()))
    {
        rc = ngx_http_taurus_guard_secret_copy(r->pool, slot->secret,
                                               slot->len, out);
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);

    return rc;
}


/*
 * The zone's lock is held.  Marks the slot "fetching" for the caller,
 * unless somebody fetches it already: a mark older than
 * NGX_HTTP_TG_FETCH_STALE ms is nobody's, and so is one whose worker is
 * gone (killed, crashed), at once.
 */

static ngx_uint_t
ngx_http_taurus_guard_fetch_claim(ngx_http_taurus_guard_fetch_slot_t *slot)
{
    if ((ngx_msec_int_t) (ngx_current_msec - slot->since)
        < NGX_HTTP_TG_FETCH_STALE
        && ngx_http_taurus_guard_fetch_alive(slot))
    {
        return 0;
    }

    slot->fetcher = ngx_http_taurus_guard_process_self();
    slot->since = ngx_current_msec;

    return 1;
}


/*
 * The zone's lock is held.  Whether the slot is marked by a process that
 * is still there (this one, or another whose pid and start time are
 * still a process's: ngx_http_taurus_guard_process.c).  A worker killed
 * during its fetch never unmarks the slot; nginx's master, which reaps
 * it, unlocks the zone's mutex if the worker held it, but knows nothing
 * of a mark in the zone.
 */

static ngx_uint_t
ngx_http_taurus_guard_fetch_alive(ngx_http_taurus_guard_fetch_slot_t *slot)
{
    ngx_atomic_uint_t  fetcher;

    fetcher = slot->fetcher;

    if (fetcher == 0) {
        return 0;
    }

    return fetcher == ngx_http_taurus_guard_process_self()
           || !ngx_http_taurus_guard_process_gone(fetcher);
}


/* the zone's lock is held */

static ngx_http_taurus_guard_fetch_slot_t *
ngx_http_taurus_guard_fetch_slot(ngx_http_taurus_guard_fetch_t *src,
    u_char *key, ngx_uint_t add)
{
    ngx_uint_t                           i;
    ngx_http_taurus_guard_fetch_sh_t    *sh;
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    sh = ngx_http_tg_sh(src);

    for (i = 0; i < sh->nslots; i++) {
        slot = &sh->slots[i];

        if (ngx_memcmp(slot->key, key, TG_PROJECT_ID_LEN) == 0) {
            slot->used = ngx_current_msec;
            return slot;
        }
    }

    if (!add) {
        return NULL;
    }

    if (sh->nslots < NGX_HTTP_TG_PROJECTS) {
        slot = &sh->slots[sh->nslots++];

    } else {
        slot = ngx_http_taurus_guard_fetch_evict(src);

        if (slot == NULL) {
            return NULL;
        }
    }

    ngx_memzero(slot, sizeof(ngx_http_taurus_guard_fetch_slot_t));
    ngx_memcpy(slot->key, key, TG_PROJECT_ID_LEN);
    slot->used = ngx_current_msec;

    return slot;
}


/*
 * The zone's lock is held, and every slot has a key: the one looked up
 * least recently gives up its place (its secret wiped: the next request
 * of its key fetches again), unless a live process is fetching into it.
 * Every slot is always found by its key under the lock, never kept
 * across it, so a slot can change hands.  NULL: all are being fetched.
 */

static ngx_http_taurus_guard_fetch_slot_t *
ngx_http_taurus_guard_fetch_evict(ngx_http_taurus_guard_fetch_t *src)
{
    ngx_uint_t                           i;
    ngx_http_taurus_guard_fetch_sh_t    *sh;
    ngx_http_taurus_guard_fetch_slot_t  *slot, *oldest;

    sh = ngx_http_tg_sh(src);
    oldest = NULL;

    for (i = 0; i < sh->nslots; i++) {
        slot = &sh->slots[i];

        if (ngx_http_taurus_guard_fetch_alive(slot)) {
            continue;
        }

        if (oldest == NULL
            || (ngx_msec_int_t) (slot->used - oldest->used) < 0)
        {
            oldest = slot;
        }
    }

    if (oldest != NULL) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "taurus_guard: more than %d projects with fetched"
                      " secrets: project \"%*s\"'s, the least recently"
                      " used, is dropped", NGX_HTTP_TG_PROJECTS,
                      (size_t) TG_PROJECT_ID_LEN, oldest->key);

        ngx_http_taurus_guard_fetch_forget(src, oldest);
    }

    return oldest;
}


/* what src's secrets are asked with now, as a digest */

static ngx_int_t
ngx_http_taurus_guard_fetch_identity(ngx_log_t *log,
    ngx_http_taurus_guard_fetch_t *src, u_char *md)
{
    if (src->ops->identity == NULL) {
        ngx_memzero(md, NGX_HTTP_TG_IDENTITY_LEN);
        return NGX_OK;
    }

    return src->ops->identity(log, src, md);
}


/* the zone's lock is held; the secret is still secret when dropped */

static void
ngx_http_taurus_guard_fetch_forget(ngx_http_taurus_guard_fetch_t *src,
    ngx_http_taurus_guard_fetch_slot_t *slot)
{
    if (slot->secret == NULL) {
        return;
    }

    OPENSSL_cleanse(slot->secret, slot->len);
    ngx_slab_free_locked(ngx_http_tg_shpool(src), slot->secret);

    slot->secret = NULL;
    slot->len = 0;
    slot->expires = 0;
}


/*
 * The subrequest to the internal location, with none of the caller's
 * headers nor its body: what the kind's request() says, and the base
 * secret in src->base_header if it is asked with one.
 *
 * ctx NULL: in the background.  The slot is marked "fetching" by the
 * caller; a failure to start unmarks it.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_send(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *base)
{
    ngx_buf_t                              *b;
    ngx_str_t                               name;
    ngx_uint_t                              flags;
    ngx_chain_t                            *cl;
    ngx_pool_cleanup_t                     *cln;
    ngx_http_request_t                     *sr;
    ngx_http_request_body_t                *rb;
    ngx_http_post_subrequest_t             *ps;
    ngx_http_taurus_guard_fetch_sr_t       *fetch;
    ngx_http_taurus_guard_fetch_request_t   req;
    u_char                                  k[TG_PROJECT_ID_LEN];
    u_char                                  id[NGX_HTTP_TG_IDENTITY_LEN];

    /* key may be the slot's own, which end() may reuse */
    ngx_memcpy(k, key, TG_PROJECT_ID_LEN);

    fetch = NULL;

    ngx_memzero(&req, sizeof(ngx_http_taurus_guard_fetch_request_t));

    /* the credentials the request is made with, kept with its secret */

    if (ngx_http_taurus_guard_fetch_identity(r->connection->log, src, id)
        != NGX_OK
        || src->ops->request(r, src, k, &req) != NGX_OK)
    {
        goto failed;
    }

    fetch = ngx_pcalloc(r->pool, sizeof(ngx_http_taurus_guard_fetch_sr_t));
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));

    if (fetch == NULL || ps == NULL || b == NULL || cl == NULL || rb == NULL) {
        goto failed;
    }

    fetch->src = src;
    fetch->ctx = ctx;
    ngx_memcpy(fetch->key, k, TG_PROJECT_ID_LEN);
    ngx_memcpy(fetch->identity, id, NGX_HTTP_TG_IDENTITY_LEN);

    if (base != NULL) {
        /* a request-owned copy, wiped with the pool */
        fetch->base = *base;
    }

    /*
     * A request ended before its fetch answered (a client gone, a worker
     * shutting down) must not leave the slot marked "fetching" for all.
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_http_taurus_guard_fetch_abandoned;
    cln->data = fetch;

    ps->handler = ngx_http_taurus_guard_fetch_done;
    ps->data = fetch;

    flags = NGX_HTTP_SUBREQUEST_IN_MEMORY
            | (ctx == NULL ? NGX_HTTP_SUBREQUEST_BACKGROUND
                           : NGX_HTTP_SUBREQUEST_WAITED);

    if (ngx_http_subrequest(r, &src->uri, req.args.len ? &req.args : NULL,
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

    sr->method = req.method;
    sr->method_name = req.method_name;
    sr->headers_in.content_length_n = (req.method == NGX_HTTP_GET)
                                      ? -1 : (off_t) req.body.len;

    if (req.body.len) {
        b->start = req.body.data;
        b->pos = req.body.data;
        b->last = req.body.data + req.body.len;
        b->end = b->last;
        b->memory = 1;
        b->last_buf = 1;

        cl->buf = b;
        cl->next = NULL;
        rb->bufs = cl;
    }

    if (req.content_type.len) {
        ngx_str_set(&name, "Content-Type");

        if (ngx_http_taurus_guard_fetch_header(sr, &name, &req.content_type)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (req.header.len
        && ngx_http_taurus_guard_fetch_header(sr, &req.header, &req.value)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (base != NULL
        && ngx_http_taurus_guard_fetch_header(sr, &src->base_header,
                                              &fetch->base)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: fetching from \"%V\"", &src->uri);

    if (ctx != NULL) {
        /* resumed when nginx posts this request after the subrequest */
        ctx->fetch_pending = 1;
        r->write_event_handler = ctx->resume;
    }

    return NGX_AGAIN;

failed:

    if (fetch != NULL) {
        /* unmarked here, not again when the request ends */
        fetch->done = 1;
    }

    ngx_http_taurus_guard_fetch_failed(src, k);

    return NGX_ERROR;
}


/* a header of a fetch; value must live as long as the request */

static ngx_int_t
ngx_http_taurus_guard_fetch_header(ngx_http_request_t *sr, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&sr->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->key = *name;
    h->value = *value;

    h->lowcase_key = ngx_pnalloc(sr->pool, name->len);
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    /* the proxy looks it up among its proxy_set_header ones */
    h->hash = ngx_hash_strlow(h->lowcase_key, name->data, name->len);

    if (name->len == sizeof("Content-Type") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Content-Type",
                           name->len) == 0)
    {
        sr->headers_in.content_type = h;
    }

    return NGX_OK;
}


/*
 * A fetched secret's "refresh=TIME" (taurus_guard_token iam=,
 * taurus_guard_credentials metadata=), at least NGX_HTTP_TG_REFRESH_MIN;
 * nginx -t names the directive otherwise.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_refresh(ngx_conf_t *cf, const char *directive,
    ngx_str_t *value, time_t *refresh)
{
    ngx_str_t  s;

    s.data = value->data + sizeof("refresh=") - 1;
    s.len = value->len - (sizeof("refresh=") - 1);

    *refresh = ngx_parse_time(&s, 1);

    if (*refresh == (time_t) NGX_ERROR || *refresh <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s: invalid \"%V\"",
                           directive, value);
        return NGX_ERROR;
    }

    if (*refresh < NGX_HTTP_TG_REFRESH_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: \"%V\" is less than 3s: no renewal could"
                           " start before the secret's last second, in"
                           " which it is no longer used", directive, value);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a fetch of the gateway's own, whatever location it reached */

ngx_int_t
ngx_http_taurus_guard_is_fetch(ngx_http_request_t *r)
{
    return r->post_subrequest != NULL
           && r->post_subrequest->handler == ngx_http_taurus_guard_fetch_done;
}


/*
 * Called by the precontent handler for every subrequest, before any
 * content handler: NGX_DECLINED when r is not a fetch, NGX_OK when it
 * is one in a location that may serve it, else the status r is
 * finalized with, having sent nothing.
 *
 * A fetch's URI is looked up in the server of the request that asks.
 * Where that server has no such location (it is defined in another, or
 * misspelt), the URI falls to some public location, and the IAM password
 * or a token would go to whatever that location proxies to.  Only an
 * internal location may serve a fetch, or a named one (error_page,
 * try_files) reached straight from a location that was let through: a
 * named one reached from a public location's "return" or "deny" is not.
 * Every change of location (a rewrite, an internal redirect, a named
 * location) takes one from r->uri_changes, so "straight from" is one
 * less than where the fetch was last let through.
 *
 * The module's ctx does not survive an internal redirect: a fetch is
 * known by its post-subrequest handler, which does.  A fetch refused once
 * stays refused, wherever error_page sends it next.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_check(ngx_http_request_t *r)
{
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_taurus_guard_fetch_sr_t  *fetch;

    if (r->post_subrequest == NULL
        || r->post_subrequest->handler != ngx_http_taurus_guard_fetch_done)
    {
        return NGX_DECLINED;
    }

    fetch = r->post_subrequest->data;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (fetch->refused) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (clcf->internal
        || (clcf->named
            && fetch->uri_changes == (ngx_uint_t) r->uri_changes + 1))
    {
        fetch->uri_changes = r->uri_changes;
        fetch->served++;
        return NGX_OK;
    }

    fetch->refused = 1;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "taurus_guard: the fetch from \"%V\" reached location"
                  " \"%V\", which is %s; nothing was sent (the fetch URI"
                  " must map to an internal location in every server that"
                  " guards batches)",
                  &fetch->src->uri, &clcf->name,
                  clcf->named ? "named but not reached from an internal one"
                              : "not internal");

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * The answer is in memory: a good one goes to shared memory for every
 * worker; the request that waited for it is posted by nginx and goes
 * on.  Only the service's answer, whole, is read at all.  A 401 to a
 * fetch that carried a base drops that base, so the next fetch asks
 * for a new one first.
 *
 * nginx calls this each time the subrequest is finalized: an error
 * status first (the service down: the proxy's 502), then again after
 * its error page, or after error_page sent it to a named location that
 * proxies.  Only a finalization in a location let through since the
 * last one handled (fetch->served) brings an answer of its own: any
 * other is the same failure's end, which was logged, counted and
 * unmarked once already.  A refused fetch is over at the first.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_taurus_guard_fetch_sr_t *fetch = data;

    u_char                         *last;
    time_t                          expires;
    ngx_int_t                       rc2;
    ngx_str_t                       secret;
    ngx_uint_t                      ended;
    const char                     *problem;
    ngx_http_request_t             *r;
    ngx_http_taurus_guard_ctx_t    *ctx;
    ngx_http_taurus_guard_fetch_t  *src;
    u_char                          what[NGX_MAX_ERROR_STR];

    ctx = fetch->ctx;
    src = fetch->src;
    r = sr->parent;

    if (fetch->done && fetch->handled == fetch->served) {
        ngx_http_taurus_guard_fetch_wipe(sr);
        ngx_http_taurus_guard_fetch_unload(sr, fetch, rc);
        return rc;
    }

    fetch->done = 1;
    fetch->handled = fetch->served;

    /* what the body filter saw of this finalization's answer */
    ended = fetch->ended;
    fetch->ended = 0;

    last = src->ops->what(src, fetch->key, what, what + sizeof(what) / 2);

    if (fetch->refused) {
        rc2 = NGX_ERROR;
        problem = "its location may not serve it";

    } else if (ngx_http_taurus_guard_fetch_whole(sr, rc, ended, &problem)
               != NGX_OK)
    {
        rc2 = NGX_ERROR;

    } else {
        rc2 = src->ops->answer(sr, src, &secret, &expires, &problem);
    }

    if (rc2 != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "taurus_guard: %*s not fetched: %s", last - what, what,
                      problem);

        ngx_http_taurus_guard_fetch_failed(src, fetch->key);

        if (fetch->base.len && sr->upstream != NULL
            && sr->upstream->headers_in.status_n == NGX_HTTP_UNAUTHORIZED)
        {
            ngx_http_taurus_guard_fetch_drop(src->base,
                                             ngx_http_taurus_guard_base_key,
                                             &fetch->base);

            ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                          "taurus_guard: %*s: the %V it was asked with was"
                          " refused (401); a new one will be fetched",
                          last - what, what, &src->base_header);

            if (ctx != NULL && ctx->fetch != NULL) {
                /* worth one more try, with a new base */
                ctx->fetch->tried &= ~NGX_HTTP_TG_TRIED_SECRET;
            }
        }

        if (ctx != NULL) {
            ctx->fetch_pending = 0;
        }

        ngx_http_taurus_guard_fetch_wipe(sr);
        ngx_http_taurus_guard_fetch_unload(sr, fetch, rc);

        return rc;
    }

    ngx_http_taurus_guard_fetch_end(src, fetch->key, &secret, expires,
                                    fetch->identity);

    ngx_log_error(NGX_LOG_NOTICE, sr->connection->log, 0,
                  "taurus_guard: %*s fetched, valid for %T s",
                  last - what, what, expires - ngx_time());

    if (ctx != NULL) {
        if (ngx_http_taurus_guard_secret_copy(r->pool, secret.data,
                                              secret.len, ctx->fetch->out)
            != NGX_OK)
        {
            ctx->fetch->out->len = 0;

        } else if (src == ctx->fetch->stage) {
            ngx_http_taurus_guard_fetch_in_hand(ctx, src, expires);
        }

        ctx->fetch_pending = 0;
    }

    /* copied where it is kept: not left in the answer's buffers */
    OPENSSL_cleanse(secret.data, secret.len);
    ngx_http_taurus_guard_fetch_wipe(sr);
    ngx_http_taurus_guard_fetch_unload(sr, fetch, rc);

    return rc;
}


/*
 * Whether sr ends with the service's answer, whole: only then may the
 * kind read it.  Never a part of the answer in *problem.
 *
 * rc does not say it.  When the service's connection closes before the
 * Content-Length or the last chunk, or a read times out, after the
 * answer's header went to the subrequest, nginx 1.22's
 * ngx_http_upstream_finalize_request() sends a flush in place of its
 * 502 or 504 and finalizes the subrequest with what sending the flush
 * returned: NGX_OK, the part that came in sr->out (or none of it, when
 * the proxy buffers and the read timed out).  Looking at the upstream's
 * counters instead (u->length, u->pipe) means knowing each way nginx
 * reads a body, and one read up to the connection's close leaves
 * nothing to tell its end from a timeout once the proxy does not
 * buffer.
 *
 * What marks a whole answer is the buffer that ends a subrequest's
 * output (last_in_chain), which the body filter notes in fetch->ended:
 * the upstream sends it only when it finalizes with 0, having found the
 * answer complete itself (its Content-Length read, its last chunk, or
 * the close that was to end it), buffered or not, and never after a
 * cut.  An answer too big for subrequest_output_buffer_size ends
 * without it too.
 *
 * An error page nginx made after the service failed (no connection, a
 * timeout or a bad header before the body, an error intercepted) ends
 * that way too: the service's own header never went out
 * (u->header_sent).  And a finalization with anything but NGX_OK
 * (NGX_ERROR, a special status such as 502) is never a whole answer.  A
 * location that does not proxy (no sr->upstream) is the kind's to
 * refuse.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_whole(ngx_http_request_t *sr, ngx_int_t rc,
    ngx_uint_t ended, const char **problem)
{
    ngx_http_upstream_t  *u;

    u = sr->upstream;

    if ((u != NULL && !u->header_sent) || (u == NULL && rc != NGX_OK)) {
        *problem = "the service's answer did not come through";
        return NGX_ERROR;
    }

    if (rc != NGX_OK || !ended) {
        *problem = "the answer was cut short";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Notes the end of a fetch's answer (see fetch_whole()); every other
 * request's output only passes.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_chain_t                       *cl;
    ngx_http_taurus_guard_fetch_sr_t  *fetch;

    if (r->post_subrequest != NULL
        && r->post_subrequest->handler == ngx_http_taurus_guard_fetch_done)
    {
        fetch = r->post_subrequest->data;

        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_in_chain) {
                fetch->ended = 1;
            }
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/*
 * The module's filters come before nginx's postpone filter, which keeps
 * a subrequest's answer in memory and passes nothing on (loaded as a
 * dynamic module, they come first of all): the body filter sees a
 * fetch's answer as the upstream sends it.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_taurus_guard_fetch_body_filter;

    return NGX_OK;
}


/*
 * The proxy reads the answer's status line, headers and (when it is
 * short) body into u->buffer, which goes back to the pool as it is:
 * IAM's X-Subject-Token line, the metadata service's SK and security
 * token.  Wiped whether the answer was good or not: a bad one may hold
 * a secret too.
 */

static void
ngx_http_taurus_guard_fetch_wipe(ngx_http_request_t *sr)
{
    ngx_http_upstream_t  *u;

    u = sr->upstream;

    if (u != NULL && u->buffer.start != NULL) {
        OPENSSL_cleanse(u->buffer.start, u->buffer.end - u->buffer.start);
    }
}


/*
 * A fetch that is over gives up what it carried: the IAM password in
 * its body, the user or session token in its header.  With
 * "log_subrequest on", nginx logs the subrequest right after this
 * handler, reading $request_body and $http_* of it, and caches what it
 * read in r->variables, which a subrequest shares with its parent: the
 * batch's own log line would print it too.  A special status (an error,
 * 201 or 204) may yet send the fetch on through error_page, to a named
 * location that proxies it again: it keeps them until the next
 * finalization, which comes back here.
 */

static void
ngx_http_taurus_guard_fetch_unload(ngx_http_request_t *sr,
    ngx_http_taurus_guard_fetch_sr_t *fetch, ngx_int_t rc)
{
    ngx_chain_t                        *cl;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_HTTP_CREATED
        || rc == NGX_HTTP_NO_CONTENT)
    {
        return;
    }

    if (sr->request_body != NULL) {
        for (cl = sr->request_body->bufs; cl; cl = cl->next) {
            if (cl->buf->start != NULL) {
                OPENSSL_cleanse(cl->buf->start,
                                cl->buf->end - cl->buf->start);
            }
        }

        sr->request_body->bufs = NULL;
    }

    /* the base header's value is this copy */

    if (fetch->base.len) {
        OPENSSL_cleanse(fetch->base.data, fetch->base.len);
        fetch->base.len = 0;
    }

    sr->headers_in.headers.part.nelts = 0;
    sr->headers_in.headers.part.next = NULL;
    sr->headers_in.headers.last = &sr->headers_in.headers.part;
    sr->headers_in.content_type = NULL;

    mcf = ngx_http_get_module_main_conf(sr, ngx_http_taurus_guard_module);

    ngx_http_taurus_guard_forget_vars(sr, mcf->fetch_vars,
                                      NGX_HTTP_TG_FETCH_VARS);
}


/* nginx's postpone filter keeps an in-memory answer in sr->out */

ngx_int_t
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

        /* nobody reads an in-memory answer after this */
        OPENSSL_cleanse(cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


/*
 * A fetch is over: keep its secret, with the identity it was asked with,
 * or only unmark the slot.
 */

static void
ngx_http_taurus_guard_fetch_end(ngx_http_taurus_guard_fetch_t *src,
    u_char *key, ngx_str_t *secret, time_t expires, u_char *identity)
{
    u_char                              *copy;
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src, key, secret != NULL);

    if (slot == NULL) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);
        return;
    }

    slot->fetcher = 0;

    if (secret != NULL) {
        copy = ngx_slab_alloc_locked(ngx_http_tg_shpool(src), secret->len);

        if (copy != NULL) {
            ngx_http_taurus_guard_fetch_forget(src, slot);

            ngx_memcpy(copy, secret->data, secret->len);
            ngx_memcpy(slot->identity, identity, NGX_HTTP_TG_IDENTITY_LEN);
            slot->secret = copy;
            slot->len = secret->len;
            slot->expires = expires;
            slot->refreshed = ngx_time();
            slot->failed = 0;
        }
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);
}


/*
 * A fetch failed (it could not be sent, or its answer was not good):
 * the slot is unmarked and remembers it for the health check, and the
 * failure is counted by the source's kind.
 */

static void
ngx_http_taurus_guard_fetch_failed(ngx_http_taurus_guard_fetch_t *src,
    u_char *key)
{
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src, key, 1);

    if (slot != NULL) {
        slot->fetcher = 0;
        slot->failed = 1;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);

    ngx_http_taurus_guard_metrics_fetch_failed(
        ngx_http_taurus_guard_fetch_source(src, key));
}


/*
 * The kind of key's secret: a password source's base key holds the
 * user's own token (an agency's base, or a plain directive sharing the
 * zone with it); every other key a project's token.
 */

static ngx_uint_t
ngx_http_taurus_guard_fetch_source(ngx_http_taurus_guard_fetch_t *src,
    u_char *key)
{
    if (src->source == NGX_HTTP_TG_SOURCE_IAM
        && ngx_memcmp(key, ngx_http_taurus_guard_base_key, TG_PROJECT_ID_LEN)
           == 0)
    {
        return NGX_HTTP_TG_SOURCE_IAM_USER;
    }

    return src->source;
}


/*
 * What src holds, key by key, then the base it is asked with (if any),
 * copied under each zone's lock and never a secret; at most n.  *source
 * is src's kind, for a source nothing was fetched from yet.
 */

ngx_uint_t
ngx_http_taurus_guard_fetch_states(ngx_http_taurus_guard_fetch_t *src,
    ngx_uint_t *source, ngx_http_taurus_guard_fetch_state_t *st, ngx_uint_t n)
{
    time_t                               now;
    ngx_uint_t                           i, k;
    ngx_http_taurus_guard_fetch_sh_t    *sh;
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    *source = src->source;
    now = ngx_time();
    k = 0;

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    sh = ngx_http_tg_sh(src);

    for (i = 0; i < sh->nslots && k < n; i++) {
        ngx_http_taurus_guard_fetch_state(src, &sh->slots[i], now, &st[k++]);
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);

    if (src->base == NULL || k == n) {
        return k;
    }

    ngx_shmtx_lock(&ngx_http_tg_shpool(src->base)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src->base,
                                            ngx_http_taurus_guard_base_key,
                                            0);
    if (slot != NULL) {
        ngx_http_taurus_guard_fetch_state(src->base, slot, now, &st[k]);
        st[k++].base = 1;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src->base)->mutex);

    return k;
}


/* the zone's lock is held */

static void
ngx_http_taurus_guard_fetch_state(ngx_http_taurus_guard_fetch_t *src,
    ngx_http_taurus_guard_fetch_slot_t *slot, time_t now,
    ngx_http_taurus_guard_fetch_state_t *st)
{
    ngx_memzero(st, sizeof(ngx_http_taurus_guard_fetch_state_t));

    ngx_memcpy(st->key, slot->key, TG_PROJECT_ID_LEN);
    st->source = ngx_http_taurus_guard_fetch_source(src, slot->key);
    st->project = (ngx_memcmp(slot->key, ngx_http_taurus_guard_base_key,
                              TG_PROJECT_ID_LEN)
                   != 0);
    st->expires = (slot->secret != NULL) ? slot->expires : 0;
    st->refreshed = slot->refreshed;
    st->usable = ngx_http_taurus_guard_fetch_usable(src, slot, now);
    st->failed = slot->failed;
}


static void
ngx_http_taurus_guard_fetch_abandoned(void *data)
{
    ngx_http_taurus_guard_fetch_sr_t  *fetch = data;

    if (!fetch->done) {
        ngx_http_taurus_guard_fetch_end(fetch->src, fetch->key, NULL, 0,
                                        NULL);
    }
}


/*
 * Another worker fetches: look again until it is done or too late.  A
 * fetch whose worker is gone answered nothing: the request asks again,
 * and that ask does not count (ngx_http_taurus_guard_fetch_get()), so it
 * fetches itself at once, or waits for whoever took the fetch over
 * first.
 */

static void
ngx_http_taurus_guard_fetch_poll(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    time_t                               expires;
    ngx_int_t                            rc;
    ngx_uint_t                           renew, fetching, orphaned;
    ngx_connection_t                    *c;
    ngx_http_taurus_guard_ctx_t         *ctx;
    ngx_http_taurus_guard_fetch_ctx_t   *fctx;
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);
    fctx = ctx->fetch;

    rc = ngx_http_taurus_guard_fetch_take(r, fctx->src, fctx->key,
                                          fctx->out, &renew, &expires);

    if (rc == NGX_OK && fctx->src == fctx->stage) {
        ngx_http_taurus_guard_fetch_in_hand(ctx, fctx->src, expires);
    }

    if (rc == NGX_OK && renew) {
        ngx_http_taurus_guard_fetch_renew(r, fctx->src, fctx->key);
    }

    if (rc == NGX_DECLINED) {
        ngx_shmtx_lock(&ngx_http_tg_shpool(fctx->src)->mutex);
        slot = ngx_http_taurus_guard_fetch_slot(fctx->src, fctx->key, 0);
        fetching = (slot != NULL && ngx_http_taurus_guard_fetch_alive(slot));
        orphaned = (slot != NULL && slot->fetcher != 0 && !fetching);
        ngx_shmtx_unlock(&ngx_http_tg_shpool(fctx->src)->mutex);

        if (fetching
            && (ngx_msec_int_t) (fctx->deadline - ngx_current_msec) > 0)
        {
            ngx_add_timer(ev, NGX_HTTP_TG_FETCH_POLL);
            return;
        }

        if (orphaned) {
            fctx->asks--;
        }
    }

    /* a secret, the fetch ended without one, or its worker is gone */

    ctx->fetch_pending = 0;
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
ngx_http_taurus_guard_fetch_refused(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_http_taurus_guard_fetch_drop(ctx->token_src, ctx->project_id.data,
                                     &ctx->token);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: the endpoint refused the IAM token of"
                  " project \"%V\" (401); a new one will be fetched",
                  &ctx->project_id);
}


/* a secret refused: expired now, if it is still key's */

static void
ngx_http_taurus_guard_fetch_drop(ngx_http_taurus_guard_fetch_t *src,
    u_char *key, ngx_str_t *secret)
{
    ngx_http_taurus_guard_fetch_slot_t  *slot;

    ngx_shmtx_lock(&ngx_http_tg_shpool(src)->mutex);

    slot = ngx_http_taurus_guard_fetch_slot(src, key, 0);

    if (slot != NULL && slot->secret != NULL && slot->len == secret->len
        && ngx_memcmp(slot->secret, secret->data, slot->len) == 0)
    {
        slot->expires = 0;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(src)->mutex);
}


static void
ngx_http_taurus_guard_fetch_wait_cleanup(void *data)
{
    ngx_event_t  *ev = data;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }
}
