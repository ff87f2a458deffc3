
/*
 * taurus-guard: the signature, and the headers the upstream gets.
 *
 * No secret is logged, at any level: the SK never leaves the core's
 * signer, and tokens are only copied into the upstream request.  The
 * secret headers (Authorization, X-Sdk-Date, X-Auth-Token,
 * X-Security-Token) are kept in the ctx and are in r->headers_in only
 * while the proxy builds its request: a mirror subrequest, a $http_*
 * variable in an access log or anything else that reads headers_in
 * later finds none of them.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>


/*
 * The headers the gateway sets itself, by index into
 * ngx_http_taurus_guard_names: their lowercase names and nginx's hashes
 * of them are made once, at configuration, not for every request.
 */

#define NGX_HTTP_TG_H_CONTENT_TYPE    0
#define NGX_HTTP_TG_H_PROJECT_ID      1
#define NGX_HTTP_TG_H_GUARD_ID        2
#define NGX_HTTP_TG_H_AUTH_TOKEN      3
#define NGX_HTTP_TG_H_SDK_DATE        4
#define NGX_HTTP_TG_H_SECURITY_TOKEN  5
#define NGX_HTTP_TG_H_AUTHORIZATION   6


typedef struct {
    ngx_str_t                    name;
    u_char                       lowcase[32];
    ngx_uint_t                   hash;
} ngx_http_taurus_guard_name_t;


typedef struct {
    ngx_uint_t                   name;      /* NGX_HTTP_TG_H_* */
    ngx_str_t                    value;
} ngx_http_taurus_guard_header_t;


static ngx_int_t ngx_http_taurus_guard_set_headers(ngx_http_request_t *r,
    ngx_http_taurus_guard_header_t *add, ngx_uint_t nadd);
static void ngx_http_taurus_guard_header(ngx_table_elt_t *h, ngx_uint_t name,
    ngx_str_t *value);
static ngx_int_t ngx_http_taurus_guard_secret(ngx_http_taurus_guard_ctx_t *ctx,
    ngx_uint_t name, ngx_str_t *value);
static ngx_int_t ngx_http_taurus_guard_passed(ngx_table_elt_t *h,
    ngx_array_t *pass);
static ngx_int_t ngx_http_taurus_guard_name_is(u_char *name, size_t len,
    u_char *lower);


static ngx_http_taurus_guard_name_t  ngx_http_taurus_guard_names[] = {
    [NGX_HTTP_TG_H_CONTENT_TYPE] =   { ngx_string("Content-Type"), "", 0 },
    [NGX_HTTP_TG_H_PROJECT_ID] =     { ngx_string("X-Project-Id"), "", 0 },
    [NGX_HTTP_TG_H_GUARD_ID] =       { ngx_string(NGX_HTTP_TG_ID_HEADER),
                                       "", 0 },
    [NGX_HTTP_TG_H_AUTH_TOKEN] =     { ngx_string("X-Auth-Token"), "", 0 },
    [NGX_HTTP_TG_H_SDK_DATE] =       { ngx_string("X-Sdk-Date"), "", 0 },
    [NGX_HTTP_TG_H_SECURITY_TOKEN] = { ngx_string("X-Security-Token"),
                                       "", 0 },
    [NGX_HTTP_TG_H_AUTHORIZATION] =  { ngx_string("Authorization"), "", 0 }
};


/*
 * Headers an operator may not pass through with taurus_guard_pass_header:
 * those that carry or shape cloud credentials, that the gateway or the
 * proxy sets, or that frame or reinterpret the request.  Every X-Sdk-*
 * too.
 */

static ngx_str_t  ngx_http_taurus_guard_never_passed[] = {
    ngx_string("authorization"),
    ngx_string("proxy-authorization"),
    ngx_string("x-auth-token"),
    ngx_string("x-security-token"),
    ngx_string("x-subject-token"),
    ngx_string("x-project-id"),
    ngx_string("x-domain-id"),
    ngx_string("x-taurus-guard-id"),
    ngx_string("content-type"),
    ngx_string("content-length"),
    ngx_string("content-encoding"),
    ngx_string("transfer-encoding"),
    ngx_string("trailer"),
    ngx_string("te"),
    ngx_string("host"),
    ngx_string("connection"),
    ngx_string("keep-alive"),
    ngx_string("upgrade"),
    ngx_string("expect"),
    ngx_string("http2-settings"),
    ngx_string("x-http-method-override"),
    ngx_string("x-http-method"),
    ngx_string("x-method-override"),
    ngx_string("x-forwarded-host"),
    ngx_string("forwarded"),        /* RFC 7239: host= and proto= too */
    ngx_string("x-original-url"),
    ngx_string("x-rewrite-url"),
    ngx_null_string
};


/* the values the API documents for X-Language */

