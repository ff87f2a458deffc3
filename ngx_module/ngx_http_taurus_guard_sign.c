
/*
 * taurus-guard: the signature, and the headers the upstream gets.
 *
 * No secret is logged, at any level: the SK never leaves the core's
 * signer, and tokens are only copied into the upstream request.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;
} ngx_http_taurus_guard_header_t;


static ngx_int_t ngx_http_taurus_guard_set_headers(ngx_http_request_t *r,
    ngx_http_taurus_guard_header_t *add, ngx_uint_t nadd);
static ngx_int_t ngx_http_taurus_guard_stripped(ngx_table_elt_t *h);
static ngx_int_t ngx_http_taurus_guard_name_is(u_char *name, size_t len,
    u_char *lower);


/* what a caller must never set: cloud credentials and what shapes them */

static ngx_str_t  ngx_http_taurus_guard_strip[] = {
    ngx_string("authorization"),
    ngx_string("x-auth-token"),
    ngx_string("x-security-token"),
    ngx_string("x-project-id"),
    ngx_string("content-type"),
    ngx_string("x-taurus-guard-id"),

    /* they describe the body received, not the canonical one forwarded */
    ngx_string("content-encoding"),
    ngx_string("trailer"),
    ngx_string("http2-settings"),
    ngx_null_string
};


/*
 * Signs the validated body and sets the headers the upstream receives.
 * On failure nothing is set and *reason says why, without a secret.
 */

