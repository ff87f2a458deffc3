
/*
 * taurus-guard: the "taurus_guard_allow { ... }" block, parsed like
 * "map": every line is "project_id instance_id ...;" or "include glob;",
 * and a malformed or repeated entry fails "nginx -t" at its file:line.
 */


#include "ngx_http_taurus_guard_module.h"


static char *ngx_http_taurus_guard_allow_entry(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static void ngx_http_taurus_guard_allow_cleanup(void *data);


char *
ngx_http_taurus_guard_allow_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    char                *rv;
    ngx_conf_t           save;
    ngx_pool_cleanup_t  *cln;

    if (mcf->allow == NULL) {
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->allow = tg_allow_create(0);
        if (mcf->allow == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_taurus_guard_allow_cleanup;
        cln->data = mcf->allow;
    }

    save = *cf;
    cf->handler = ngx_http_taurus_guard_allow_entry;
    cf->handler_conf = conf;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    return rv;
}


static char *
ngx_http_taurus_guard_allow_entry(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    tg_rc_t      rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[0].data, "include") == 0)
    {
        return ngx_conf_include(cf, dummy, conf);
    }

    if (tg_project_id_check(value[0].data, value[0].len) != TG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: malformed project ID \"%V\""
                           " (32 letters or digits expected)", &value[0]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: project \"%V\" lists no"
                           " instance", &value[0]);
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        rc = tg_allow_add(mcf->allow, value[0].data, value[0].len,
                          value[i].data, value[i].len);

        switch (rc) {

        case TG_OK:
            break;

        case TG_ERR_BAD_INSTANCE_ID:
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_allow: malformed instance ID"
                               " \"%V\" (32 to 64 letters or digits"
                               " expected)", &value[i]);
            return NGX_CONF_ERROR;

        case TG_ERR_DUP_ENTRY:
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_allow: instance \"%V\" is"
                               " listed twice for project \"%V\"",
                               &value[i], &value[0]);
            return NGX_CONF_ERROR;

        default:
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_allow: %s", tg_strerror(rc));
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_taurus_guard_allow_init(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf)
{
    ngx_uint_t                       i;
    ngx_http_taurus_guard_token_t  **tokens;

    if (mcf->allow == NULL) {
        /* no block at all: nothing is allowed, the digest is of nothing */

        if (tg_sha256_hex((u_char *) "", 0, mcf->policy) != TG_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (tg_allow_digest(mcf->allow, mcf->policy) != TG_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "taurus_guard_allow: could not compute the digest");
        return NGX_ERROR;
    }

    if (tg_allow_project_count(mcf->allow) < 2) {
        return NGX_OK;
    }

    /* an IAM token is scoped to one project: it cannot serve several */

    tokens = mcf->tokens.elts;

    for (i = 0; i < mcf->tokens.nelts; i++) {
        if (tokens[i]->fetch != NULL || tokens[i]->path_cv != NULL) {
            /* fetched per project, or a file per project */
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "taurus_guard_token \"%V\" serves every project, but"
                      " the allow-list names %uz projects and an IAM token"
                      " is scoped to one, in %s:%ui",
                      &tokens[i]->file.path,
                      tg_allow_project_count(mcf->allow),
                      tokens[i]->file.conf_file,
                      tokens[i]->file.conf_line);
    }

    return NGX_OK;
}


static void
ngx_http_taurus_guard_allow_cleanup(void *data)
{
    tg_allow_destroy(data);
}