static ngx_str_t  ngx_http_taurus_guard_languages[] = {
    ngx_string("en-us"),
    ngx_string("zh-cn"),
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
    ngx_str_t                       *token, value;
    tg_hmac_key_t                   *key;
    ngx_http_taurus_guard_token_t   *file;
    ngx_http_taurus_guard_header_t   add[3];
    char                             date[TG_SDK_DATE_LEN + 1];

    static ngx_str_t  content_type = ngx_string("application/json");

    nadd = 0;
    ctx->nsecrets = 0;

    /* the secrets in hand now, and the date: see sign_again() */
    ctx->signed_at = ngx_time();

    if (lcf->token != NULL) {
        if (lcf->token->fetch != NULL) {
            token = ctx->token.len ? &ctx->token : NULL;

        } else {
            file = ngx_http_taurus_guard_token_file(r, lcf->token);
            token = file ? ngx_http_taurus_guard_token_get(r, file) : NULL;
        }

        if (token == NULL) {
            ngx_str_set(reason, "no usable IAM token");
            return NGX_ERROR;
        }

        if (ngx_http_taurus_guard_secret_copy(r->pool, token->data,
                                              token->len, &value)
            != NGX_OK
            || ngx_http_taurus_guard_secret(ctx, NGX_HTTP_TG_H_AUTH_TOKEN,
                                            &value)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    add[nadd].name = NGX_HTTP_TG_H_CONTENT_TYPE;
    add[nadd].value = content_type;
    nadd++;

    add[nadd].name = NGX_HTTP_TG_H_PROJECT_ID;
    add[nadd].value = ctx->project_id;
    nadd++;

    add[nadd].name = NGX_HTTP_TG_H_GUARD_ID;
    add[nadd].value.data = ctx->id;
    add[nadd].value.len = TG_AUDIT_ID_LEN;
    nadd++;

    if (lcf->cred == NULL) {
        return ngx_http_taurus_guard_set_headers(r, add, nadd);
    }

    cred = (lcf->cred->fetch != NULL) ? &ctx->cred
                                      : ngx_http_taurus_guard_cred_get(r,
                                                                 lcf->cred);

    /*
     * after cred_get(): a new version of the file comes with its key;
     * fetched credentials have none
     */
    key = (lcf->cred->fetch == NULL && lcf->cred->keyed) ? &lcf->cred->key
                                                         : NULL;

    /* the gateway's clock, never the caller's */

    if (tg_sdk_date(ctx->signed_at, date) != TG_OK) {
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

    /*
     * "SDK-HMAC-SHA256 Access=AK, SignedHeaders=..., Signature=hex": 51
     * bytes of its own, and at most the four names above, 53 with their
     * ";" ("content-type;x-project-id;x-sdk-date;x-security-token"), so
     * 128 leaves room; a buffer too small fails the signature, never
     * cuts it.
     */

    auth_size = 128 + cred->ak.len + TG_SHA256_HEX_LEN;

    auth = ngx_pnalloc(r->pool, auth_size);
    if (auth == NULL) {
        return NGX_ERROR;
    }

    if (key != NULL) {
        rc = tg_sign_authorization_key(&req, &cred->ak, key, (char *) auth,
                                       auth_size, &auth_len);

    } else {
        rc = tg_sign_authorization(&req, &cred->ak, &cred->sk,
                                   (char *) auth, auth_size, &auth_len);
    }

    if (rc != TG_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: signing failed: %s", tg_strerror(rc));
        ngx_str_set(reason, "could not sign the request");
        return NGX_ERROR;
    }

    value.data = ngx_pnalloc(r->pool, TG_SDK_DATE_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(value.data, date, TG_SDK_DATE_LEN);
    value.len = TG_SDK_DATE_LEN;

    if (ngx_http_taurus_guard_secret(ctx, NGX_HTTP_TG_H_SDK_DATE, &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (cred->security_token.len) {
        if (ngx_http_taurus_guard_secret_copy(r->pool,
                                              cred->security_token.data,
                                              cred->security_token.len,
                                              &value)
            != NGX_OK
            || ngx_http_taurus_guard_secret(ctx,
                                            NGX_HTTP_TG_H_SECURITY_TOKEN,
                                            &value)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    value.data = auth;
    value.len = auth_len;

    if (ngx_http_taurus_guard_secret(ctx, NGX_HTTP_TG_H_AUTHORIZATION, &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    result = ngx_http_taurus_guard_set_headers(r, add, nadd);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: signed, body sha256 %s, x-sdk-date %s",
                   ctx->hash, date);

    return result;
}


/*
 * A batch is signed before its allow record is flushed, so that a secret
 * it cannot have refuses it with one record.  The flush may take up to
 * the audit log's timeout=, longer than a fetched token's margin (30 s
 * at most) and, set so, than the 15 minutes the API takes an X-Sdk-Date
 * for.  A batch whose flush took a fetched secret it holds to within
 * its margin of its end (where a request would no longer take it), or
 * its signature to NGX_HTTP_TG_SIGN_AGE seconds, is signed again before
 * it leaves, with the secrets in effect now: files as they are, fetched
 * secrets as shared memory has them (a renewal may have replaced one
 * that came near its end meanwhile), each still past its margin.
 * NGX_ERROR: nothing may be sent, *reason says why.
 */

ngx_int_t
ngx_http_taurus_guard_sign_again(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason)
{
    size_t                             line;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    /* the key of a secret every project shares, as the handler asks */
    static u_char  shared_key[TG_PROJECT_ID_LEN];

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (lcf->cred != NULL && lcf->cred->fetch != NULL) {
        if (ngx_http_taurus_guard_fetch_now(r, lcf->cred->fetch, shared_key,
                                            &ctx->cred_text)
            != NGX_OK
            || tg_cred_parse(&ctx->cred, ctx->cred_text.data,
                             ctx->cred_text.len, &line)
               != TG_OK)
        {
            ngx_str_set(reason, "no usable credentials after the audit"
                                " flush");
            return NGX_ERROR;
        }
    }

    if (lcf->token != NULL && lcf->token->fetch != NULL
        && ngx_http_taurus_guard_fetch_now(r, lcf->token->fetch,
                                           ctx->project_id.data, &ctx->token)
           != NGX_OK)
    {
        ngx_str_set(reason, "no usable IAM token after the audit flush");
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: signed again after %T s",
                   ngx_time() - ctx->signed_at);

    return ngx_http_taurus_guard_sign(r, lcf, ctx, reason);
}


/*
 * The proxy copies r->headers_in.headers: the list is rebuilt with only
 * the caller's headers the API documents or the operator passes, and
 * with the gateway's own appended.  What nginx's proxy sets itself
 * (Host, Content-Length, Connection) it sets from its own values.
 */

static ngx_int_t
ngx_http_taurus_guard_set_headers(ngx_http_request_t *r,
    ngx_http_taurus_guard_header_t *add, ngx_uint_t nadd)
{
    ngx_uint_t                         i, n;
    ngx_list_t                         headers;
    ngx_table_elt_t                   *h, *header;
    ngx_list_part_t                   *part;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

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

        if (!ngx_http_taurus_guard_passed(&header[i], lcf->pass_headers)) {
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

    /*
     * Of the shortcuts into the list, the two that name headers the
     * gateway replaces are reset: the caller's Authorization is gone (and
     * nothing points at the gateway's), Content-Type points at the
     * gateway's.  The others (cookie, x_forwarded_for, ...) keep pointing
     * at the caller's entries, which only variables and the operator's
     * own proxy_set_header lines read: no secret of the gateway's is
     * among them.
     */

    r->headers_in.authorization = NULL;
    r->headers_in.content_type = NULL;

    for (i = 0; i < nadd; i++) {
        h = ngx_list_push(&headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        ngx_http_taurus_guard_header(h, add[i].name, &add[i].value);

        if (add[i].name == NGX_HTTP_TG_H_CONTENT_TYPE) {
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


/* the lowercase names and hashes of ngx_http_taurus_guard_names */

ngx_int_t
ngx_http_taurus_guard_sign_init(void)
{
    ngx_uint_t                     i;
    ngx_http_taurus_guard_name_t  *n;

    for (i = 0; i < sizeof(ngx_http_taurus_guard_names)
                    / sizeof(ngx_http_taurus_guard_name_t); i++)
    {
        n = &ngx_http_taurus_guard_names[i];

        if (n->name.len >= sizeof(n->lowcase)) {
            return NGX_ERROR;
        }

        n->hash = ngx_hash_strlow(n->lowcase, n->name.data, n->name.len);
    }

    return NGX_OK;
}


static void
ngx_http_taurus_guard_header(ngx_table_elt_t *h, ngx_uint_t name,
    ngx_str_t *value)
{
    ngx_http_taurus_guard_name_t  *n;

    n = &ngx_http_taurus_guard_names[name];

    h->key = n->name;
    h->lowcase_key = n->lowcase;
    h->hash = n->hash;
    h->value = *value;
}


/* a header for the upstream's request only, kept in the ctx until then */

static ngx_int_t
ngx_http_taurus_guard_secret(ngx_http_taurus_guard_ctx_t *ctx,
    ngx_uint_t name, ngx_str_t *value)
{
    if (ctx->nsecrets == NGX_HTTP_TG_SECRETS) {
        return NGX_ERROR;
    }

    ngx_http_taurus_guard_header(&ctx->secrets[ctx->nsecrets], name, value);

    ctx->nsecrets++;

    return NGX_OK;
}


/*
 * Puts the secret headers into r->headers_in, in a list of their own:
 * the one they are added to may be shared with a subrequest already
 * (sr->headers_in is a copy of the struct, its parts are not copied).
 */

ngx_int_t
ngx_http_taurus_guard_secrets_push(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_uint_t        i, n;
    ngx_list_t        headers;
    ngx_table_elt_t  *h, *header;
    ngx_list_part_t  *part;

    n = ctx->nsecrets;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&headers, r->pool, n ? n : 1, sizeof(ngx_table_elt_t))
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

        h = ngx_list_push(&headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = header[i];
    }

    for (i = 0; i < ctx->nsecrets; i++) {
        h = ngx_list_push(&headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ctx->secrets[i];
    }

    ctx->headers = r->headers_in.headers;
    r->headers_in.headers = headers;

    /* "last" pointed into this frame's copy of the list */
    if (r->headers_in.headers.last == &headers.part) {
        r->headers_in.headers.last = &r->headers_in.headers.part;
    }

    return NGX_OK;
}


/*
 * Takes the secret headers back: the list without them again, the
 * values of their $http_* variables forgotten, the copies wiped.  The
 * upstream's request buffer keeps what it needs for its retries.
 */

void
ngx_http_taurus_guard_secrets_pop(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx)
{
    ngx_uint_t                          i;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (ctx->headers.pool != NULL) {
        r->headers_in.headers = ctx->headers;
        ctx->headers.pool = NULL;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    ngx_http_taurus_guard_forget_vars(r, mcf->secret_vars, NGX_HTTP_TG_SECRETS);

    for (i = 0; i < ctx->nsecrets; i++) {
        OPENSSL_cleanse(ctx->secrets[i].value.data,
                        ctx->secrets[i].value.len);
        ctx->secrets[i].value.len = 0;
    }

    ctx->nsecrets = 0;
}


/*
 * An allow-list: X-Language with one of the API's values, and the names
 * of taurus_guard_pass_header.  Everything else the caller sent, in any
 * spelling, stays behind.
 */

static ngx_int_t
ngx_http_taurus_guard_passed(ngx_table_elt_t *h, ngx_array_t *pass)
{
    ngx_str_t   *s;
    ngx_uint_t   i;

    if (h->key.len == sizeof("x-language") - 1
        && ngx_http_taurus_guard_name_is(h->key.data, h->key.len,
                                         (u_char *) "x-language"))
    {
        for (s = ngx_http_taurus_guard_languages; s->len; s++) {
            if (h->value.len == s->len
                && ngx_strncasecmp(h->value.data, s->data, s->len) == 0)
            {
                return 1;
            }
        }

        return 0;
    }

    if (pass == NULL) {
        return 0;
    }

    s = pass->elts;

    for (i = 0; i < pass->nelts; i++) {
        if (h->key.len == s[i].len
            && ngx_http_taurus_guard_name_is(h->key.data, s[i].len,
                                             s[i].data))
        {
            return 1;
        }
    }

    return 0;
}


/* "taurus_guard_pass_header NAME" */

char *
ngx_http_taurus_guard_pass_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    u_char      c;
    ngx_str_t  *value, *name, *s;
    ngx_uint_t  i;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a header name";
    }

    for (i = 0; i < value[1].len; i++) {
        c = value[1].data[i];

        /*
         * Letters, digits, "-" and "_" only: fewer than an RFC 9110
         * token allows ("_" is taken for "-" when names are compared).
         */

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len >= sizeof("x-sdk-") - 1
        && ngx_http_taurus_guard_name_is(value[1].data, sizeof("x-sdk-") - 1,
                                         (u_char *) "x-sdk-"))
    {
        goto never;
    }

    for (s = ngx_http_taurus_guard_never_passed; s->len; s++) {
        if (value[1].len == s->len
            && ngx_http_taurus_guard_name_is(value[1].data, s->len, s->data))
        {
            goto never;
        }
    }

    if (lcf->pass_headers == NGX_CONF_UNSET_PTR) {
        lcf->pass_headers = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (lcf->pass_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    name = ngx_array_push(lcf->pass_headers);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    /* lowercase, "-" for "_": the form ngx_http_taurus_guard_name_is() takes */

    name->len = value[1].len;
    name->data = ngx_pnalloc(cf->pool, name->len);
    if (name->data == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < name->len; i++) {
        c = ngx_tolower(value[1].data[i]);
        name->data[i] = (c == '_') ? '-' : c;
    }

    return NGX_CONF_OK;

never:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "header \"%V\" carries or shapes credentials, or"
                       " frames the request: it is the gateway's to set,"
                       " never passed through", &value[1]);
    return NGX_CONF_ERROR;
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