ngx_int_t
ngx_http_taurus_guard_sign(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_str_t *reason)
{
    u_char                          *cr;
    u_char                          *auth;
    size_t                           len, auth_len, auth_size;
    tg_rc_t                          rc;
    ngx_int_t                        result;
    ngx_uint_t                       i, nadd, nsign;
    tg_header_t                      sign[4];
    tg_sign_request_t                req;
    tg_cred_t                       *cred;
    ngx_str_t                       *token;
    ngx_http_taurus_guard_token_t   *file;
    ngx_http_taurus_guard_header_t   add[8];
    char                             date[TG_SDK_DATE_LEN + 1];

    static ngx_str_t  content_type = ngx_string("application/json");

    nadd = 0;

    if (lcf->token != NULL) {
        if (lcf->token->iam != NULL) {
            token = ctx->token.len ? &ctx->token : NULL;

        } else {
            file = ngx_http_taurus_guard_token_file(r, lcf->token);
            token = file ? ngx_http_taurus_guard_token_get(r, file) : NULL;
        }

        if (token == NULL) {
            ngx_str_set(reason, "no usable IAM token");
            return NGX_ERROR;
        }

        ngx_str_set(&add[nadd].name, "X-Auth-Token");

        if (ngx_http_taurus_guard_secret_copy(r->pool, token->data,
                                              token->len, &add[nadd].value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        nadd++;
    }

    ngx_str_set(&add[nadd].name, "Content-Type");
    add[nadd].value = content_type;
    nadd++;

    ngx_str_set(&add[nadd].name, "X-Project-Id");
    add[nadd].value = ctx->project_id;
    nadd++;

    ngx_str_set(&add[nadd].name, NGX_HTTP_TG_ID_HEADER);
    add[nadd].value.data = ctx->id;
    add[nadd].value.len = TG_AUDIT_ID_LEN;
    nadd++;

    if (lcf->cred == NULL) {
        return ngx_http_taurus_guard_set_headers(r, add, nadd);
    }

    cred = (lcf->cred->fetch != NULL) ? &ctx->cred
                                      : ngx_http_taurus_guard_cred_get(r,
                                                                 lcf->cred);

    /* the gateway's clock, never the caller's */

    if (tg_sdk_date(ngx_time(), date) != TG_OK) {
        ngx_str_set(reason, "could not sign: no date");
        return NGX_ERROR;
    }

    nsign = 0;

    sign[nsign].name.data = (u_char *) "Content-Type";
    sign[nsign].name.len = sizeof("Content-Type") - 1;
    sign[nsign].value.data = content_type.data;
    sign[nsign].value.len = content_type.len;
    nsign++;

    sign[nsign].name.data = (u_char *) "X-Project-Id";
    sign[nsign].name.len = sizeof("X-Project-Id") - 1;
    sign[nsign].value.data = ctx->project_id.data;
    sign[nsign].value.len = ctx->project_id.len;
    nsign++;

    sign[nsign].name.data = (u_char *) "X-Sdk-Date";
    sign[nsign].name.len = sizeof("X-Sdk-Date") - 1;
    sign[nsign].value.data = (u_char *) date;
    sign[nsign].value.len = TG_SDK_DATE_LEN;
    nsign++;

    if (cred->security_token.len) {
        sign[nsign].name.data = (u_char *) "X-Security-Token";
        sign[nsign].name.len = sizeof("X-Security-Token") - 1;
        sign[nsign].value = cred->security_token;
        nsign++;
    }

    req.method.data = (u_char *) "POST";
    req.method.len = sizeof("POST") - 1;
    req.path.data = r->unparsed_uri.data;
    req.path.len = r->unparsed_uri.len;
    req.query.data = NULL;
    req.query.len = 0;
    req.headers = sign;
    req.nheaders = nsign;
    /* the hash of the canonical body, the one forwarded and audited */
    req.body_sha256_hex = ctx->hash;
    req.date.data = (u_char *) date;
    req.date.len = TG_SDK_DATE_LEN;

#if (NGX_DEBUG)
    /*
     * For comparing with an APIG.0301 answer, which shows the endpoint's
     * canonical request with "|" for newlines.  It holds no secret, but
     * with temporary credentials the security token, so it is not logged
     * then.
     */
    if (cred->security_token.len == 0
        && (r->connection->log->log_level & NGX_LOG_DEBUG_HTTP)
        && tg_sign_canonical_request(&req, NULL, 0, &len)
           == TG_ERR_BUF_TOO_SMALL)
    {
        cr = ngx_pnalloc(r->pool, len);

        if (cr != NULL
            && tg_sign_canonical_request(&req, cr, len, &len) == TG_OK)
        {
            for (i = 0; i < len; i++) {
                if (cr[i] == LF) {
                    cr[i] = '|';
                }
            }

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "taurus_guard: canonical request \"%*s\"",
                           len, cr);
        }
    }
#else
    (void) cr;
    (void) len;
    (void) i;
#endif

    /* "SDK-HMAC-SHA256 Access=AK, SignedHeaders=..., Signature=hex" */

    auth_size = 128 + cred->ak.len + TG_SHA256_HEX_LEN;

    auth = ngx_pnalloc(r->pool, auth_size);
    if (auth == NULL) {
        return NGX_ERROR;
    }

    rc = tg_sign_authorization(&req, &cred->ak, &cred->sk,
                               (char *) auth, auth_size, &auth_len);

    if (rc != TG_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: signing failed: %s", tg_strerror(rc));
        ngx_str_set(reason, "could not sign the request");
        return NGX_ERROR;
    }

    ngx_str_set(&add[nadd].name, "X-Sdk-Date");
    add[nadd].value.data = ngx_pnalloc(r->pool, TG_SDK_DATE_LEN);
    if (add[nadd].value.data == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(add[nadd].value.data, date, TG_SDK_DATE_LEN);
    add[nadd].value.len = TG_SDK_DATE_LEN;
    nadd++;

    if (cred->security_token.len) {
        ngx_str_set(&add[nadd].name, "X-Security-Token");

        if (ngx_http_taurus_guard_secret_copy(r->pool,
                                              cred->security_token.data,
                                              cred->security_token.len,
                                              &add[nadd].value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        nadd++;
    }

    ngx_str_set(&add[nadd].name, "Authorization");
    add[nadd].value.data = auth;
    add[nadd].value.len = auth_len;
    nadd++;

    result = ngx_http_taurus_guard_set_headers(r, add, nadd);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: signed, body sha256 %s, x-sdk-date %s",
                   ctx->hash, date);

    return result;
}


/*
 * The proxy copies r->headers_in.headers: the list is rebuilt without
 * the caller's credential headers, in any case and however repeated,
 * and with the gateway's own appended.
 */

static ngx_int_t
ngx_http_taurus_guard_set_headers(ngx_http_request_t *r,
    ngx_http_taurus_guard_header_t *add, ngx_uint_t nadd)
{
    ngx_uint_t        i, n;
    ngx_list_t        headers;
    ngx_table_elt_t  *h, *header;
    ngx_list_part_t  *part;

    n = nadd;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&headers, r->pool, n, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    header = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            header = part->elts;
            i = 0;
        }

        if (ngx_http_taurus_guard_stripped(&header[i])) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "taurus_guard: client header \"%V\" removed",
                           &header[i].key);
            continue;
        }

        h = ngx_list_push(&headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = header[i];
    }

    r->headers_in.authorization = NULL;
    r->headers_in.content_type = NULL;

    for (i = 0; i < nadd; i++) {
        h = ngx_list_push(&headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->key = add[i].name;
        h->value = add[i].value;

        h->lowcase_key = ngx_pnalloc(r->pool, h->key.len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);

        if (h->key.len == sizeof("Content-Type") - 1
            && ngx_strncmp(h->lowcase_key, "content-type", h->key.len) == 0)
        {
            r->headers_in.content_type = h;
        }
    }

    r->headers_in.headers = headers;

    /* "last" pointed into this frame's copy of the list */
    if (r->headers_in.headers.last == &headers.part) {
        r->headers_in.headers.last = &r->headers_in.headers.part;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_stripped(ngx_table_elt_t *h)
{
    ngx_str_t  *s;

    /*
     * Every X-Sdk-* header shapes the signature: none is the caller's.
     * "_" counts as "-": with underscores_in_headers, or behind another
     * proxy, X_Auth_Token may well be read as X-Auth-Token.
     */

    if (h->key.len >= sizeof("x-sdk-") - 1
        && ngx_http_taurus_guard_name_is(h->key.data, sizeof("x-sdk-") - 1,
                                         (u_char *) "x-sdk-"))
    {
        return 1;
    }

    for (s = ngx_http_taurus_guard_strip; s->len; s++) {
        if (h->key.len == s->len
            && ngx_http_taurus_guard_name_is(h->key.data, s->len, s->data))
        {
            return 1;
        }
    }

    return 0;
}


/* header names compared without case, "_" and "-" alike */

static ngx_int_t
ngx_http_taurus_guard_name_is(u_char *name, size_t len, u_char *lower)
{
    u_char  c;
    size_t  i;

    for (i = 0; i < len; i++) {
        c = ngx_tolower(name[i]);

        if (c == '_') {
            c = '-';
        }

        if (c != lower[i]) {
            return 0;
        }
    }

    return 1;
}
