
/*
 * taurus-guard: IAM tokens, one kind of secret the fetcher fetches.
 *
 *     taurus_guard_token iam=/_tg_iam password_file=PATH
 *         [agency=NAME agency_domain=NAME] [refresh=1h];
 *
 * A token is scoped to one project.  It is asked of IAM's
 * "POST /v3/auth/tokens?nocatalog=true" with the password method and
 * the project's scope; the password comes from a secret file.  An
 * agency token (agency=) is asked with assume_role and the delegated
 * user's own token in X-Auth-Token, itself asked with the password,
 * scoped to the user's domain, and kept by the fetcher as the agency's
 * base.  The answer's X-Subject-Token is the token, its
 * token.expires_at when it ends.
 *
 * Both kinds' identity is the digest of the password file as parsed,
 * and of the agency for an agency token: the fetcher uses no token
 * asked with another version of the file.
 *
 * The password and the tokens are never logged; the request body that
 * carries the password is wiped when the request ends.
 */


#include "ngx_http_taurus_guard_fetch.h"


#define NGX_HTTP_TG_IAM_FILE_MAX     4096


/* password tokens: the user's, for a project or for its own domain */
typedef struct {
    ngx_http_taurus_guard_secret_file_t  file;  /* the password file */
    tg_iam_cred_t                 cred;     /* points into file.text */
    unsigned                      user:1;   /* scoped to the user's domain */
} ngx_http_taurus_guard_iam_pw_t;


/* agency tokens, asked with a user token (the fetch's base) */
typedef struct {
    ngx_str_t                     agency;   /* assume_role: its name */
    ngx_str_t                     domain;   /* and its account */
} ngx_http_taurus_guard_iam_agency_t;


static char *ngx_http_taurus_guard_iam_agency_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_http_taurus_guard_fetch_t *user,
    ngx_str_t *agency, ngx_str_t *domain);
static ngx_int_t ngx_http_taurus_guard_iam_name(ngx_conf_t *cf,
    ngx_str_t *value, ngx_str_t *name);
static ngx_int_t ngx_http_taurus_guard_iam_password_parse(
    ngx_http_taurus_guard_secret_file_t *file, u_char *text, size_t size,
    ngx_str_t *problem);
static ngx_int_t ngx_http_taurus_guard_iam_password_identity(ngx_log_t *log,
    ngx_http_taurus_guard_fetch_t *iam, u_char *md);
static ngx_int_t ngx_http_taurus_guard_iam_agency_identity(ngx_log_t *log,
    ngx_http_taurus_guard_fetch_t *iam, u_char *md);
static ngx_int_t ngx_http_taurus_guard_iam_identity(ngx_log_t *log,
    ngx_http_taurus_guard_iam_pw_t *pw, ngx_http_taurus_guard_iam_agency_t *ag,
    u_char *md);
static ngx_int_t ngx_http_taurus_guard_iam_password_request(
    ngx_http_request_t *r, ngx_http_taurus_guard_fetch_t *iam, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req);
static ngx_int_t ngx_http_taurus_guard_iam_agency_request(
    ngx_http_request_t *r, ngx_http_taurus_guard_fetch_t *iam, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req);
static void ngx_http_taurus_guard_iam_request(
    ngx_http_taurus_guard_fetch_request_t *req, u_char *body, size_t len);
static ngx_int_t ngx_http_taurus_guard_iam_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_fetch_t *iam, ngx_str_t *token, time_t *expires,
    const char **problem);
static u_char *ngx_http_taurus_guard_iam_password_what(
    ngx_http_taurus_guard_fetch_t *iam, u_char *key, u_char *buf,
    u_char *last);
static u_char *ngx_http_taurus_guard_iam_agency_what(
    ngx_http_taurus_guard_fetch_t *iam, u_char *key, u_char *buf,
    u_char *last);


static ngx_http_taurus_guard_fetch_ops_t
    ngx_http_taurus_guard_iam_password_ops = {
    ngx_http_taurus_guard_iam_password_identity,
    ngx_http_taurus_guard_iam_password_request,
    ngx_http_taurus_guard_iam_answer,
    ngx_http_taurus_guard_iam_password_what
};


