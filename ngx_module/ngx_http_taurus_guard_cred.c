
/*
 * taurus-guard: where the secrets come from.
 *
 * The two directives that name them: taurus_guard_credentials (an SDK
 * profile file, the SDKs' environment variables, or the ECS metadata
 * service) and taurus_guard_token (a file an external refresher
 * rewrites, one per project if its path names the project, or IAM).
 * What the files hold is checked here; how they are read and re-read
 * is the secret files' (ngx_http_taurus_guard_secret_file.c), what is
 * fetched the fetcher's.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>


#define NGX_HTTP_TG_CRED_MAX  65536
#define NGX_HTTP_TG_TOKEN_MAX  65536


static char *ngx_http_taurus_guard_credentials_env(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred, u_char **text, size_t *size);
static ngx_int_t ngx_http_taurus_guard_cred_parse(
    ngx_http_taurus_guard_secret_file_t *file, u_char *text, size_t size,
    ngx_str_t *problem);
static void ngx_http_taurus_guard_cred_key(ngx_http_taurus_guard_cred_t *cred);
static void ngx_http_taurus_guard_cred_cleanup(void *data);
static char *ngx_http_taurus_guard_token_per_project(ngx_conf_t *cf,
    ngx_http_taurus_guard_loc_conf_t *lcf,
    ngx_http_taurus_guard_token_t *token);
static void ngx_http_taurus_guard_token_init(
    ngx_http_taurus_guard_token_t *token);
static ngx_int_t ngx_http_taurus_guard_token_parse(
    ngx_http_taurus_guard_secret_file_t *file, u_char *text, size_t size,
    ngx_str_t *problem);


char *
ngx_http_taurus_guard_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    u_char                             *text;
    size_t                              size, line;
    tg_rc_t                             rc;
    ngx_str_t                          *value;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_taurus_guard_cred_t       *cred;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (lcf->cred != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cred = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_cred_t));
    if (cred == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_strncmp(value[1].data, "metadata=", 9) == 0) {
        if (ngx_http_taurus_guard_metadata_conf(cf, cred, value,
                                                cf->args->nelts)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_taurus_guard_fetch_register(cf, cred->fetch) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        lcf->cred = cred;
        return NGX_CONF_OK;
    }

    if (cf->args->nelts != 2) {
        return "takes one parameter unless it is \"metadata=\"";
    }

    if (ngx_strcmp(value[1].data, "env") == 0) {
        if (ngx_http_taurus_guard_credentials_env(cf, cred, &text, &size)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        mcf = ngx_http_conf_get_module_main_conf(cf,
                                                 ngx_http_taurus_guard_module);

        if (mcf->env_file == NULL) {
            mcf->env_file = cf->conf_file->file.name.data;
            mcf->env_line = cf->conf_file->line;
        }

    } else {
        cred->file.parse = ngx_http_taurus_guard_cred_parse;
        cred->file.data = cred;
        cred->file.level = NGX_LOG_ALERT;
        cred->file.kept = "the previous credentials are kept";
        cred->file.source = NGX_HTTP_TG_SOURCE_CREDENTIALS_FILE;

        if (ngx_http_taurus_guard_secret_file_conf(cf, &cred->file,
                                                   &value[1],
                                                   NGX_HTTP_TG_CRED_MAX)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        text = cred->file.text;
        size = cred->file.size;
    }

    rc = tg_cred_parse(&cred->cred, text, size, &line);

    if (rc != TG_OK) {
        if (cred->file.path.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: environment: %s",
                               tg_strerror(rc));
        } else if (line) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: \"%V\", line %uz:"
                               " %s", &cred->file.path, line,
                               tg_strerror(rc));
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_credentials: \"%V\": %s",
                               &cred->file.path, tg_strerror(rc));
        }

        return NGX_CONF_ERROR;
    }

    /* the ready key goes with the configuration, as the SK's text does */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_taurus_guard_cred_cleanup;
    cln->data = cred;

    ngx_http_taurus_guard_cred_key(cred);

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
    ngx_http_taurus_guard_cred_t *cred, u_char **text, size_t *size)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;
    const char  *ak, *sk, *token, *v;

    static const char  *names[] = {
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN"
    };

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

    /*
     * Checked here, not only by the profile parser: a line feed in a
     * value would start a line of its own there ("#..." a comment, or a
     * "security_token=" of its own), and trailing blanks would be cut.
     */

    for (i = 0; i < 3; i++) {
        v = (i == 0) ? ak : (i == 1) ? sk : token;

        for ( /* void */ ; v != NULL && *v != '\0'; v++) {
            if ((u_char) *v <= 0x20 || (u_char) *v >= 0x7f) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_credentials: environment:"
                                   " %s (%s)",
                                   tg_strerror(TG_ERR_CRED_BAD_VALUE),
                                   names[i]);
                return NGX_CONF_ERROR;
            }
        }
    }

    len = sizeof("[basic]\nak=\nsk=\nsecurity_token=\n") - 1
          + ngx_strlen(ak) + ngx_strlen(sk)
          + (token ? ngx_strlen(token) : 0);

    if (len > NGX_HTTP_TG_CRED_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_credentials env: values too long");
        return NGX_CONF_ERROR;
    }

    /* wiped when the configuration goes */

    *text = ngx_http_taurus_guard_secret_alloc(cf->pool, len);
    if (*text == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_sprintf(*text, "[basic]\nak=%s\nsk=%s\n", ak, sk);

    if (token != NULL && *token != '\0') {
        p = ngx_sprintf(p, "security_token=%s\n", token);
    }

    *size = p - *text;

    return NGX_CONF_OK;
}


