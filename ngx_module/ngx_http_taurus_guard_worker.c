
/*
 * taurus-guard: whether nginx's workers can reach a file by its name.
 *
 * A master running as root reads or opens the files it is configured
 * with itself, but its workers, running as nginx's "user", open the
 * audit log again after a rotation and re-read the secret files when
 * they change, by name: every directory on the way must let that user
 * through.  Asked once the whole configuration is read, when the worker
 * user is known, by the audit log and the secret files alike.
 */


#include "ngx_http_taurus_guard_module.h"

#include <grp.h>


#define NGX_HTTP_TG_WORKER_GROUPS    64


static ngx_int_t ngx_http_taurus_guard_worker_dirs(u_char *path,
    ngx_uid_t uid, gid_t *gids, int ngids);
static ngx_int_t ngx_http_taurus_guard_worker_searchable(ngx_file_info_t *fi,
    ngx_uid_t uid, gid_t *gids, int ngids);


/*
 * NGX_OK: the workers can enter every directory on the way to the
 * absolute path, as it is written and once its symbolic links are
 * resolved (the kernel walks both), or there is nothing to check: a
 * master that is not root runs its workers as itself, and has just read
 * or opened the file by the same path; a relative name is not a file's
 * (a device, say).
 * NGX_DECLINED: *dir is the first directory they cannot enter, a string
 * in the cycle's pool.  A directory that cannot be examined is left to
 * the caller's own open of the file.
 */

ngx_int_t
ngx_http_taurus_guard_worker_can_enter(ngx_cycle_t *cycle, ngx_str_t *path,
    u_char **dir)
{
    int               ngids;
    char             *real;
    size_t            len;
    u_char           *copy, *p;
    gid_t             gids[NGX_HTTP_TG_WORKER_GROUPS];
    ngx_uid_t         uid;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (geteuid() != 0 || ccf == NULL) {
        return NGX_OK;
    }

    uid = ccf->user;

    if (uid == 0 || uid == (ngx_uid_t) NGX_CONF_UNSET_UINT
        || path->len == 0 || path->data[0] != '/')
    {
        return NGX_OK;
    }

    /* the groups the workers get: initgroups(user, group) */

    gids[0] = ccf->group;
    ngids = NGX_HTTP_TG_WORKER_GROUPS;

    if (ccf->username == NULL
        || getgrouplist(ccf->username, ccf->group, gids, &ngids) == -1)
    {
        ngids = 1;
    }

    copy = ngx_pnalloc(cycle->pool, path->len + 1);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(copy, path->data, path->len + 1);

    if (ngx_http_taurus_guard_worker_dirs(copy, uid, gids, ngids) != NGX_OK) {
        /* the copy ends at the directory now */
        *dir = copy;
        return NGX_DECLINED;
    }

    /* where the links lead: a file that is not there is the caller's */

    real = realpath((char *) copy, NULL);

    if (real == NULL) {
        return NGX_OK;
    }

    len = ngx_strlen(real);
    p = ngx_pnalloc(cycle->pool, len + 1);

    if (p == NULL) {
        free(real);
        return NGX_ERROR;
    }

    ngx_cpystrn(p, (u_char *) real, len + 1);
    free(real);

    if (ngx_http_taurus_guard_worker_dirs(p, uid, gids, ngids) != NGX_OK) {
        *dir = p;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* NGX_DECLINED: path is cut at the first directory they cannot enter */

static ngx_int_t
ngx_http_taurus_guard_worker_dirs(u_char *path, ngx_uid_t uid, gid_t *gids,
    int ngids)
{
    u_char           *p;
    ngx_file_info_t   fi;

    for (p = path + 1; *p; p++) {

        if (*p != '/') {
            continue;
        }

        *p = '\0';

        if (ngx_file_info(path, &fi) != NGX_FILE_ERROR
            && ngx_http_taurus_guard_worker_searchable(&fi, uid, gids, ngids)
               != NGX_OK)
        {
            return NGX_DECLINED;
        }

        *p = '/';
    }

    return NGX_OK;
}


/* the kernel's rule: the owner's bits, else a group's, else the others' */

static ngx_int_t
ngx_http_taurus_guard_worker_searchable(ngx_file_info_t *fi, ngx_uid_t uid,
    gid_t *gids, int ngids)
{
    int  i;

    if (fi->st_uid == uid) {
        return (fi->st_mode & S_IXUSR) ? NGX_OK : NGX_DECLINED;
    }

    for (i = 0; i < ngids; i++) {
        if (fi->st_gid == gids[i]) {
            return (fi->st_mode & S_IXGRP) ? NGX_OK : NGX_DECLINED;
        }
    }

    return (fi->st_mode & S_IXOTH) ? NGX_OK : NGX_DECLINED;
}
