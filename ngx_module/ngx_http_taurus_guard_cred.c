
/*
 * taurus-guard: where the secrets come from.
 *
 * The AK/SK come from an SDK profile file or from the SDKs' environment
 * variables; an IAM token from a file an external refresher rewrites.
 * Files must be private to the worker user.  Each worker re-reads a file
 * when it changes (it looks at most once a second), without a reload; a
 * file that turns bad keeps the last good secret, and says so once a
 * minute, naming the file and the problem, never a value.  A replaced
 * secret is wiped.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>


#define NGX_HTTP_TG_CRED_MAX  65536


typedef struct {
    u_char                      *data;
    size_t                       size;
} ngx_http_taurus_guard_secret_t;


static char *ngx_http_taurus_guard_credentials_env(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred);
static ngx_int_t ngx_http_taurus_guard_check_owner(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_watch_t *watch);
static char *ngx_http_taurus_guard_token_per_project(ngx_conf_t *cf,
    ngx_http_taurus_guard_loc_conf_t *lcf,
    ngx_http_taurus_guard_token_t *token);
static void ngx_http_taurus_guard_wipe(void *data);
static ngx_int_t ngx_http_taurus_guard_token_parse(u_char *data, size_t size,
    size_t *len);


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

    cln = ngx_pool_cleanup_add(cf->pool,
                               sizeof(ngx_http_taurus_guard_secret_t));
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    secret = cln->data;
    secret->data = NULL;
    cln->handler = ngx_http_taurus_guard_wipe;

    if (ngx_strncmp(value[1].data, "metadata=", 9) == 0) {
        if (ngx_http_taurus_guard_metadata_conf(cf, cred, value,
                                                cf->args->nelts)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        lcf->cred = cred;
        return NGX_CONF_OK;
    }

    if (cf->args->nelts != 2) {
        return "takes one parameter unless it is \"metadata=\"";
    }

    if (ngx_strcmp(value[1].data, "env") == 0) {
        if (ngx_http_taurus_guard_credentials_env(cf, cred) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }

    } else {
        cred->watch.path = value[1];
        cred->watch.conf_file = cf->conf_file->file.name.data;
        cred->watch.conf_line = cf->conf_file->line;

        if (ngx_conf_full_name(cf->cycle, &cred->watch.path, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        cred->data = ngx_http_taurus_guard_read_private(cf, &cred->watch,
                                                        NGX_HTTP_TG_CRED_MAX,
                                                        &cred->size);
        if (cred->data == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    secret->data = cred->data;
    secret->size = cred->size;

    rc = tg_cred_parse(&cred->cred, cred->data, cred->size, &line);

    if (rc != TG_OK) {
        if (cred->watch.path.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: environment: %s",
                               tg_strerror(rc));
        } else if (line) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: \"%V\", line %uz:"
                               " %s", &cred->watch.path, line,
                               tg_strerror(rc));
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: \"%V\": %s",
                               &cred->watch.path, tg_strerror(rc));
        }

        return NGX_CONF_ERROR;
    }

    if (cred->watch.path.len) {
        mcf = ngx_http_conf_get_module_main_conf(cf,
                                                 ngx_http_taurus_guard_module);

        c = ngx_array_push(&mcf->creds);
        if (c == NULL) {
            return NGX_CONF_ERROR;
        }

        *c = cred;
    }

    lcf->cred = cred;

    return NGX_CONF_OK;
}


/*
 * "taurus_guard_credentials env": HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK
 * and optionally HUAWEICLOUD_SDK_SECURITY_TOKEN, as the SDKs read them.
 * The master reads its environment when the configuration is loaded;
 * they are put in the profile format so one parser checks both sources.
 */

