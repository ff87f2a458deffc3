
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
 * An agency token (agency=) is asked with the delegated user's own token,
 * scoped to the user's domain, itself fetched with the password and kept
 * like the others under one key; the metadata credentials may be asked
 * with a session token (session=), fetched the same way.  A base token
 * the service refuses with 401 is dropped.
 *
 * The password and the tokens are never logged; the request body that
 * carries the password is wiped when the request ends.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>


#define NGX_HTTP_TG_IAM_FILE_MAX     4096
#define NGX_HTTP_TG_IAM_ZONE_SIZE    (4 * 1024 * 1024)
#define NGX_HTTP_TG_IAM_TOKEN_MAX    (64 * 1024)
#define NGX_HTTP_TG_SESSION_TTL_MAX  21600   /* the service's limit, s */

#define ngx_http_tg_shpool(iam)                                              \
    ((ngx_slab_pool_t *) (iam)->zone->shm.addr)
#define ngx_http_tg_sh(iam)                                                  \
    ((ngx_http_taurus_guard_iam_sh_t *) ngx_http_tg_shpool(iam)->data)


typedef struct {
    ngx_http_taurus_guard_iam_t  *iam;
    ngx_http_taurus_guard_ctx_t  *ctx;       /* NULL: a background renewal */
    u_char                        project[TG_PROJECT_ID_LEN];
    ngx_str_t                     base;      /* the base token it carries */
    ngx_uint_t                    done;      /* its answer was handled */
} ngx_http_taurus_guard_iam_fetch_t;


/* a base token is kept under this key: project ids are hex */
static u_char  ngx_http_taurus_guard_base_key[TG_PROJECT_ID_LEN];


static ngx_int_t ngx_http_taurus_guard_fetch_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *what);
static ngx_int_t ngx_http_taurus_guard_iam_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_http_taurus_guard_metadata_answer(
    ngx_http_request_t *sr, ngx_http_taurus_guard_iam_t *iam,
    ngx_str_t *profile, time_t *expires, const char **problem);
static ngx_int_t ngx_http_taurus_guard_session_answer(
    ngx_http_request_t *sr, ngx_http_taurus_guard_iam_t *iam,
    ngx_str_t *token, time_t *expires, const char **problem);
static ngx_int_t ngx_http_taurus_guard_fetch_body(ngx_http_request_t *sr,
    ngx_str_t *body, const char **problem);
static ngx_http_taurus_guard_iam_slot_t *ngx_http_taurus_guard_iam_slot(
    ngx_http_taurus_guard_iam_t *iam, u_char *project, ngx_uint_t add);
static ngx_uint_t ngx_http_taurus_guard_slot_claim(
    ngx_http_taurus_guard_iam_slot_t *slot);
static ngx_int_t ngx_http_taurus_guard_iam_take(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, u_char *key, ngx_str_t *out,
    ngx_uint_t *renew);
static ngx_int_t ngx_http_taurus_guard_fetch_start(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out, ngx_str_t *base, ngx_uint_t tried);
static void ngx_http_taurus_guard_fetch_renew(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, u_char *key);
static ngx_int_t ngx_http_taurus_guard_iam_fetch(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *base);
static ngx_int_t ngx_http_taurus_guard_fetch_header(ngx_http_request_t *sr,
    ngx_str_t *name, ngx_str_t *value);
static void ngx_http_taurus_guard_fetch_drop(ngx_http_taurus_guard_iam_t *iam,
    u_char *key, ngx_str_t *token);
static u_char *ngx_http_taurus_guard_fetch_what(
    ngx_http_taurus_guard_iam_fetch_t *fetch, u_char *buf, size_t len);
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
static ngx_int_t ngx_http_taurus_guard_fetch_name(ngx_conf_t *cf,
    ngx_str_t *value, ngx_str_t *name);
static char *ngx_http_taurus_guard_agency_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_http_taurus_guard_iam_t *user,
    ngx_str_t *agency, ngx_str_t *domain);