static ngx_http_taurus_guard_fetch_ops_t
    ngx_http_taurus_guard_iam_agency_ops = {
    ngx_http_taurus_guard_iam_agency_identity,
    ngx_http_taurus_guard_iam_agency_request,
    ngx_http_taurus_guard_iam_answer,
    ngx_http_taurus_guard_iam_agency_what
};


char *
ngx_http_taurus_guard_iam_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_str_t *value, ngx_uint_t n)
{
    size_t                           line;
    tg_rc_t                          rc;
    ngx_str_t                        agency, domain, password;
    ngx_uint_t                       i;
    ngx_http_taurus_guard_fetch_t   *iam;
    ngx_http_taurus_guard_iam_pw_t  *pw;

    iam = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_fetch_t));
    pw = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_pw_t));

    if (iam == NULL || pw == NULL) {
        return NGX_CONF_ERROR;
    }

    iam->ops = &ngx_http_taurus_guard_iam_password_ops;

    /* the user token, under the base key, is counted as iam_user */
    iam->source = NGX_HTTP_TG_SOURCE_IAM;
    iam->data = pw;
    iam->refresh = 3600;

    ngx_str_null(&agency);
    ngx_str_null(&domain);
    ngx_str_null(&password);

    for (i = 1; i < n; i++) {

        if (ngx_http_taurus_guard_param_once(cf, value, 1, i) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (ngx_strncmp(value[i].data, "agency=", 7) == 0
            || ngx_strncmp(value[i].data, "agency_domain=", 14) == 0)
        {
            /* "agency=" has its '=' where "agency_domain=" has '_' */

            if (ngx_http_taurus_guard_iam_name(cf, &value[i],
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
            password.data = value[i].data + 14;
            password.len = value[i].len - 14;
            continue;
        }

        if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            if (ngx_http_taurus_guard_fetch_refresh(cf, "taurus_guard_token",
                                                    &value[i], &iam->refresh)
                != NGX_OK)
            {
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

    if (password.len == 0) {
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

    pw->file.parse = ngx_http_taurus_guard_iam_password_parse;
    pw->file.data = pw;
    pw->file.level = NGX_LOG_ALERT;
    pw->file.kept = "the previous password is kept";

    /* not a source of its own: the tokens asked with it are */
    pw->file.source = NGX_HTTP_TG_SOURCES;

    if (ngx_http_taurus_guard_secret_file_conf(cf, &pw->file, &password,
                                               NGX_HTTP_TG_IAM_FILE_MAX)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    rc = tg_iam_cred_parse(&pw->cred, pw->file.text, pw->file.size, &line);

    if (rc != TG_OK) {
        if (line) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_token: \"%V\", line %uz: %s",
                               &pw->file.path, line, tg_strerror(rc));
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_token: \"%V\": %s",
                               &pw->file.path, tg_strerror(rc));
        }

        return NGX_CONF_ERROR;
    }

    if (ngx_http_taurus_guard_fetch_zone(cf, iam, &pw->file.path)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (agency.len) {
        return ngx_http_taurus_guard_iam_agency_conf(cf, token, iam, &agency,
                                                     &domain);
    }

    token->fetch = iam;

    return NGX_CONF_OK;
}


/*
 * agency=NAME agency_domain=NAME: the tokens sent are the agency's, for
 * the project of each batch, asked with the user's own token, which the
 * password gets scoped to the user's domain.
 */

static char *
ngx_http_taurus_guard_iam_agency_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_http_taurus_guard_fetch_t *user,
    ngx_str_t *agency, ngx_str_t *domain)
{
    ngx_str_t                            what;
    ngx_http_taurus_guard_fetch_t       *iam;
    ngx_http_taurus_guard_iam_pw_t      *pw;
    ngx_http_taurus_guard_iam_agency_t  *ag;

    iam = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_fetch_t));
    ag = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_iam_agency_t));

    if (iam == NULL || ag == NULL) {
        return NGX_CONF_ERROR;
    }

    pw = user->data;
    pw->user = 1;

    ag->agency = *agency;
    ag->domain = *domain;

    iam->ops = &ngx_http_taurus_guard_iam_agency_ops;
    iam->source = NGX_HTTP_TG_SOURCE_IAM;
    iam->data = ag;
    iam->uri = user->uri;
    iam->refresh = user->refresh;
    iam->margin = user->margin;
    iam->base = user;
    ngx_str_set(&iam->base_header, "X-Auth-Token");

    /* the agency's tokens are not the user's: a zone of their own */

    what.len = pw->file.path.len + sizeof("#agency=/") - 1
               + domain->len + agency->len;
    what.data = ngx_pnalloc(cf->pool, what.len);
    if (what.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(what.data, "%V#agency=%V/%V", &pw->file.path, domain,
                agency);

    if (ngx_http_taurus_guard_fetch_zone(cf, iam, &what) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    token->fetch = iam;

    return NGX_CONF_OK;
}


/*
 * NAME of "agency=NAME" and the like: printable ASCII, as IAM's are, but
 * for '/', '#' and ':', which separate the parts of a zone's name.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_name(ngx_conf_t *cf, ngx_str_t *value,
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


/* the password file's user, as the file is now */

static ngx_int_t
ngx_http_taurus_guard_iam_password_identity(ngx_log_t *log,
    ngx_http_taurus_guard_fetch_t *iam, u_char *md)
{
    return ngx_http_taurus_guard_iam_identity(log, iam->data, NULL, md);
}


/* the delegated user (the base's password file), and the agency */

static ngx_int_t
ngx_http_taurus_guard_iam_agency_identity(ngx_log_t *log,
    ngx_http_taurus_guard_fetch_t *iam, u_char *md)
{
    return ngx_http_taurus_guard_iam_identity(log, iam->base->data, iam->data,
                                              md);
}


/*
 * The password file is re-read here if it changed (a worker looks at
 * most once a second): before a token is taken from the fetcher, and
 * before one is asked for.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_identity(ngx_log_t *log,
    ngx_http_taurus_guard_iam_pw_t *pw, ngx_http_taurus_guard_iam_agency_t *ag,
    u_char *md)
{
    tg_rc_t   rc;
    tg_str_t  domain, agency;

    (void) ngx_http_taurus_guard_secret_file_update(log, &pw->file);

    if (ag == NULL) {
        rc = tg_iam_identity(&pw->cred, NULL, NULL, md);

    } else {
        domain.data = ag->domain.data;
        domain.len = ag->domain.len;
        agency.data = ag->agency.data;
        agency.len = ag->agency.len;

        rc = tg_iam_identity(&pw->cred, &domain, &agency, md);
    }

    if (rc != TG_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "taurus_guard: \"%V\": SHA-256 failed",
                      &pw->file.path);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The password method, scoped to the project (or to the user's domain,
 * for the user token an agency is asked with), with the password file
 * identity() has just looked at.  The body holds the password: it is
 * wiped with the request.
 */

static ngx_int_t
ngx_http_taurus_guard_iam_password_request(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *iam, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req)
{
    u_char                          *p;
    size_t                           len;
    ngx_http_taurus_guard_iam_pw_t  *pw;

    pw = iam->data;

    len = tg_iam_request_body(&pw->cred, pw->user ? NULL : key,
                              TG_PROJECT_ID_LEN, NULL, 0);

    p = ngx_http_taurus_guard_secret_alloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) tg_iam_request_body(&pw->cred, pw->user ? NULL : key,
                               TG_PROJECT_ID_LEN, p, len);

    ngx_http_taurus_guard_iam_request(req, p, len);

    return NGX_OK;
}