/*
 * A binary upgrade (USR2) starts the new master with only the variables
 * "env" directives name, so without them it finds no credentials and
 * does not start.  They are not added to the list here: the workers get
 * the same list, and the SK would be in every worker's environment.  The
 * operator is told instead, once all "env" directives are known (they
 * may follow the http block).
 */

void
ngx_http_taurus_guard_credentials_env_check(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_main_conf_t *mcf)
{
    u_char           *p, *last;
    ngx_str_t        *var;
    ngx_uint_t        i, k, n;
    const char       *token;
    ngx_core_conf_t  *ccf;
    u_char            missing[128];

    static const char  *names[] = {
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN"
    };

    if (mcf->env_file == NULL) {
        return;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    /* the security token only when there is one to lose */

    token = getenv("HUAWEICLOUD_SDK_SECURITY_TOKEN");
    n = (token != NULL && *token != '\0') ? 3 : 2;

    p = missing;
    last = missing + sizeof(missing);

    var = ccf->env.elts;

    for (k = 0; k < n; k++) {

        /*
         * "env NAME=value;" counts as "env NAME;": nginx keeps the
         * whole word but sets the length to the name's (ngx_set_env()).
         */

        for (i = 0; i < ccf->env.nelts; i++) {
            if (var[i].len == ngx_strlen(names[k])
                && ngx_strncmp(var[i].data, names[k], var[i].len) == 0)
            {
                break;
            }
        }

        if (i == ccf->env.nelts) {
            p = ngx_slprintf(p, last, " env %s;", names[k]);
        }
    }

    if (p == missing) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "taurus_guard_credentials env: a binary upgrade (USR2)"
                  " starts the new master with only the variables named by"
                  " \"env\" directives, so it would not start: add"
                  "%*s to the main context (the workers then have them in"
                  " their environment too), or use a credentials file, in"
                  " %s:%ui", (size_t) (p - missing), missing, mcf->env_file,
                  mcf->env_line);
}


/* a new version of a credentials file */

static ngx_int_t
ngx_http_taurus_guard_cred_parse(ngx_http_taurus_guard_secret_file_t *file,
    u_char *text, size_t size, ngx_str_t *problem)
{
    ngx_http_taurus_guard_cred_t *cred = file->data;

    size_t     line;
    tg_rc_t    rc;
    tg_cred_t  parsed;

    rc = tg_cred_parse(&parsed, text, size, &line);

    if (rc != TG_OK) {
        ngx_http_taurus_guard_secret_file_problem(problem, line, rc);
        return NGX_ERROR;
    }

    cred->cred = parsed;

    /* the caller wipes the previous SK's text right after: its key now */
    ngx_http_taurus_guard_cred_key(cred);

    return NGX_OK;
}


/*
 * The SK as a ready HMAC key, so that each signature hashes two blocks
 * fewer; the previous key is wiped.  Making it fails only when OpenSSL
 * does (no memory): the signer then keys the HMAC with the SK's bytes,
 * as it does for fetched credentials.
 */

static void
ngx_http_taurus_guard_cred_key(ngx_http_taurus_guard_cred_t *cred)
{
    tg_hmac_key_wipe(&cred->key);
    cred->keyed = 0;

    if (tg_hmac_key_init(&cred->key, cred->cred.sk.data, cred->cred.sk.len)
        == TG_OK)
    {
        cred->keyed = 1;
    }
}


static void
ngx_http_taurus_guard_cred_cleanup(void *data)
{
    ngx_http_taurus_guard_cred_t  *cred = data;

    tg_hmac_key_wipe(&cred->key);
    cred->keyed = 0;
}