char *
ngx_http_taurus_guard_iam_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_str_t *value, ngx_uint_t n)
{
    size_t                        line;
    tg_rc_t                       rc;
    ngx_str_t                     s, agency, domain;
    ngx_uint_t                    i;
    ngx_pool_cleanup_t           *cln;
    ngx_http_taurus_guard_iam_t  *iam;

    iam = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_t));
    if (iam == NULL) {
        return NGX_CONF_ERROR;
    }

    iam->refresh = 3600;

    ngx_str_null(&agency);
    ngx_str_null(&domain);

    for (i = 1; i < n; i++) {

        if (ngx_strncmp(value[i].data, "agency=", 7) == 0
            || ngx_strncmp(value[i].data, "agency_domain=", 14) == 0)
        {
            /* "agency=" has its '=' where "agency_domain=" has '_' */

            if (ngx_http_taurus_guard_fetch_name(cf, &value[i],
                                                 value[i].data[6] == '='
                                                 ? &agency : &domain)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

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

    if ((agency.len == 0) != (domain.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: \"agency=\" and"
                           " \"agency_domain=\" go together");
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

    token->watch = iam->watch;

    if (agency.len) {
        return ngx_http_taurus_guard_agency_conf(cf, token, iam, &agency,
                                                 &domain);
    }

    token->iam = iam;

    return NGX_CONF_OK;
}


/*
 * agency=NAME agency_domain=NAME: the tokens sent are the agency's, for
 * the project of each batch, asked with the user's own token, which the
 * password gets scoped to the user's domain.
 */

static char *
ngx_http_taurus_guard_agency_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_http_taurus_guard_iam_t *user,
    ngx_str_t *agency, ngx_str_t *domain)
{
    ngx_str_t                     what;
    ngx_http_taurus_guard_iam_t  *iam;

    iam = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_t));
    if (iam == NULL) {
        return NGX_CONF_ERROR;
    }

    user->user = 1;

    iam->kind = NGX_HTTP_TG_FETCH_IAM;
    iam->uri = user->uri;
    iam->refresh = user->refresh;
    iam->margin = user->margin;
    iam->agency = *agency;
    iam->agency_domain = *domain;
    iam->base = user;
    ngx_str_set(&iam->base_header, "X-Auth-Token");

    /* the agency's tokens are not the user's: a zone of their own */

    what.len = user->watch.path.len + sizeof("#agency=/") - 1
               + domain->len + agency->len;
    what.data = ngx_pnalloc(cf->pool, what.len);
    if (what.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(what.data, "%V#agency=%V/%V", &user->watch.path, domain,
                agency);

    if (ngx_http_taurus_guard_fetch_zone(cf, iam, &what) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    token->iam = iam;

    return NGX_CONF_OK;
}


/*
 * NAME of "agency=NAME" and the like: printable ASCII, as IAM's are, but
 * for '/', '#' and ':', which separate the parts of a zone's name.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_name(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *name)
{
    u_char  *p;

    p = ngx_strlchr(value->data, value->data + value->len, '=') + 1;

    name->data = p;
    name->len = value->data + value->len - p;

    if (name->len == 0 || name->len > 255) {
        goto invalid;
    }

    for ( /* void */ ; p < value->data + value->len; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '/' || *p == '#' || *p == ':') {
            goto invalid;
        }
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "taurus_guard_token: invalid \"%V\": a name of 1 to"
                       " 255 printable characters but '/', '#' and ':'"
                       " expected", value);

    return NGX_ERROR;
}


/*
 * taurus_guard_credentials metadata=URI [session=URI [session_ttl=TIME]]
 * [refresh=TIME]: the ECS metadata service's temporary AK/SK and security
 * token, shared by all workers; with session=, asked with a session
 * token ("PUT /meta-data/latest/api/token") as the SDKs do.
 */