static char *
ngx_http_taurus_guard_credentials_env(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred)
{
    u_char      *p;
    size_t       len;
    const char  *ak, *sk, *token;

    ak = getenv("HUAWEICLOUD_SDK_AK");
    sk = getenv("HUAWEICLOUD_SDK_SK");
    token = getenv("HUAWEICLOUD_SDK_SECURITY_TOKEN");

    if (ak == NULL || sk == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials env: HUAWEICLOUD_SDK_AK"
                           " and HUAWEICLOUD_SDK_SK must be set in nginx's"
                           " environment");
        return NGX_CONF_ERROR;
    }

    len = sizeof("[basic]\nak=\nsk=\nsecurity_token=\n") - 1
          + ngx_strlen(ak) + ngx_strlen(sk)
          + (token ? ngx_strlen(token) : 0);

    if (len > NGX_HTTP_TG_CRED_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials env: values too long");
        return NGX_CONF_ERROR;
    }

    cred->data = ngx_pnalloc(cf->pool, len);
    if (cred->data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_sprintf(cred->data, "[basic]\nak=%s\nsk=%s\n", ak, sk);

    if (token != NULL && *token != '\0') {
        p = ngx_sprintf(p, "security_token=%s\n", token);
    }

    cred->size = p - cred->data;

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

    token = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_token_t));
    if (token == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_strncmp(value[1].data, "iam=", sizeof("iam=") - 1) == 0) {
        if (ngx_http_taurus_guard_iam_conf(cf, token, value, cf->args->nelts)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        goto done;
    }

    if (value[1].len <= sizeof("file=") - 1
        || ngx_strncmp(value[1].data, "file=", sizeof("file=") - 1) != 0
        || cf->args->nelts != 2)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: \"file=PATH\" or"
                           " \"iam=URI password_file=PATH\" expected,"
                           " not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    token->watch.path.data = value[1].data + sizeof("file=") - 1;
    token->watch.path.len = value[1].len - (sizeof("file=") - 1);
    token->watch.conf_file = cf->conf_file->file.name.data;
    token->watch.conf_line = cf->conf_file->line;

    if (ngx_http_script_variables_count(&token->watch.path)) {
        /* one file per project, e.g. .../tokens/$taurus_guard_project */
        return ngx_http_taurus_guard_token_per_project(cf, lcf, token);
    }

    if (ngx_conf_full_name(cf->cycle, &token->watch.path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * The file must exist and be private now, so a mistake shows at
     * "nginx -t"; workers read it on their first request and whenever
     * the refresher rewrites it.
     */

    data = ngx_http_taurus_guard_read_private(cf, &token->watch,
                                              NGX_HTTP_TG_TOKEN_MAX, &size);
    if (data == NULL) {
        return NGX_CONF_ERROR;
    }

    OPENSSL_cleanse(data, size);
    token->watch.checked = 0;
    token->watch.mtime = 0;

done:

    /* both kinds of file are checked for their owner at init_module */

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
 * A token file path with variables: evaluated for each request (a path
 * without the project in it is refused, since a token serves one
 * project); the files are found and checked when requests need them.
 */

static char *
ngx_http_taurus_guard_token_per_project(ngx_conf_t *cf,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_token_t *token)
{
    ngx_http_compile_complex_value_t   ccv;

    if (ngx_strstrn(token->watch.path.data, "$taurus_guard_project",
                    sizeof("$taurus_guard_project") - 2) == NULL
        && ngx_strstrn(token->watch.path.data, "${taurus_guard_project}",
                       sizeof("${taurus_guard_project}") - 2) == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: a path with variables must"
                           " hold $taurus_guard_project, so that each"
                           " project has its own token");
        return NGX_CONF_ERROR;
    }

    token->path_cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (token->path_cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &token->watch.path;
    ccv.complex_value = token->path_cv;
    ccv.conf_prefix = 1;
    ccv.zero = 1;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&token->files, cf->pool, 4,
                       sizeof(ngx_http_taurus_guard_token_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    lcf->token = token;

    return NGX_CONF_OK;
}


/*
 * The token file of this request's project: each worker keeps the state
 * of every file it has read, a handful of projects.
 */

ngx_http_taurus_guard_token_t *
ngx_http_taurus_guard_token_file(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token)
{
    ngx_str_t                       path;
    ngx_uint_t                      i;
    ngx_http_taurus_guard_token_t  *t;

    if (token->path_cv == NULL) {
        return token;
    }

    if (ngx_http_complex_value(r, token->path_cv, &path) != NGX_OK) {
        return NULL;
    }

    t = token->files.elts;

    for (i = 0; i < token->files.nelts; i++) {
        if (t[i].watch.path.len == path.len - 1
            && ngx_strncmp(t[i].watch.path.data, path.data, path.len - 1)
               == 0)
        {
            return &t[i];
        }
    }

    if (token->files.nelts >= NGX_HTTP_TG_IAM_SLOTS) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "taurus_guard: more than %d token files",
                      NGX_HTTP_TG_IAM_SLOTS);
        return NULL;
    }

    /* a per-worker list: the worker's pool lives as long as it does */

    t = ngx_array_push(&token->files);
    if (t == NULL) {
        return NULL;
    }

    ngx_memzero(t, sizeof(ngx_http_taurus_guard_token_t));

    t->watch.path.data = ngx_pstrdup(ngx_cycle->pool, &path);
    if (t->watch.path.data == NULL) {
        token->files.nelts--;
        return NULL;
    }

    /* without the NUL ngx_http_complex_value() counts for conf_prefix */
    t->watch.path.len = path.len - 1;
    t->watch.conf_file = token->watch.conf_file;
    t->watch.conf_line = token->watch.conf_line;

    return t;
}


/*
 * Reads a whole secret file at configuration time, refusing one that
 * is not a regular file or that group or others may access.
 */

u_char *
ngx_http_taurus_guard_read_private(ngx_conf_t *cf,
    ngx_http_taurus_guard_watch_t *watch, size_t max, size_t *size)
{
    u_char           *data;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    fd = ngx_open_file(watch->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open \"%V\"", &watch->path);
        return NULL;
    }

    data = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", &watch->path);
        goto done;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a regular file", &watch->path);
        goto done;
    }

    if (ngx_file_access(&fi) & 077) {
        /* nginx's formats have no octal */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is accessible by group or others"
                           " (mode 0%ui%ui%ui): make it 0600, owned by the"
                           " nginx worker user", &watch->path,
                           (ngx_uint_t) (ngx_file_access(&fi) >> 6) & 7,
                           (ngx_uint_t) (ngx_file_access(&fi) >> 3) & 7,
                           (ngx_uint_t) ngx_file_access(&fi) & 7);
        goto done;
    }

    if (ngx_file_size(&fi) > (off_t) max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is larger than %uz bytes", &watch->path,
                           max);
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
                           "cannot read \"%V\"", &watch->path);
        OPENSSL_cleanse(data, *size);
        data = NULL;
        goto done;
    }

    data[*size] = '\0';

    watch->mtime = ngx_file_mtime(&fi);
    watch->fsize = ngx_file_size(&fi);
    watch->ino = ngx_file_uniq(&fi);

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &watch->path);
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
        if (ngx_http_taurus_guard_check_owner(cycle, &creds[i]->watch)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    tokens = mcf->tokens.elts;

    for (i = 0; i < mcf->tokens.nelts; i++) {
        if (ngx_http_taurus_guard_check_owner(cycle, &tokens[i]->watch)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_check_owner(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_watch_t *watch)
{
    ngx_uid_t         worker;
    ngx_core_conf_t  *ccf;
    ngx_file_info_t   fi;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    worker = (geteuid() == 0) ? ccf->user : geteuid();

    if (worker == 0 || worker == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    if (ngx_file_info(watch->path.data, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_file_info_n " \"%V\" failed in %s:%ui",
                      &watch->path, watch->conf_file, watch->conf_line);
        return NGX_ERROR;
    }

    if (fi.st_uid != worker) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "\"%V\" is owned by uid %ui, but nginx workers run as"
                      " \"%s\" (uid %ui) and could not read it: chown it to"
                      " the worker user, in %s:%ui",
                      &watch->path, (ngx_uint_t) fi.st_uid,
                      ccf->username ? ccf->username : "?",
                      (ngx_uint_t) worker, watch->conf_file,
                      watch->conf_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The current AK/SK.  A credentials file is looked at again at most once
 * a second; a new version that does not parse keeps the previous one.
 */

tg_cred_t *
ngx_http_taurus_guard_cred_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_cred_t *cred)
{
    u_char     *data;
    size_t      size, line;
    tg_rc_t     rc;
    ngx_int_t   n;
    tg_cred_t   parsed;
    ngx_str_t   problem;
    u_char      msg[128];

    if (cred->watch.path.len == 0) {
        return &cred->cred;
    }

    n = ngx_http_taurus_guard_watch(r->connection->log, &cred->watch,
                                    NGX_HTTP_TG_CRED_MAX, &data, &size,
                                    &problem);

    if (n == NGX_DECLINED) {
        return &cred->cred;
    }

    if (n == NGX_ERROR) {
        ngx_http_taurus_guard_watch_error(r->connection->log, &cred->watch,
                                          NGX_LOG_ALERT, ngx_errno, &problem,
                                          "the previous credentials are"
                                          " kept");
        return &cred->cred;
    }

    rc = tg_cred_parse(&parsed, data, size, &line);

    if (rc != TG_OK) {
        OPENSSL_cleanse(data, size);
        ngx_free(data);

        problem.data = msg;
        problem.len = (line ? ngx_snprintf(msg, sizeof(msg), "line %uz: %s",
                                           line, tg_strerror(rc))
                            : ngx_snprintf(msg, sizeof(msg), "%s",
                                           tg_strerror(rc)))
                      - msg;

        ngx_http_taurus_guard_watch_error(r->connection->log, &cred->watch,
                                          NGX_LOG_ALERT, 0, &problem,
                                          "the previous credentials are"
                                          " kept");
        return &cred->cred;
    }

    /* the configuration-time copy lives in the pool: wipe, don't free */

    OPENSSL_cleanse(cred->data, cred->size);

    if (cred->owned) {
        ngx_free(cred->data);
    }

    cred->data = data;
    cred->size = size;
    cred->cred = parsed;
    cred->owned = 1;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "taurus_guard: credentials file \"%V\" reloaded",
                  &cred->watch.path);

    return &cred->cred;
}


/*
 * The current token of a token file; NULL when no good token was ever
 * read.  A file that disappears or turns bad keeps the last good one.
 */

ngx_str_t *
ngx_http_taurus_guard_token_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token)
{
    u_char     *data;
    size_t      size, len;
    ngx_int_t   n;
    ngx_str_t   problem;

    len = 0;

    n = ngx_http_taurus_guard_watch(r->connection->log, &token->watch,
                                    NGX_HTTP_TG_TOKEN_MAX, &data, &size,
                                    &problem);

    if (n == NGX_DECLINED) {
        return token->value.len ? &token->value : NULL;
    }

    if (n == NGX_OK && ngx_http_taurus_guard_token_parse(data, size, &len)
                       != NGX_OK)
    {
        OPENSSL_cleanse(data, size);
        ngx_free(data);
        ngx_str_set(&problem, "holds no valid token (empty, or not one line"
                              " of printable characters)");
        n = NGX_ERROR;
        ngx_set_errno(0);
    }

    if (n == NGX_ERROR) {
        ngx_http_taurus_guard_watch_error(r->connection->log, &token->watch,
                                          token->value.len ? NGX_LOG_ERR
                                                           : NGX_LOG_ALERT,
                                          ngx_errno, &problem,
                                          token->value.len
                                          ? "the previous token is kept"
                                          : "requests are refused");
        return token->value.len ? &token->value : NULL;
    }

    if (token->value.len) {
        OPENSSL_cleanse(token->value.data, token->value.len);
        ngx_free(token->value.data);
    }

    token->value.data = data;
    token->value.len = len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: token file \"%V\" (re)loaded",
                   &token->watch.path);

    return &token->value;
}


/*
 * One token; surrounding white space is the refresher's newline.  The
 * token is moved to the start of data, the rest wiped.
 */

static ngx_int_t
ngx_http_taurus_guard_token_parse(u_char *data, size_t size, size_t *len)
{
    u_char  *p, *last, *q;

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

    if (p == last) {
        return NGX_ERROR;
    }

    for (q = p; q < last; q++) {
        if (*q < 0x21 || *q > 0x7e) {
            return NGX_ERROR;
        }
    }

    *len = last - p;
    ngx_memmove(data, p, *len);
    OPENSSL_cleanse(data + *len, size - *len);

    return NGX_OK;
}


/*
 * NGX_DECLINED: looked at less than a second ago, or unchanged;
 * NGX_OK: a new version in *data (ngx_alloc()ed, the caller wipes and
 * frees it); NGX_ERROR: *problem says what is wrong with the file.
 */

ngx_int_t
ngx_http_taurus_guard_watch(ngx_log_t *log,
    ngx_http_taurus_guard_watch_t *watch, size_t max, u_char **data,
    size_t *size, ngx_str_t *problem)
{
    u_char           *buf;
    ssize_t           n;
    time_t            now;
    ngx_fd_t          fd;
    ngx_err_t         err;
    ngx_file_info_t   fi;

    now = ngx_time();

    if (watch->checked != 0 && now - watch->checked < NGX_HTTP_TG_RECHECK) {
        return NGX_DECLINED;
    }

    watch->checked = now;

    fd = ngx_open_file(watch->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_str_set(problem, "cannot be opened");
        return NGX_ERROR;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_str_set(problem, "cannot be examined");
        goto failed;
    }

    if (watch->mtime != 0
        && ngx_file_mtime(&fi) == watch->mtime
        && ngx_file_size(&fi) == watch->fsize
        && ngx_file_uniq(&fi) == watch->ino)
    {
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    if (!ngx_is_file(&fi) || (ngx_file_access(&fi) & 077)) {
        ngx_str_set(problem, "is not a regular file private to its owner,"
                             " so not used");
        ngx_set_errno(0);
        goto failed;
    }

    if (ngx_file_size(&fi) > (off_t) max) {
        ngx_str_set(problem, "is too large");
        ngx_set_errno(0);
        goto failed;
    }

    *size = (size_t) ngx_file_size(&fi);

    buf = ngx_alloc(*size + 1, log);
    if (buf == NULL) {
        ngx_str_set(problem, "cannot be read: no memory");
        goto failed;
    }

    n = ngx_read_fd(fd, buf, *size);

    if (n == -1 || (size_t) n != *size) {
        ngx_str_set(problem, "cannot be read");
        goto failed;
    }

    (void) ngx_close_file(fd);

    buf[*size] = '\0';

    watch->mtime = ngx_file_mtime(&fi);
    watch->fsize = ngx_file_size(&fi);
    watch->ino = ngx_file_uniq(&fi);

    *data = buf;

    return NGX_OK;

failed:

    err = ngx_errno;

    if (buf != NULL) {
        OPENSSL_cleanse(buf, *size);
        ngx_free(buf);
    }

    (void) ngx_close_file(fd);

    ngx_set_errno(err);

    return NGX_ERROR;
}


void
ngx_http_taurus_guard_watch_error(ngx_log_t *log,
    ngx_http_taurus_guard_watch_t *watch, ngx_uint_t level, ngx_err_t err,
    ngx_str_t *problem, const char *outcome)
{
    time_t  now;

    now = ngx_time();

    /* one line a minute per file, not one a request */

    if (now - watch->error_logged < NGX_HTTP_TG_LOG_INTERVAL) {
        return;
    }

    watch->error_logged = now;

    ngx_log_error(level, log, err, "taurus_guard: \"%V\" %V, %s",
                  &watch->path, problem, outcome);
}


/*
 * A copy of a secret in pool, wiped when the pool goes: what a request
 * sends must not point into a buffer that a re-read wipes and frees
 * while the request waits (for its flush, say).
 */

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
    cln->handler = ngx_http_taurus_guard_wipe;

    p = ngx_pnalloc(pool, len ? len : 1);
    if (p == NULL) {
        return NULL;
    }

    secret->data = p;
    secret->size = len;

    return p;
}