/* assume_role; the fetcher adds the user's token */

static ngx_int_t
ngx_http_taurus_guard_iam_agency_request(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *iam, u_char *key,
    ngx_http_taurus_guard_fetch_request_t *req)
{
    u_char                              *p;
    size_t                               len;
    tg_str_t                             domain, agency;
    ngx_http_taurus_guard_iam_agency_t  *ag;

    ag = iam->data;

    domain.data = ag->domain.data;
    domain.len = ag->domain.len;
    agency.data = ag->agency.data;
    agency.len = ag->agency.len;

    len = tg_iam_agency_body(&domain, &agency, key, TG_PROJECT_ID_LEN,
                             NULL, 0);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) tg_iam_agency_body(&domain, &agency, key, TG_PROJECT_ID_LEN, p,
                              len);

    ngx_http_taurus_guard_iam_request(req, p, len);

    return NGX_OK;
}


static void
ngx_http_taurus_guard_iam_request(ngx_http_taurus_guard_fetch_request_t *req,
    u_char *body, size_t len)
{
    req->method = NGX_HTTP_POST;
    ngx_str_set(&req->method_name, "POST");

    /* the answer without the service catalog is small enough for memory */
    ngx_str_set(&req->args, "nocatalog=true");

    req->body.data = body;
    req->body.len = len;
    ngx_str_set(&req->content_type, "application/json;charset=utf8");
}