char *
ngx_http_taurus_guard_metadata_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred, ngx_str_t *value, ngx_uint_t n)
{
    time_t                        ttl;
    ngx_str_t                     s, session;
    ngx_uint_t                    i;
    ngx_http_taurus_guard_iam_t  *meta, *base;

    static ngx_str_t  none = ngx_string("metadata");
    static ngx_str_t  sess = ngx_string("metadata-session");

    meta = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_t));
    if (meta == NULL) {
        return NGX_CONF_ERROR;
    }

    meta->kind = NGX_HTTP_TG_FETCH_METADATA;
    meta->refresh = 900;

    ngx_str_null(&session);
    ttl = NGX_CONF_UNSET;

    for (i = 1; i < n; i++) {

        if (ngx_strncmp(value[i].data, "session=", 8) == 0) {
            session.data = value[i].data + 8;
            session.len = value[i].len - 8;
            continue;
        }

        if (ngx_strncmp(value[i].data, "session_ttl=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            ttl = ngx_parse_time(&s, 1);
            if (ttl == (time_t) NGX_ERROR || ttl < 2
                || ttl > NGX_HTTP_TG_SESSION_TTL_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_credentials: invalid"
                                   " \"%V\": 2s to 6h expected",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

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

    if (session.len == 0 && ttl != NGX_CONF_UNSET) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials: \"session_ttl=\""
                           " needs \"session=\"");
        return NGX_CONF_ERROR;
    }

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

    if (session.len == 0) {
        return NGX_CONF_OK;
    }

    if (session.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials: \"session=\" takes"
                           " the URI of an internal location that proxies"
                           " to the session token's");
        return NGX_CONF_ERROR;
    }

    base = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_t));
    if (base == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ttl == NGX_CONF_UNSET) {
        ttl = NGX_HTTP_TG_SESSION_TTL_MAX;
    }

    base->kind = NGX_HTTP_TG_FETCH_SESSION;
    base->uri = session;
    base->ttl = ttl;
    base->refresh = ttl / 4;
    base->margin = ngx_min(30, ngx_max(ttl / 8, 1));

    if (ngx_http_taurus_guard_fetch_zone(cf, base, &sess) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    meta->base = base;
    ngx_str_set(&meta->base_header, "X-Metadata-Token");

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_taurus_guard_fetch_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *what)
{
    u_char     *p;
    ngx_str_t   name;

    /*
     * what's length first: a ':' in it or in the URI cannot make two
     * sources one
     */

    name.data = ngx_pnalloc(cf->pool, sizeof("taurus_guard_fetch:::") - 1
                                      + NGX_SIZE_T_LEN + what->len
                                      + iam->uri.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(name.data, "taurus_guard_fetch:%uz:%V:%V", what->len,
                    what, &iam->uri);
    name.len = p - name.data;

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
 * NGX_OK: *out is the secret of key, valid for a while yet; NGX_AGAIN:
 * the request waits for a fetch (its own or another's), then ctx->resume
 * runs and the caller asks again; NGX_ERROR: it cannot be had.
 *
 * A secret asked with a base token needs that first: when none is in
 * hand, the fetch this request waits for is the base's.  A request
 * fetches each itself at most once, except that a fetch whose base token
 * was refused (401) is tried again with a new one.  It asks once, or,
 * with a base, up to NGX_HTTP_TG_FETCH_ASKS times (the base first, or
 * again after a 401, then the secret): a secret still missing after
 * that cannot be had.
 */

ngx_int_t
ngx_http_taurus_guard_fetch_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out)
{
    u_char      *bkey;
    ngx_int_t    rc;
    ngx_str_t   *base;
    ngx_uint_t   renew;

    rc = ngx_http_taurus_guard_iam_take(r, iam, key, out, &renew);

    if (rc == NGX_OK) {
        if (renew) {
            /* still good: this request goes on, a renewal runs beside */
            ngx_http_taurus_guard_fetch_renew(r, iam, key);
        }

        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* NGX_DECLINED: nothing valid; fetch it, or wait for who does */

    if (ctx->fetch_stage != iam) {
        ctx->fetch_stage = iam;
        ctx->fetch_tried = 0;
        ctx->fetch_asks = 0;
    }

    if (ctx->fetch_asks++ >= (iam->base ? NGX_HTTP_TG_FETCH_ASKS : 1)) {
        return NGX_ERROR;
    }

    base = NULL;

    if (iam->base != NULL) {
        bkey = ngx_http_taurus_guard_base_key;
        base = &ctx->fetch_base;
        base->len = 0;

        rc = ngx_http_taurus_guard_iam_take(r, iam->base, bkey, base, &renew);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            if (ctx->fetch_tried & NGX_HTTP_TG_TRIED_BASE) {
                return NGX_ERROR;
            }

            return ngx_http_taurus_guard_fetch_start(r, iam->base, ctx, bkey,
                                                     base, NULL,
                                                     NGX_HTTP_TG_TRIED_BASE);
        }

        if (renew) {
            ngx_http_taurus_guard_fetch_renew(r, iam->base, bkey);
        }
    }

    if (ctx->fetch_tried & NGX_HTTP_TG_TRIED_SECRET) {
        return NGX_ERROR;
    }

    return ngx_http_taurus_guard_fetch_start(r, iam, ctx, key, out, base,
                                             NGX_HTTP_TG_TRIED_SECRET);
}


/*
 * Fetch key's secret, with base in hand if it needs one, or wait for
 * whoever fetches it; "tried" marks a fetch of this request's own.
 */

static ngx_int_t
ngx_http_taurus_guard_fetch_start(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out, ngx_str_t *base, ngx_uint_t tried)
{
    ngx_pool_cleanup_t                *cln;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    ctx->fetch_src = iam;
    ctx->fetch_key = key;
    ctx->fetch_out = out;

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, key, 1);

    if (slot == NULL) {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: more than %d projects with IAM"
                      " tokens", NGX_HTTP_TG_IAM_SLOTS);
        return NGX_ERROR;
    }

    if (!ngx_http_taurus_guard_slot_claim(slot)) {
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

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);

    ctx->fetch_tried |= tried;

    return ngx_http_taurus_guard_iam_fetch(r, iam, ctx, key, base);
}


