
/*
 * taurus-guard: credentials, tokens, and the headers the upstream gets.
 *
 * Secrets (the SK, a security token, an IAM token) live in files that
 * only the worker user may read.  They are never logged, at any level:
 * messages name the file and the problem, never a value.
 */


#include <openssl/crypto.h>

#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_CRED_MAX  65536


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;
} ngx_http_taurus_guard_header_t;


static u_char *ngx_http_taurus_guard_read_private(ngx_conf_t *cf,
    ngx_str_t *path, size_t max, size_t *size);
static ngx_int_t ngx_http_taurus_guard_check_owner(ngx_cycle_t *cycle,
    ngx_str_t *path, u_char *conf_file, ngx_uint_t conf_line);
static void ngx_http_taurus_guard_wipe(void *data);
static ngx_int_t ngx_http_taurus_guard_token_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token);
static ngx_int_t ngx_http_taurus_guard_token_valid(u_char *p, size_t len);
static ngx_int_t ngx_http_taurus_guard_set_headers(ngx_http_request_t *r,
    ngx_http_taurus_guard_header_t *add, ngx_uint_t nadd);
static ngx_int_t ngx_http_taurus_guard_stripped(ngx_table_elt_t *h);


typedef struct {
    u_char                      *data;
    size_t                       size;
} ngx_http_taurus_guard_secret_t;


/* what a caller must never set: cloud credentials and what shapes them */

static ngx_str_t  ngx_http_taurus_guard_strip[] = {
    ngx_string("authorization"),
    ngx_string("x-auth-token"),
    ngx_string("x-security-token"),
    ngx_string("x-project-id"),
    ngx_string("content-type"),
    ngx_string(NGX_HTTP_TG_ID_HEADER),
    ngx_null_string
};


char *
ngx_http_taurus_guard_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    size_t                              line;
    tg_rc_t                             rc;
    ngx_str_t                          *value;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_taurus_guard_cred_t       *cred, **c;
    ngx_http_taurus_guard_secret_t     *secret;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (lcf->cred != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cred = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_cred_t));
    if (cred == NULL) {
        return NGX_CONF_ERROR;
    }

    cred->path = value[1];
    cred->conf_file = cf->conf_file->file.name.data;
    cred->conf_line = cf->conf_file->line;

    if (ngx_conf_full_name(cf->cycle, &cred->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool,
                               sizeof(ngx_http_taurus_guard_secret_t));
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    secret = cln->data;
    secret->data = NULL;
    cln->handler = ngx_http_taurus_guard_wipe;

    cred->data = ngx_http_taurus_guard_read_private(cf, &cred->path,
                                                    NGX_HTTP_TG_CRED_MAX,
                                                    &cred->size);
    if (cred->data == NULL) {
        return NGX_CONF_ERROR;
    }

    secret->data = cred->data;
    secret->size = cred->size;

    rc = tg_cred_parse(&cred->cred, cred->data, cred->size, &line);

    if (rc != TG_OK) {
        if (line) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: \"%V\", line %uz:"
                               " %s", &cred->path, line, tg_strerror(rc));
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: \"%V\": %s",
                               &cred->path, tg_strerror(rc));
        }

        return NGX_CONF_ERROR;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    c = ngx_array_push(&mcf->creds);
    if (c == NULL) {
        return NGX_CONF_ERROR;
    }

    *c = cred;
    lcf->cred = cred;

    return NGX_CONF_OK;
}


char *
ngx_http_taurus_guard_token(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    u_char                             *data;
    size_t                              size;
    ngx_str_t                          *value;
    ngx_http_taurus_guard_token_t      *token, **t;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (lcf->token != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len <= sizeof("file=") - 1
        || ngx_strncmp(value[1].data, "file=", sizeof("file=") - 1) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: \"file=PATH\" expected,"
                           " not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    token = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_token_t));
    if (token == NULL) {
        return NGX_CONF_ERROR;
    }

    token->path.data = value[1].data + sizeof("file=") - 1;
    token->path.len = value[1].len - (sizeof("file=") - 1);
    token->conf_file = cf->conf_file->file.name.data;
    token->conf_line = cf->conf_file->line;

    if (ngx_conf_full_name(cf->cycle, &token->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * The file must exist and be private now, so a mistake shows at
     * "nginx -t"; workers re-read it whenever the refresher rewrites it.
     */

    data = ngx_http_taurus_guard_read_private(cf, &token->path,
                                              NGX_HTTP_TG_TOKEN_MAX, &size);
    if (data == NULL) {
        return NGX_CONF_ERROR;
    }

    OPENSSL_cleanse(data, size);

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    t = ngx_array_push(&mcf->tokens);
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    *t = token;
    lcf->token = token;

    return NGX_CONF_OK;
}


/*
 * Reads a whole secret file at configuration time, refusing one that
 * is not a regular file or that group or others may access.
 */

static u_char *
ngx_http_taurus_guard_read_private(ngx_conf_t *cf, ngx_str_t *path,
    size_t max, size_t *size)
{
    u_char           *data;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open \"%V\"", path);
        return NULL;
    }

    data = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", path);
        goto done;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a regular file", path);
        goto done;
    }

    if (ngx_file_access(&fi) & 077) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is accessible by group or others"
                           " (mode %04uo): make it 0600, owned by the"
                           " nginx worker user", path,
                           (ngx_uint_t) ngx_file_access(&fi));
        goto done;
    }

    if (ngx_file_size(&fi) > (off_t) max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is larger than %uz bytes", path, max);
        goto done;
    }

    *size = (size_t) ngx_file_size(&fi);

    data = ngx_pnalloc(cf->pool, *size + 1);
    if (data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, data, *size);

    if (n == -1 || (size_t) n != *size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read \"%V\"", path);
        OPENSSL_cleanse(data, *size);
        data = NULL;
        goto done;
    }

    data[*size] = '\0';

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", path);
    }

    return data;
}