static ngx_int_t
ngx_http_taurus_guard_iam_answer(ngx_http_request_t *sr,
    ngx_http_taurus_guard_fetch_t *iam, ngx_str_t *token, time_t *expires,
    const char **problem)
{
    int64_t               t;
    tg_rc_t               rc;
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
        *problem = "IAM did not answer 201 (or 200)";
        return NGX_ERROR;
    }

    ngx_str_null(token);

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
            if (token->data != NULL) {
                /* read one way only: neither the first nor the last wins */
                *problem = "X-Subject-Token is in the answer twice";
                return NGX_ERROR;
            }

            *token = h[i].value;
        }
    }

    if (token->len == 0 || token->len > NGX_HTTP_TG_FETCH_TOKEN_MAX) {
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

    rc = tg_iam_expires_at(body.data, body.len, &t);

    if (rc == TG_ERR_TYPE) {
        *problem = "token.expires_at is not a UTC time"
                   " (YYYY-MM-DDTHH:MM:SS[.fraction]Z)";
        return NGX_ERROR;
    }

    if (rc == TG_ERR_DUP_KEY || rc == TG_ERR_NUL_ESCAPE
        || rc == TG_ERR_TRAILING)
    {
        *problem = "the answer's JSON reads more than one way"
                   " (a key twice, \\u0000, bytes after it)";
        return NGX_ERROR;
    }

    if (rc != TG_OK) {
        *problem = "no token.expires_at in the answer";
        return NGX_ERROR;
    }

    if (t <= ngx_time() + iam->margin) {
        *problem = "the token IAM gave expires at once: is the clock right?";
        return NGX_ERROR;
    }

    *expires = (time_t) t;

    return NGX_OK;
}


/* what a fetch is for, in a log line: never a secret */

static u_char *
ngx_http_taurus_guard_iam_password_what(ngx_http_taurus_guard_fetch_t *iam,
    u_char *key, u_char *buf, u_char *last)
{
    ngx_http_taurus_guard_iam_pw_t  *pw;

    pw = iam->data;

    if (pw->user) {
        return ngx_slprintf(buf, last,
                            "IAM user token (to ask for agency tokens)");
    }

    return ngx_slprintf(buf, last, "IAM token for project \"%*s\"",
                        (size_t) TG_PROJECT_ID_LEN, key);
}


static u_char *
ngx_http_taurus_guard_iam_agency_what(ngx_http_taurus_guard_fetch_t *iam,
    u_char *key, u_char *buf, u_char *last)
{
    ngx_http_taurus_guard_iam_agency_t  *ag;

    ag = iam->data;

    return ngx_slprintf(buf, last,
                        "agency \"%V/%V\" token for project \"%*s\"",
                        &ag->domain, &ag->agency,
                        (size_t) TG_PROJECT_ID_LEN, key);
}


/* a new version of the password file */

static ngx_int_t
ngx_http_taurus_guard_iam_password_parse(
    ngx_http_taurus_guard_secret_file_t *file, u_char *text, size_t size,
    ngx_str_t *problem)
{
    ngx_http_taurus_guard_iam_pw_t *pw = file->data;

    size_t          line;
    tg_rc_t         rc;
    tg_iam_cred_t   parsed;

    rc = tg_iam_cred_parse(&parsed, text, size, &line);

    if (rc != TG_OK) {
        ngx_http_taurus_guard_secret_file_problem(problem, line, rc);
        return NGX_ERROR;
    }

    pw->cred = parsed;

    return NGX_OK;
}