/*
 * A renewal in the background, the slot already marked by take().  One
 * asked with a base token goes with the base in hand; with none, the
 * base is renewed instead, and the next request renews key with it.
 */

static void
ngx_http_taurus_guard_fetch_renew(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, u_char *key)
{
    u_char                            *bkey;
    ngx_int_t                          rc;
    ngx_str_t                          base;
    ngx_uint_t                         renew, start;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    if (iam->base == NULL) {
        (void) ngx_http_taurus_guard_iam_fetch(r, iam, NULL, key, NULL);
        return;
    }

    bkey = ngx_http_taurus_guard_base_key;

    rc = ngx_http_taurus_guard_iam_take(r, iam->base, bkey, &base, &renew);

    if (rc == NGX_OK) {
        if (renew) {
            (void) ngx_http_taurus_guard_iam_fetch(r, iam->base, NULL, bkey,
                                                   NULL);
        }

        (void) ngx_http_taurus_guard_iam_fetch(r, iam, NULL, key, &base);
        return;
    }

    ngx_http_taurus_guard_iam_end_fetch(iam, key, NULL, 0);

    if (rc == NGX_ERROR) {
        return;
    }

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam->base)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam->base, bkey, 1);
    start = (slot != NULL && ngx_http_taurus_guard_slot_claim(slot));

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam->base)->mutex);

    if (start) {
        (void) ngx_http_taurus_guard_iam_fetch(r, iam->base, NULL, bkey, NULL);
    }
}


/*
 * Copies key's secret to *out when it is valid for more than
 * iam->margin seconds (30, or a quarter of refresh if less); *renew when
 * it is within refresh of its end and nobody renews it yet (the caller
 * then does).
 */

static ngx_int_t
ngx_http_taurus_guard_iam_take(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, u_char *key, ngx_str_t *out,
    ngx_uint_t *renew)
{
    time_t                             now;
    ngx_http_taurus_guard_iam_slot_t  *slot;

    *renew = 0;
    now = ngx_time();

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, key, 0);

    if (slot == NULL || slot->token == NULL
        || slot->expires - now <= iam->margin)
    {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        return NGX_DECLINED;
    }

    if (ngx_http_taurus_guard_secret_copy(r->pool, slot->token, slot->len,
                                          out)
        != NGX_OK)
    {
        ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
        return NGX_ERROR;
    }

    if (slot->expires - now < iam->refresh) {
        *renew = ngx_http_taurus_guard_slot_claim(slot);
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);

    return NGX_OK;
}