char *
ngx_http_taurus_guard_token(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    ngx_str_t                          *value, path, problem;
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

    path.data = value[1].data + sizeof("file=") - 1;
    path.len = value[1].len - (sizeof("file=") - 1);

    ngx_http_taurus_guard_token_init(token);

    if (ngx_http_script_variables_count(&path)) {
        /* one file per project, e.g. .../tokens/$taurus_guard_project */
        token->file.path = path;
        token->file.conf_file = cf->conf_file->file.name.data;
        token->file.conf_line = cf->conf_file->line;

        if (ngx_http_taurus_guard_token_per_project(cf, lcf, token)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        goto done;
    }

    /*
     * The file must exist, be private and hold a token now, so a mistake
     * (an empty file, the credentials file named instead) shows at
     * "nginx -t"; workers read it on their first request and whenever
     * the refresher rewrites it.
     */

    if (ngx_http_taurus_guard_secret_file_conf(cf, &token->file, &path,
                                               NGX_HTTP_TG_TOKEN_MAX)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_taurus_guard_token_parse(&token->file, token->file.text,
                                          token->file.size, &problem)
        != NGX_OK)
    {
        /* the text is wiped with the configuration's pool */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_token: \"%V\" %V",
                           &token->file.path, &problem);
        return NGX_CONF_ERROR;
    }

    ngx_http_taurus_guard_secret_file_forget(&token->file);

done:

    if (token->fetch != NULL
        && ngx_http_taurus_guard_fetch_register(cf, token->fetch) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    t = ngx_array_push(&mcf->tokens);
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    *t = token;
    lcf->token = token;

    return NGX_CONF_OK;
}


/* a token file's reading: what a bad version's line says */

static void
ngx_http_taurus_guard_token_init(ngx_http_taurus_guard_token_t *token)
{
    token->file.max = NGX_HTTP_TG_TOKEN_MAX;
    token->file.parse = ngx_http_taurus_guard_token_parse;
    token->file.data = token;
    token->file.level = NGX_LOG_ERR;
    token->file.kept = "the previous token is kept";
    token->file.source = NGX_HTTP_TG_SOURCE_TOKEN_FILE;
}


/*
 * A token file path with variables: evaluated for each request; the
 * files are found and checked when requests need them.  Its only
 * variable is the project (checked before it is used): a token serves
 * one project, and any other variable (a header, an argument, a
 * capture) would let the caller choose the file.
 */

static char *
ngx_http_taurus_guard_token_per_project(ngx_conf_t *cf,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_token_t *token)
{
    u_char                            *p, *last;
    ngx_str_t                          name;
    ngx_int_t                          project;
    ngx_uint_t                         n, vars, *index;
    ngx_http_variable_t               *v;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_compile_complex_value_t   ccv;

    static ngx_str_t  project_name = ngx_string("taurus_guard_project");

    /* each "$" is a variable or a capture, or the compiler refuses it */
    vars = ngx_http_script_variables_count(&token->file.path);

    token->path_cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (token->path_cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &token->file.path;
    ccv.complex_value = token->path_cv;
    ccv.conf_prefix = 1;
    ccv.zero = 1;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * What nginx compiled, not the text: its variables, by index, are
     * the path's flushes, "${taurus_guard_project}" and any case of the
     * name included; a capture ("$1") has none.
     */

    project = ngx_http_get_variable_index(cf, &project_name);
    if (project == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    n = 0;
    index = token->path_cv->flushes;

    for ( /* void */ ; index && *index != (ngx_uint_t) -1; index++, n++) {
        if (*index == (ngx_uint_t) project) {
            continue;
        }

        cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
        v = cmcf->variables.elts;
        name = v[*index].name;

        goto other;
    }

    if (n > 0 && n == vars) {
        goto done;
    }

    /* a capture, "$1" to "$9" */

    p = token->file.path.data;
    last = p + token->file.path.len;

    while (p + 1 < last && !(p[0] == '$' && p[1] >= '1' && p[1] <= '9')) {
        p++;
    }

    name.data = p + 1;
    name.len = (p + 1 < last) ? 1 : 0;

other:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "taurus_guard_token: a path with variables must hold"
                       " $taurus_guard_project and no other variable, not"
                       " \"$%V\": a token serves one project, and the"
                       " caller must not choose the file", &name);
    return NGX_CONF_ERROR;

done:

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
 * of the files of up to NGX_HTTP_TG_PROJECTS projects.  A new project,
 * with every place taken, takes the place of the file used least
 * recently: its token is wiped, and read again when its project comes
 * back.  A file's state is used only during the call that finds it.
 */

ngx_http_taurus_guard_token_t *
ngx_http_taurus_guard_token_file(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token)
{
    u_char                         *data;
    ngx_str_t                       path;
    ngx_uint_t                      i;
    ngx_http_taurus_guard_token_t  *t, *oldest;

    if (token->path_cv == NULL) {
        return token;
    }

    if (ngx_http_complex_value(r, token->path_cv, &path) != NGX_OK) {
        return NULL;
    }

    t = token->files.elts;

    for (i = 0; i < token->files.nelts; i++) {
        if (t[i].file.path.len == path.len - 1
            && ngx_strncmp(t[i].file.path.data, path.data, path.len - 1)
               == 0)
        {
            t[i].used = ngx_current_msec;
            return &t[i];
        }
    }

    if (token->files.nelts < NGX_HTTP_TG_PROJECTS) {

        /*
         * A per-worker list: the worker's pool lives as long as it does.
         * The array may move: a file's data is found again by its token.
         */

        data = ngx_pstrdup(ngx_cycle->pool, &path);
        if (data == NULL) {
            return NULL;
        }

        t = ngx_array_push(&token->files);
        if (t == NULL) {
            return NULL;
        }

    } else {
        oldest = &t[0];

        for (i = 1; i < token->files.nelts; i++) {
            if ((ngx_msec_int_t) (t[i].used - oldest->used) < 0) {
                oldest = &t[i];
            }
        }

        /* every project's path is as long: its buffer is reused */

        if (oldest->file.path.len == path.len - 1) {
            data = oldest->file.path.data;

        } else {
            data = ngx_pstrdup(ngx_cycle->pool, &path);
            if (data == NULL) {
                return NULL;
            }
        }

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "taurus_guard: more than %d token files: \"%V\", the"
                      " least recently used, is forgotten",
                      NGX_HTTP_TG_PROJECTS, &oldest->file.path);

        t = oldest;

        ngx_http_taurus_guard_secret_file_forget(&t->file);

        ngx_memcpy(data, path.data, path.len);
    }

    ngx_memzero(t, sizeof(ngx_http_taurus_guard_token_t));

    t->file.path.data = data;

    ngx_http_taurus_guard_token_init(t);

    /* without the NUL ngx_http_complex_value() counts for conf_prefix */
    t->file.path.len = path.len - 1;
    t->file.conf_file = token->file.conf_file;
    t->file.conf_line = token->file.conf_line;
    t->used = ngx_current_msec;

    return t;
}


/*
 * The current AK/SK.  A credentials file is looked at again at most once
 * a second; a new version that does not parse keeps the previous one.
 */

tg_cred_t *
ngx_http_taurus_guard_cred_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_cred_t *cred)
{
    if (cred->file.path.len == 0) {
        return &cred->cred;
    }

    if (ngx_http_taurus_guard_secret_file_update(r->connection->log,
                                                 &cred->file)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "taurus_guard: credentials file \"%V\" reloaded",
                      &cred->file.path);
    }

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
    /* the array of per-project files may have moved since the last */
    token->file.data = token;

    if (ngx_http_taurus_guard_secret_file_update(r->connection->log,
                                                 &token->file)
        == NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "taurus_guard: token file \"%V\" (re)loaded",
                       &token->file.path);
    }

    return token->file.text ? &token->value : NULL;
}


/*
 * One token; surrounding white space is the refresher's newline.  The
 * token is moved to the start of text, the rest wiped.
 */

static ngx_int_t
ngx_http_taurus_guard_token_parse(ngx_http_taurus_guard_secret_file_t *file,
    u_char *text, size_t size, ngx_str_t *problem)
{
    ngx_http_taurus_guard_token_t *token = file->data;

    u_char  *p, *last, *q;
    size_t   len;

    p = text;
    last = text + size;

    while (p < last && (*p == ' ' || *p == '\t' || *p == CR || *p == LF)) {
        p++;
    }

    while (last > p
           && (last[-1] == ' ' || last[-1] == '\t' || last[-1] == CR
               || last[-1] == LF))
    {
        last--;
    }

    for (q = p; q < last; q++) {
        if (*q < 0x21 || *q > 0x7e) {
            break;
        }
    }

    if (p == last || q != last) {
        ngx_str_set(problem, "holds no valid token (empty, or not one line"
                             " of printable characters)");
        return NGX_ERROR;
    }

    len = last - p;
    ngx_memmove(text, p, len);
    OPENSSL_cleanse(text + len, size - len);

    token->value.data = text;
    token->value.len = len;

    return NGX_OK;
}