static void
ngx_http_taurus_guard_wipe(void *data)
{
    ngx_http_taurus_guard_secret_t  *secret = data;

    if (secret != NULL && secret->data != NULL) {
        OPENSSL_cleanse(secret->data, secret->size);
    }
}


/*
 * Called once the whole configuration is read, in "nginx -t" too: the
 * worker user is known only then.  A file that only its owner may read
 * must be owned by the user the workers run as.
 */

ngx_int_t
ngx_http_taurus_guard_check_owners(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_main_conf_t *mcf)
{
    ngx_uint_t                       i;
    ngx_http_taurus_guard_cred_t   **creds;
    ngx_http_taurus_guard_token_t  **tokens;

    creds = mcf->creds.elts;

    for (i = 0; i < mcf->creds.nelts; i++) {
        if (ngx_http_taurus_guard_check_owner(cycle, &creds[i]->path,
                                              creds[i]->conf_file,
                                              creds[i]->conf_line)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    tokens = mcf->tokens.elts;

    for (i = 0; i < mcf->tokens.nelts; i++) {
        if (ngx_http_taurus_guard_check_owner(cycle, &tokens[i]->path,
                                              tokens[i]->conf_file,
                                              tokens[i]->conf_line)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_check_owner(ngx_cycle_t *cycle, ngx_str_t *path,
    u_char *conf_file, ngx_uint_t conf_line)
{
    ngx_uid_t         worker;
    ngx_core_conf_t  *ccf;
    ngx_file_info_t   fi;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    worker = (geteuid() == 0) ? ccf->user : geteuid();

    if (worker == 0 || worker == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    if (ngx_file_info(path->data, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_file_info_n " \"%V\" failed in %s:%ui",
                      path, conf_file, conf_line);
        return NGX_ERROR;
    }

    if (fi.st_uid != worker) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "\"%V\" is owned by uid %ui, but nginx workers run as"
                      " \"%s\" (uid %ui) and could not read it: chown it to"
                      " the worker user, in %s:%ui",
                      path, (ngx_uint_t) fi.st_uid,
                      ccf->username ? ccf->username : "?",
                      (ngx_uint_t) worker, conf_file, conf_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The current token of a token file, re-read (at most once a second)
 * when the file changed.  A file that disappears or turns bad keeps the
 * last good token; with none, the request is refused.
 */

static ngx_int_t
ngx_http_taurus_guard_token_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token)
{
    u_char           *data, *p, *last;
    size_t            size;
    ssize_t           n;
    time_t            now;
    ngx_fd_t          fd;
    ngx_err_t         err;
    ngx_uint_t        level;
    const char       *problem;
    ngx_file_info_t   fi;

    now = ngx_time();

    if (token->value != NULL
        && now - token->checked < NGX_HTTP_TG_TOKEN_RECHECK)
    {
        return NGX_OK;
    }

    token->checked = now;

    data = NULL;
    size = 0;
    err = 0;
    problem = NULL;

    fd = ngx_open_file(token->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        problem = "cannot open";
        goto failed;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        problem = "cannot stat";
        goto failed;
    }

    if (token->value != NULL
        && ngx_file_mtime(&fi) == token->mtime
        && ngx_file_size(&fi) == token->fsize
        && ngx_file_uniq(&fi) == token->ino)
    {
        (void) ngx_close_file(fd);
        return NGX_OK;
    }

    if (ngx_file_access(&fi) & 077) {
        problem = "is accessible by group or others, so not used:";
        goto failed;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_TG_TOKEN_MAX) {
        problem = "is too large:";
        goto failed;
    }

    size = (size_t) ngx_file_size(&fi);

    data = ngx_alloc(size + 1, r->connection->log);
    if (data == NULL) {
        problem = "no memory for";
        goto failed;
    }

    n = ngx_read_fd(fd, data, size);

    if (n == -1 || (size_t) n != size) {
        err = ngx_errno;
        problem = "cannot read";
        goto failed;
    }

    /* one token; surrounding white space is the refresher's newline */

    p = data;
    last = data + size;

    while (p < last && (*p == ' ' || *p == '\t' || *p == CR || *p == LF)) {
        p++;
    }

    while (last > p
           && (last[-1] == ' ' || last[-1] == '\t' || last[-1] == CR
               || last[-1] == LF))
    {
        last--;
    }

    if (ngx_http_taurus_guard_token_valid(p, last - p) != NGX_OK) {
        problem = "holds no valid token (empty, or not one line of"
                  " printable characters):";
        goto failed;
    }

    (void) ngx_close_file(fd);

    if (token->value != NULL) {
        OPENSSL_cleanse(token->value, token->len);
        ngx_free(token->value);
    }

    ngx_memmove(data, p, last - p);
    OPENSSL_cleanse(data + (last - p), size - (last - p));

    token->value = data;
    token->len = last - p;
    token->mtime = ngx_file_mtime(&fi);
    token->fsize = ngx_file_size(&fi);
    token->ino = ngx_file_uniq(&fi);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: token file \"%V\" (re)loaded",
                   &token->path);

    return NGX_OK;

failed:

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    if (data != NULL) {
        OPENSSL_cleanse(data, size);
        ngx_free(data);
    }

    if (now - token->error_logged >= NGX_HTTP_TG_LOG_INTERVAL) {
        token->error_logged = now;
        level = (token->value != NULL) ? NGX_LOG_ERR : NGX_LOG_ALERT;
        ngx_log_error(level, r->connection->log, err,
                      "taurus_guard: token file %s \"%V\"%s", problem,
                      &token->path,
                      token->value ? ", the previous token is kept" : "");
    }

    return token->value ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_taurus_guard_token_valid(u_char *p, size_t len)
{
    size_t  i;

    if (len == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Signs the validated body and sets the headers the upstream receives.
 * On failure nothing is set and *reason says why, without a secret.
 */

ngx_int_t
ngx_http_taurus_guard_sign(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *reason)
{
    u_char                          *cr;
    size_t                           len, auth_len;
    tg_rc_t                          rc;
    ngx_int_t                        result;
    ngx_uint_t                       i, nadd, nsign;
    tg_header_t                      sign[4];
    tg_sign_request_t                req;
    ngx_http_taurus_guard_cred_t    *cred;
    ngx_http_taurus_guard_header_t   add[8];
    char                             date[TG_SDK_DATE_LEN + 1];
    char                             hash[TG_SHA256_HEX_LEN + 1];
    char                             auth[512];

    static ngx_str_t  content_type = ngx_string("application/json");

    nadd = 0;

    if (lcf->token != NULL) {
        if (ngx_http_taurus_guard_token_get(r, lcf->token) != NGX_OK) {
            ngx_str_set(reason, "no usable IAM token");
            return NGX_ERROR;
        }

        ngx_str_set(&add[nadd].name, "X-Auth-Token");
        add[nadd].value.data = lcf->token->value;
        add[nadd].value.len = lcf->token->len;
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

    cred = lcf->cred;

    if (cred == NULL) {
        return ngx_http_taurus_guard_set_headers(r, add, nadd);
    }

    /* the gateway's clock, never the caller's */

    if (tg_sdk_date(ngx_time(), date) != TG_OK
        || tg_sha256_hex(body->data, body->len, hash) != TG_OK)
    {
        ngx_str_set(reason, "could not sign: date or body hash failed");
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

    if (cred->cred.security_token.len) {
        sign[nsign].name.data = (u_char *) "X-Security-Token";
        sign[nsign].name.len = sizeof("X-Security-Token") - 1;
        sign[nsign].value = cred->cred.security_token;
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
    req.body_sha256_hex = hash;
    req.date.data = (u_char *) date;
    req.date.len = TG_SDK_DATE_LEN;

#if (NGX_DEBUG)
    /*
     * For comparing with an APIG.0301 answer, which shows the endpoint's
     * canonical request with "|" for newlines.  It holds no secret, but
     * with temporary credentials the security token, so it is not logged
     * then.
     */
    if (cred->cred.security_token.len == 0
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

    rc = tg_sign_authorization(&req, &cred->cred.ak, &cred->cred.sk,
                               auth, sizeof(auth), &auth_len);

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

    if (cred->cred.security_token.len) {
        ngx_str_set(&add[nadd].name, "X-Security-Token");
        add[nadd].value.data = (u_char *) cred->cred.security_token.data;
        add[nadd].value.len = cred->cred.security_token.len;
        nadd++;
    }

    ngx_str_set(&add[nadd].name, "Authorization");
    add[nadd].value.data = ngx_pnalloc(r->pool, auth_len);
    if (add[nadd].value.data == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(add[nadd].value.data, auth, auth_len);
    add[nadd].value.len = auth_len;
    nadd++;

    result = ngx_http_taurus_guard_set_headers(r, add, nadd);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: signed, body sha256 %s, x-sdk-date %s",
                   hash, date);

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

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_stripped(ngx_table_elt_t *h)
{
    ngx_str_t  *s;

    /* every X-Sdk-* header shapes the signature: none is the caller's */

    if (h->key.len >= sizeof("x-sdk-") - 1
        && ngx_strncasecmp(h->key.data, (u_char *) "x-sdk-",
                           sizeof("x-sdk-") - 1) == 0)
    {
        return 1;
    }

    for (s = ngx_http_taurus_guard_strip; s->len; s++) {
        if (h->key.len == s->len
            && ngx_strncasecmp(h->key.data, s->data, s->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
