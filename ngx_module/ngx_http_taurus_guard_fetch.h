
/*
 * taurus-guard: what the fetcher shares with the kinds of secret it
 * fetches, and nothing else includes: a source of fetched secrets, and
 * the table of operations each kind gives it (ngx_http_taurus_guard_iam.c
 * for IAM tokens, ngx_http_taurus_guard_metadata.c for the metadata
 * service's credentials and session tokens).
 */


#ifndef _NGX_HTTP_TAURUS_GUARD_FETCH_H_INCLUDED_
#define _NGX_HTTP_TAURUS_GUARD_FETCH_H_INCLUDED_


#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_FETCH_TOKEN_MAX  (64 * 1024)
#define NGX_HTTP_TG_IDENTITY_LEN     TG_SHA256_LEN


/* the request a kind asks the fetcher to send */
typedef struct {
    ngx_uint_t                   method;    /* NGX_HTTP_GET, ... */
    ngx_str_t                    method_name;
    ngx_str_t                    args;
    ngx_str_t                    body;      /* in r->pool, as long as r */
    ngx_str_t                    content_type;
    ngx_str_t                    header;    /* one more header, or none */
    ngx_str_t                    value;
} ngx_http_taurus_guard_fetch_request_t;


typedef struct {
    /*
     * The digest of the credentials a source's secrets are asked with
     * now (the IAM password file as parsed), having taken a new version
     * of their secret file if there is one; never the credentials.  A
     * secret asked with other credentials is not used.  NULL for a kind
     * whose credentials cannot change (its digest is all zeros).
     * request() follows at once, with the same version.
     */
    ngx_int_t                  (*identity)(ngx_log_t *log,
                                   ngx_http_taurus_guard_fetch_t *src,
                                   u_char *md);

    /* the request for key's secret */
    ngx_int_t                  (*request)(ngx_http_request_t *r,
                                   ngx_http_taurus_guard_fetch_t *src,
                                   u_char *key,
                                   ngx_http_taurus_guard_fetch_request_t *req);

    /*
     * The secret in the answer (in sr's memory, may be wiped after) and
     * when it expires, wall time; or NGX_ERROR and why not, never a
     * secret.
     */
    ngx_int_t                  (*answer)(ngx_http_request_t *sr,
                                   ngx_http_taurus_guard_fetch_t *src,
                                   ngx_str_t *secret, time_t *expires,
                                   const char **problem);

    /* what key's secret is, for a log line: never a secret */
    u_char                    *(*what)(ngx_http_taurus_guard_fetch_t *src,
                                   u_char *key, u_char *buf, u_char *last);
} ngx_http_taurus_guard_fetch_ops_t;


/*
 * The shortest refresh= a directive takes.  A secret is renewed beside
 * the requests once less than refresh of its life is left, and used only
 * while more than its margin (at least 1 s) is; ngx_time() counts whole
 * seconds, so with 1 s or 2 s the two never meet: no renewal would run
 * before the secret is too close to its end to be used.
 */
#define NGX_HTTP_TG_REFRESH_MIN  3


/*
 * A secret the gateway fetches itself through a subrequest to an
 * internal location.  Some are asked with another fetched secret, their
 * base (an agency token with the user's own token, the metadata
 * credentials with a session token), kept under one key.
 */
struct ngx_http_taurus_guard_fetch_s {
    ngx_http_taurus_guard_fetch_ops_t  *ops;
    void                        *data;      /* the kind's own */
    ngx_uint_t                   source;    /* NGX_HTTP_TG_SOURCE_* */
    ngx_str_t                    uri;       /* the internal location */
    time_t                       refresh;
    time_t                       margin;    /* too close to the end */
    ngx_http_taurus_guard_fetch_t  *base;   /* asked with its secret */
    ngx_str_t                    base_header;    /* which carries it */
    ngx_shm_zone_t              *zone;      /* shared by every user */
};


ngx_int_t ngx_http_taurus_guard_fetch_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_fetch_t *src, ngx_str_t *what);
ngx_int_t ngx_http_taurus_guard_fetch_body(ngx_http_request_t *sr,
    ngx_str_t *body, const char **problem);


#endif /* _NGX_HTTP_TAURUS_GUARD_FETCH_H_INCLUDED_ */