/*
 * The zone's lock is held.  Marks the slot "fetching" for the caller,
 * unless somebody fetches it already (a mark older than
 * NGX_HTTP_TG_IAM_STALE is nobody's).
 */

static ngx_uint_t
ngx_http_taurus_guard_slot_claim(ngx_http_taurus_guard_iam_slot_t *slot)
{
    time_t  now;

    now = ngx_time();

    if (slot->fetching != 0 && now - slot->fetching < NGX_HTTP_TG_IAM_STALE) {
        return 0;
    }

    slot->fetching = now;

    return 1;
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
 * The subrequest to the internal location, with none of the caller's
 * headers nor its body:
 *
 *   IAM        POST ?nocatalog=true, the password method scoped to the
 *              project (or to the user's domain), or an agency's
 *              assume_role with the user's token in X-Auth-Token;
 *   METADATA   GET, with the session token in X-Metadata-Token if any;
 *   SESSION    PUT, X-Metadata-Token-Ttl-Seconds.
 *
 * ctx NULL: in the background.  The slot is marked "fetching" by the
 * caller; a failure to start unmarks it.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_fetch(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *base)
{
    u_char                             *p;
    size_t                              len;
    ngx_buf_t                          *b;
    ngx_str_t                           args, name, value;
    ngx_uint_t                          flags;
    tg_iam_cred_t                      *cred;
    ngx_chain_t                        *cl;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_request_t                 *sr;
    ngx_http_request_body_t            *rb;
    ngx_http_post_subrequest_t         *ps;
    ngx_http_taurus_guard_ctx_t        *sctx;
    ngx_http_taurus_guard_iam_fetch_t  *fetch;
    tg_str_t                            domain, agency;
    u_char                              project[TG_PROJECT_ID_LEN];

    ngx_memcpy(project, key, TG_PROJECT_ID_LEN);

    p = NULL;
    len = 0;
    fetch = NULL;

    if (iam->kind == NGX_HTTP_TG_FETCH_IAM && iam->agency.len) {
        domain.data = iam->agency_domain.data;
        domain.len = iam->agency_domain.len;
        agency.data = iam->agency.data;
        agency.len = iam->agency.len;

        len = tg_iam_agency_body(&domain, &agency, project,
                                 TG_PROJECT_ID_LEN, NULL, 0);

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            goto failed;
        }

        (void) tg_iam_agency_body(&domain, &agency, project,
                                  TG_PROJECT_ID_LEN, p, len);

    } else if (iam->kind == NGX_HTTP_TG_FETCH_IAM) {
        cred = ngx_http_taurus_guard_iam_cred(r->connection->log, iam);

        len = tg_iam_request_body(cred, iam->user ? NULL : project,
                                  TG_PROJECT_ID_LEN, NULL, 0);

        /* it holds the password */
        p = ngx_http_taurus_guard_secret_alloc(r->pool, len);
        if (p == NULL) {
            goto failed;
        }

        (void) tg_iam_request_body(cred, iam->user ? NULL : project,
                                   TG_PROJECT_ID_LEN, p, len);
    }

    fetch = ngx_pcalloc(r->pool, sizeof(ngx_http_taurus_guard_iam_fetch_t));
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
    fetch->ctx = ctx;
    ngx_memcpy(fetch->project, project, TG_PROJECT_ID_LEN);

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

    cln->handler = ngx_http_taurus_guard_iam_abandoned;
    cln->data = fetch;

    ps->handler = ngx_http_taurus_guard_iam_fetched;
    ps->data = fetch;

    /* the answer without the service catalog is small enough for memory */
    ngx_str_set(&args, "nocatalog=true");

    flags = NGX_HTTP_SUBREQUEST_IN_MEMORY
            | (ctx == NULL ? NGX_HTTP_SUBREQUEST_BACKGROUND
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

    switch (iam->kind) {

    case NGX_HTTP_TG_FETCH_METADATA:
        sr->method = NGX_HTTP_GET;
        ngx_str_set(&sr->method_name, "GET");
        sr->headers_in.content_length_n = -1;
        break;

    case NGX_HTTP_TG_FETCH_SESSION:
        sr->method = NGX_HTTP_PUT;
        ngx_str_set(&sr->method_name, "PUT");
        sr->headers_in.content_length_n = 0;

        ngx_str_set(&name, "X-Metadata-Token-Ttl-Seconds");

        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%T", iam->ttl) - value.data;

        if (ngx_http_taurus_guard_fetch_header(sr, &name, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        break;

    default: /* NGX_HTTP_TG_FETCH_IAM */
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

        ngx_str_set(&name, "Content-Type");
        ngx_str_set(&value, "application/json;charset=utf8");

        if (ngx_http_taurus_guard_fetch_header(sr, &name, &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (base != NULL
        && ngx_http_taurus_guard_fetch_header(sr, &iam->base_header,
                                              &fetch->base)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    sctx->iam_fetch = 1;
    ngx_http_set_ctx(sr, sctx, ngx_http_taurus_guard_module);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: fetching from \"%V\"", &iam->uri);

    if (ctx != NULL) {
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
 * The answer is in memory: a good one goes to shared memory for every
 * worker; the request that waited for it is posted by nginx and goes
 * on.  A 401 to a fetch that carried a base token drops that token, so
 * the next fetch asks for a new one first.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_fetched(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_taurus_guard_iam_fetch_t *fetch = data;

    u_char                       *last;
    time_t                        expires;
    ngx_int_t                     rc2;
    ngx_str_t                     token;
    const char                   *problem;
    ngx_http_request_t           *r;
    ngx_http_taurus_guard_iam_t  *iam;
    ngx_http_taurus_guard_ctx_t  *ctx;
    u_char                        what[NGX_MAX_ERROR_STR];

    ctx = fetch->ctx;
    iam = fetch->iam;
    r = sr->parent;

    fetch->done = 1;

    last = ngx_http_taurus_guard_fetch_what(fetch, what, sizeof(what) / 2);

    switch (iam->kind) {

    case NGX_HTTP_TG_FETCH_METADATA:
        rc2 = ngx_http_taurus_guard_metadata_answer(sr, iam, &token,
                                                    &expires, &problem);
        break;

    case NGX_HTTP_TG_FETCH_SESSION:
        rc2 = ngx_http_taurus_guard_session_answer(sr, iam, &token,
                                                   &expires, &problem);
        break;

    default: /* NGX_HTTP_TG_FETCH_IAM */
        rc2 = ngx_http_taurus_guard_iam_answer(sr, iam, &token, &expires,
                                               &problem);
    }

    if (rc2 != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "taurus_guard: %*s not fetched: %s", last - what, what,
                      problem);

        ngx_http_taurus_guard_iam_end_fetch(iam, fetch->project, NULL, 0);

        if (fetch->base.len && sr->upstream != NULL
            && sr->upstream->headers_in.status_n == NGX_HTTP_UNAUTHORIZED)
        {
            ngx_http_taurus_guard_fetch_drop(iam->base,
                                             ngx_http_taurus_guard_base_key,
                                             &fetch->base);

            ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                          "taurus_guard: %*s: the %V it was asked with was"
                          " refused (401); a new one will be fetched",
                          last - what, what, &iam->base_header);

            if (ctx != NULL) {
                /* worth one more try, with a new base token */
                ctx->fetch_tried &= ~NGX_HTTP_TG_TRIED_SECRET;
            }
        }

        if (ctx != NULL) {
            ctx->iam_pending = 0;
        }

        return rc;
    }

    ngx_http_taurus_guard_iam_end_fetch(iam, fetch->project, &token,
                                        expires);

    ngx_log_error(NGX_LOG_NOTICE, sr->connection->log, 0,
                  "taurus_guard: %*s fetched, valid for %T s",
                  last - what, what, expires - ngx_time());

    if (ctx != NULL) {
        if (ngx_http_taurus_guard_secret_copy(r->pool, token.data, token.len,
                                              ctx->fetch_out)
            != NGX_OK)
        {
            ctx->fetch_out->len = 0;
        }

        ctx->iam_pending = 0;
    }

    /* copied where it is kept: not left in the answer's buffers */
    OPENSSL_cleanse(token.data, token.len);

    return rc;
}


/* what a fetch is for, in a log line: never a secret */

static u_char *
ngx_http_taurus_guard_fetch_what(ngx_http_taurus_guard_iam_fetch_t *fetch,
    u_char *buf, size_t len)
{
    u_char                       *last;
    ngx_http_taurus_guard_iam_t  *iam;

    iam = fetch->iam;
    last = buf + len;

    switch (iam->kind) {

    case NGX_HTTP_TG_FETCH_METADATA:
        return ngx_slprintf(buf, last, "metadata credentials");

    case NGX_HTTP_TG_FETCH_SESSION:
        return ngx_slprintf(buf, last, "metadata session token");

    default: /* NGX_HTTP_TG_FETCH_IAM */

        if (iam->user) {
            return ngx_slprintf(buf, last,
                                "IAM user token (to ask for agency tokens)");
        }

        if (iam->agency.len) {
            return ngx_slprintf(buf, last,
                                "agency \"%V/%V\" token for project \"%*s\"",
                                &iam->agency_domain, &iam->agency,
                                (size_t) TG_PROJECT_ID_LEN, fetch->project);
        }

        return ngx_slprintf(buf, last, "IAM token for project \"%*s\"",
                            (size_t) TG_PROJECT_ID_LEN, fetch->project);
    }
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


/*
 * The session token: the whole body of a 200, one printable word (a
 * trailing newline allowed), valid for the TTL asked.
 */

static ngx_int_t
ngx_http_taurus_guard_session_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_iam_t *iam, ngx_str_t *token, time_t *expires,
    const char **problem)
{
    size_t     i;
    ngx_str_t  body;

    if (sr->upstream == NULL
        || sr->upstream->headers_in.status_n != NGX_HTTP_OK)
    {
        *problem = "the metadata service did not answer 200";
        return NGX_ERROR;
    }

    if (ngx_http_taurus_guard_fetch_body(sr, &body, problem) != NGX_OK) {
        return NGX_ERROR;
    }

    while (body.len && (body.data[body.len - 1] == LF
                        || body.data[body.len - 1] == CR))
    {
        body.len--;
    }

    if (body.len == 0 || body.len > NGX_HTTP_TG_IAM_TOKEN_MAX) {
        *problem = "no session token in the answer";
        return NGX_ERROR;
    }

    for (i = 0; i < body.len; i++) {
        if (body.data[i] < 0x21 || body.data[i] > 0x7e) {
            *problem = "the session token is not one printable word";
            return NGX_ERROR;
        }
    }

    *token = body;
    *expires = ngx_time() + iam->ttl;

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

        /* nobody reads an in-memory answer after this */
        OPENSSL_cleanse(cl->buf->pos, cl->buf->last - cl->buf->pos);
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

    rc = ngx_http_taurus_guard_iam_take(r, ctx->fetch_src, ctx->fetch_key,
                                        ctx->fetch_out, &renew);

    if (rc == NGX_OK && renew) {
        ngx_http_taurus_guard_fetch_renew(r, ctx->fetch_src, ctx->fetch_key);
    }

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
    ngx_http_taurus_guard_fetch_drop(ctx->iam, ctx->project_id.data,
                                     &ctx->token);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "taurus_guard: the endpoint refused the IAM token of"
                  " project \"%V\" (401); a new one will be fetched",
                  &ctx->project_id);
}


/* a token refused: expired now, if it is still key's */

static void
ngx_http_taurus_guard_fetch_drop(ngx_http_taurus_guard_iam_t *iam,
    u_char *key, ngx_str_t *token)
{
    ngx_http_taurus_guard_iam_slot_t  *slot;

    ngx_shmtx_lock(&ngx_http_tg_shpool(iam)->mutex);

    slot = ngx_http_taurus_guard_iam_slot(iam, key, 0);

    if (slot != NULL && slot->token != NULL && slot->len == token->len
        && ngx_memcmp(slot->token, token->data, slot->len) == 0)
    {
        slot->expires = 0;
    }

    ngx_shmtx_unlock(&ngx_http_tg_shpool(iam)->mutex);
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
