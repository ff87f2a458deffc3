
/*
 * taurus-guard: secrets held in memory.
 *
 * A copy of a secret (a token, a security token, a password request
 * body, a fetched answer) lives in a pool and is wiped when the pool
 * goes, so what a request sends never points into a buffer that a
 * re-read or a fetch wipes and frees while the request waits.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>


typedef struct {
    u_char                      *data;
    size_t                       size;
} ngx_http_taurus_guard_secret_t;


static void ngx_http_taurus_guard_secret_wipe(void *data);


/* a copy of a secret in pool, wiped when the pool goes */

ngx_int_t
ngx_http_taurus_guard_secret_copy(ngx_pool_t *pool, const u_char *data,
    size_t len, ngx_str_t *out)
{
    u_char  *p;

    p = ngx_http_taurus_guard_secret_alloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, data, len);

    out->data = p;
    out->len = len;

    return NGX_OK;
}


/* len bytes (at least one) in pool, wiped when the pool goes */

u_char *
ngx_http_taurus_guard_secret_alloc(ngx_pool_t *pool, size_t len)
{
    u_char                          *p;
    ngx_pool_cleanup_t              *cln;
    ngx_http_taurus_guard_secret_t  *secret;

    cln = ngx_pool_cleanup_add(pool, sizeof(ngx_http_taurus_guard_secret_t));
    if (cln == NULL) {
        return NULL;
    }

    secret = cln->data;
    secret->data = NULL;
    cln->handler = ngx_http_taurus_guard_secret_wipe;

    p = ngx_pnalloc(pool, len ? len : 1);
    if (p == NULL) {
        return NULL;
    }

    secret->data = p;
    secret->size = len;

    return p;
}


static void
ngx_http_taurus_guard_secret_wipe(void *data)
{
    ngx_http_taurus_guard_secret_t  *secret = data;

    if (secret->data != NULL) {
        OPENSSL_cleanse(secret->data, secret->size);
    }
}
