
/*
 * taurus-guard: the ECS metadata service's credentials, one kind of
 * secret the fetcher fetches, and its session tokens, another.
 *
 *     taurus_guard_credentials metadata=/_tg_meta
 *         [session=/_tg_session [session_ttl=6h]] [refresh=15m];
 *
 * The temporary AK/SK and security token are asked with
 * "GET /openstack/latest/securitykey" and kept as an SDK profile, for
 * every project under one key.  With session=, they are asked with a
 * session token in X-Metadata-Token, itself asked with
 * "PUT /meta-data/latest/api/token" and X-Metadata-Token-Ttl-Seconds, as
 * the SDKs do, and kept by the fetcher as the credentials' base.
 *
 * Neither the credentials nor the session token are ever logged; the
 * answers are wiped with the subrequests.
 */


#include "ngx_http_taurus_guard_fetch.h"
#include <openssl/crypto.h>


#define NGX_HTTP_TG_SESSION_TTL_MAX  21600   /* the service's limit, s */


static ngx_int_t ngx_http_taurus_guard_metadata_cred_request(
    ngx_http_request_t *r, ngx_http_taurus_guard_fetch_t *meta, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req);
static ngx_int_t ngx_http_taurus_guard_metadata_cred_answer(
    ngx_http_request_t *sr, ngx_http_taurus_guard_fetch_t *meta,
    ngx_str_t *profile, time_t *expires, const char **problem);
static u_char *ngx_http_taurus_guard_metadata_cred_what(
    ngx_http_taurus_guard_fetch_t *meta, u_char *key, u_char *buf,
    u_char *last);
static ngx_int_t ngx_http_taurus_guard_metadata_session_request(
    ngx_http_request_t *r, ngx_http_taurus_guard_fetch_t *session,
    u_char *key, ngx_http_taurus_guard_fetch_request_t *req);
static ngx_int_t ngx_http_taurus_guard_metadata_session_answer(
    ngx_http_request_t *sr, ngx_http_taurus_guard_fetch_t *session,
    ngx_str_t *token, time_t *expires, const char **problem);
static u_char *ngx_http_taurus_guard_metadata_session_what(
    ngx_http_taurus_guard_fetch_t *session, u_char *key, u_char *buf,
    u_char *last);


static ngx_http_taurus_guard_fetch_ops_t
    ngx_http_taurus_guard_metadata_cred_ops = {
    NULL,
    ngx_http_taurus_guard_metadata_cred_request,
    ngx_http_taurus_guard_metadata_cred_answer,
    ngx_http_taurus_guard_metadata_cred_what
};


static ngx_http_taurus_guard_fetch_ops_t
    ngx_http_taurus_guard_metadata_session_ops = {
    NULL,
    ngx_http_taurus_guard_metadata_session_request,
    ngx_http_taurus_guard_metadata_session_answer,
    ngx_http_taurus_guard_metadata_session_what
};


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
    time_t                          ttl, *t;
    ngx_str_t                       s, session;
    ngx_uint_t                      i;
    ngx_http_taurus_guard_fetch_t  *meta, *base;

    /*
     * What the zones are named for, beside the URI: the sources have no
     * file of their own, as an IAM password file names IAM's zones.
     */

    static ngx_str_t  meta_what = ngx_string("metadata");
    static ngx_str_t  session_what = ngx_string("metadata-session");

    meta = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_fetch_t));
    if (meta == NULL) {
        return NGX_CONF_ERROR;
    }

    meta->ops = &ngx_http_taurus_guard_metadata_cred_ops;
    meta->source = NGX_HTTP_TG_SOURCE_METADATA;
    meta->refresh = 900;

    ngx_str_null(&session);
    ttl = NGX_CONF_UNSET;

    for (i = 1; i < n; i++) {

        if (ngx_http_taurus_guard_param_once(cf, value, 1, i) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

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
            if (ngx_http_taurus_guard_fetch_refresh(cf,
                                                    "taurus_guard_credentials",
                                                    &value[i], &meta->refresh)
                != NGX_OK)
            {
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

    if (ngx_http_taurus_guard_fetch_zone(cf, meta, &meta_what) != NGX_OK) {
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

    base = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_fetch_t));
    t = ngx_palloc(cf->pool, sizeof(time_t));

    if (base == NULL || t == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ttl == NGX_CONF_UNSET) {
        ttl = NGX_HTTP_TG_SESSION_TTL_MAX;
    }

    /* the session token's only own setting: the TTL it is asked for */
    *t = ttl;

    base->ops = &ngx_http_taurus_guard_metadata_session_ops;
    base->source = NGX_HTTP_TG_SOURCE_SESSION;
    base->data = t;
    base->uri = session;
    base->refresh = ttl / 4;
    base->margin = ngx_min(30, ngx_max(ttl / 8, 1));

    if (ngx_http_taurus_guard_fetch_zone(cf, base, &session_what) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    meta->base = base;
    ngx_str_set(&meta->base_header, "X-Metadata-Token");

    return NGX_CONF_OK;
}


/* GET; the fetcher adds the session token, if any */

static ngx_int_t
ngx_http_taurus_guard_metadata_cred_request(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *meta, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req)
{
    req->method = NGX_HTTP_GET;
    ngx_str_set(&req->method_name, "GET");

    return NGX_OK;
}


/* PUT, with the TTL asked */

static ngx_int_t
ngx_http_taurus_guard_metadata_session_request(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *session, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req)
{
    req->method = NGX_HTTP_PUT;
    ngx_str_set(&req->method_name, "PUT");

    ngx_str_set(&req->header, "X-Metadata-Token-Ttl-Seconds");

    req->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (req->value.data == NULL) {
        return NGX_ERROR;
    }

    req->value.len = ngx_sprintf(req->value.data, "%T",
                                 *(time_t *) session->data)
                     - req->value.data;

    return NGX_OK;
}


/* the metadata service's answer, as an SDK profile for tg_cred_parse() */

static ngx_int_t
ngx_http_taurus_guard_metadata_cred_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_fetch_t *meta, ngx_str_t *profile, time_t *expires,
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

    if (t <= ngx_time() + meta->margin) {
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
ngx_http_taurus_guard_metadata_session_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_fetch_t *session, ngx_str_t *token,
    time_t *expires, const char **problem)
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

    if (body.len == 0 || body.len > NGX_HTTP_TG_FETCH_TOKEN_MAX) {
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
    *expires = ngx_time() + *(time_t *) session->data;

    return NGX_OK;
}


/* what a fetch is for, in a log line: never a secret */

static u_char *
ngx_http_taurus_guard_metadata_cred_what(ngx_http_taurus_guard_fetch_t *meta,
    u_char *key, u_char *buf, u_char *last)
{
    return ngx_slprintf(buf, last, "metadata credentials");
}


static u_char *
ngx_http_taurus_guard_metadata_session_what(
    ngx_http_taurus_guard_fetch_t *session, u_char *key, u_char *buf,
    u_char *last)
{
    return ngx_slprintf(buf, last, "metadata session token");
}
