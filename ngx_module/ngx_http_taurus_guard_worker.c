
/*
 * taurus-guard: whether nginx's workers can reach a file by its name.
 *
 * A master running as root reads or opens the files it is configured
 * with itself, but its workers, running as nginx's "user", open the
 * audit log again after a rotation and re-read the secret files when
 * they change, by name: every directory on the way must let that user
 * through.  Asked once the whole configuration is read, when the worker
 * user is known, by the audit log and the secret files alike.
 *
 * The audit log also asks whether anyone but root could replace a name
 * on its way: the master opens it by name at every start and reopen and
 * chown()s it to the workers, following a symbolic link, so whoever
 * could put a link in its place would be handed the file the link names
 * (Debian's CVE-2016-1247, for /var/log/nginx).
 */


#include "ngx_http_taurus_guard_module.h"

#include <grp.h>
#include <sys/xattr.h>


#define NGX_HTTP_TG_WORKER_GROUPS    64
#define NGX_HTTP_TG_WORKER_PATH      4096   /* PATH_MAX */
#define NGX_HTTP_TG_WORKER_LINKS     40     /* the kernel's ELOOP */
#define NGX_HTTP_TG_WORKER_ACL       4096

/* a POSIX ACL's xattr, "system.posix_acl_access": <linux/posix_acl_xattr.h> */
#define NGX_HTTP_TG_ACL_VERSION      2
#define NGX_HTTP_TG_ACL_USER         0x02
#define NGX_HTTP_TG_ACL_GROUP_OBJ    0x04
#define NGX_HTTP_TG_ACL_GROUP        0x08
#define NGX_HTTP_TG_ACL_MASK         0x10
#define NGX_HTTP_TG_ACL_OTHER        0x20


static ngx_int_t ngx_http_taurus_guard_worker_check(ngx_cycle_t *cycle,
    ngx_str_t *path, ngx_uint_t replace, u_char **dir, ngx_uint_t *who);
static ngx_int_t ngx_http_taurus_guard_worker_walk(ngx_pool_t *pool,
    ngx_str_t *path, ngx_uid_t uid, gid_t *gids, int ngids,
    ngx_uint_t replace, u_char **dir, ngx_uint_t *who);
static ngx_uint_t ngx_http_taurus_guard_worker_access(ngx_file_info_t *fi,
    u_char *dir, ngx_uid_t uid, gid_t *gids, int ngids);
static ngx_uint_t ngx_http_taurus_guard_worker_replaceable(
    ngx_file_info_t *fi, u_char *dir, u_char *entry, ngx_uint_t last,
    ngx_uid_t uid, gid_t *gids, int ngids);


/*
 * NGX_OK: the workers can enter every directory the kernel would walk
 * through to reach the absolute path, the directories of every symbolic
 * link on the way included, however many hops, or there is nothing to
 * check: a master that is not root runs its workers as itself, and has
 * just read or opened the file by the same path; a relative name is not
 * a file's (a device, say).
 * NGX_DECLINED: *dir is the first directory they cannot enter, a string
 * in the cycle's pool.  Where the walk cannot go on (a name missing, too
 * long, too many links), the caller's own open of the file says why.
 */

ngx_int_t
ngx_http_taurus_guard_worker_can_enter(ngx_cycle_t *cycle, ngx_str_t *path,
    u_char **dir)
{
    return ngx_http_taurus_guard_worker_check(cycle, path, 0, dir, NULL);
}


/*
 * The same walk, which also asks of every directory a name is looked up
 * in whether someone other than root could replace that name there: the
 * directory is the workers' (NGX_HTTP_TG_WORKER_THEIRS in *who), they
 * may write to it (NGX_HTTP_TG_WORKER_THEM), or everybody may
 * (NGX_HTTP_TG_WORKER_ALL).  A sticky directory (/tmp) lets nobody but
 * root remove or rename a name root owns, unless it is the file itself,
 * which the master hands to the workers.  NGX_DECLINED: *dir is the
 * first such directory; NGX_OK otherwise, and when it is not root's
 * business, as above.
 */

ngx_int_t
ngx_http_taurus_guard_worker_can_replace(ngx_cycle_t *cycle,
    ngx_str_t *path, u_char **dir, ngx_uint_t *who)
{
    return ngx_http_taurus_guard_worker_check(cycle, path, 1, dir, who);
}


static ngx_int_t
ngx_http_taurus_guard_worker_check(ngx_cycle_t *cycle, ngx_str_t *path,
    ngx_uint_t replace, u_char **dir, ngx_uint_t *who)
{
    int               ngids;
    gid_t             gids[NGX_HTTP_TG_WORKER_GROUPS];
    ngx_uid_t         uid;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (geteuid() != 0 || ccf == NULL) {
        return NGX_OK;
    }

    uid = ccf->user;

    if (uid == 0 || uid == (ngx_uid_t) NGX_CONF_UNSET_UINT
        || path->len == 0 || path->data[0] != '/'
        || path->len >= NGX_HTTP_TG_WORKER_PATH)
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

    return ngx_http_taurus_guard_worker_walk(cycle->pool, path, uid, gids,
                                             ngids, replace, dir, who);
}


/*
 * The kernel's walk (path_resolution(7)), made as root for the workers:
 * a name is looked up in the directory reached so far, which must let
 * them through (".", ".." and the last name alike); a symbolic link is
 * replaced by its target, looked up from the directory that holds it,
 * or from "/"; the last name is followed too, as open() follows it.
 */

static ngx_int_t
ngx_http_taurus_guard_worker_walk(ngx_pool_t *pool, ngx_str_t *path,
    ngx_uid_t uid, gid_t *gids, int ngids, ngx_uint_t replace, u_char **dir,
    ngx_uint_t *who)
{
    size_t            cur_len, rest_len, name_len, held;
    u_char           *name, *end, *at, *p;
    ssize_t           n;
    ngx_uint_t        links, last, by;
    ngx_file_info_t   fi;
    u_char            cur[NGX_HTTP_TG_WORKER_PATH];
    u_char            rest[NGX_HTTP_TG_WORKER_PATH];
    u_char            link[NGX_HTTP_TG_WORKER_PATH];

    /* cur: the directory reached, without its trailing slash ("/" is "") */

    cur_len = 0;
    cur[0] = '\0';

    ngx_memcpy(rest, path->data, path->len);
    rest_len = path->len;

    links = 0;

    for ( ;; ) {

        /* the next name of rest */

        name = rest;
        end = rest + rest_len;

        while (name < end && *name == '/') {
            name++;
        }

        if (name == end) {
            return NGX_OK;
        }

        for (name_len = 0; name + name_len < end && name[name_len] != '/';
             name_len++)
        {
            /* void */
        }

        /* it is looked up in cur: the workers must search cur */

        at = cur_len ? cur : (u_char *) "/";

        if (ngx_file_info(at, &fi) == NGX_FILE_ERROR || !ngx_is_dir(&fi)) {
            return NGX_OK;
        }

        if (!(ngx_http_taurus_guard_worker_access(&fi, at, uid, gids, ngids)
              & S_IXOTH))
        {
            *dir = ngx_pnalloc(pool, cur_len + 2);
            if (*dir == NULL) {
                return NGX_ERROR;
            }

            ngx_cpystrn(*dir, at, cur_len + 2);

            return NGX_DECLINED;
        }

        /* and nobody but root may replace the name there */

        if (replace
            && !(name_len == 1 && name[0] == '.')
            && !(name_len == 2 && name[0] == '.' && name[1] == '.'))
        {
            if (cur_len + 1 + name_len >= NGX_HTTP_TG_WORKER_PATH) {
                return NGX_OK;
            }

            for (p = name + name_len; p < end && *p == '/'; p++) {
                /* void */
            }

            last = (p == end);

            p = ngx_cpymem(link, cur, cur_len);
            *p++ = '/';
            p = ngx_cpymem(p, name, name_len);
            *p = '\0';

            by = ngx_http_taurus_guard_worker_replaceable(&fi, at, link,
                                                          last, uid, gids,
                                                          ngids);
            if (by) {
                *dir = ngx_pnalloc(pool, cur_len + 2);
                if (*dir == NULL) {
                    return NGX_ERROR;
                }

                ngx_cpystrn(*dir, at, cur_len + 2);
                *who = by;

                return NGX_DECLINED;
            }
        }

        /* cur becomes the name's: the parent for "..", itself for "." */

        held = cur_len;

        if (name_len == 2 && name[0] == '.' && name[1] == '.') {
            while (cur_len > 0 && cur[--cur_len] != '/') {
                /* void */
            }

        } else if (name_len != 1 || name[0] != '.') {

            if (cur_len + 1 + name_len >= NGX_HTTP_TG_WORKER_PATH) {
                return NGX_OK;
            }

            cur[cur_len] = '/';
            ngx_memcpy(cur + cur_len + 1, name, name_len);
            cur_len += 1 + name_len;
        }

        cur[cur_len] = '\0';

        rest_len = end - (name + name_len);
        ngx_memmove(rest, name + name_len, rest_len);

        if (cur_len == held || ngx_link_info(cur, &fi) == NGX_FILE_ERROR
            || !ngx_is_link(&fi))
        {
            /* ".", "..", a missing name (the open says so), or not a link */
            continue;
        }

        /* a link: its target, then what was left, from where it is */

        if (++links > NGX_HTTP_TG_WORKER_LINKS) {
            return NGX_OK;
        }

        n = readlink((char *) cur, (char *) link, sizeof(link));

        if (n <= 0 || (size_t) n + 1 + rest_len >= sizeof(rest)) {
            return NGX_OK;
        }

        ngx_memmove(rest + n + 1, rest, rest_len);
        ngx_memcpy(rest, link, n);
        rest[n] = '/';
        rest_len += n + 1;

        cur_len = (link[0] == '/') ? 0 : held;
        cur[cur_len] = '\0';
    }
}


/*
 * The access the workers have to a directory, as the others' bits
 * (S_IXOTH: search, S_IWOTH: write), by the kernel's rule
 * (posix_acl_permission()): the owner's bits, else a named user's entry
 * of its access ACL, else those of the groups it names, the owning
 * group's included (any that grants), both within the ACL's mask, else
 * the others'.  Without an ACL the group bits are the owning group's.
 * An ACL (setfacl -m u:www-data:rwx) shows in the mode only as its
 * mask, in the group bits, whatever group it names; with no group bits
 * the kernel reads the mode only.  One that cannot be read (too long) is
 * taken for its mask and the others' bits.
 */

static ngx_uint_t
ngx_http_taurus_guard_worker_access(ngx_file_info_t *fi, u_char *dir,
    ngx_uid_t uid, gid_t *gids, int ngids)
{
    int          i;
    u_char      *p, *last;
    ssize_t      n;
    uint32_t     id;
    ngx_uint_t   tag, perm, mask, other, grp, found;
    u_char       acl[NGX_HTTP_TG_WORKER_ACL];

    if (fi->st_uid == uid) {
        return (fi->st_mode >> 6) & 7;
    }

    /*
     * The kernel reads no ACL whose mask, the group bits, is empty
     * (acl_permission_check()): the mode alone then says, and a named
     * entry gives nothing and takes nothing.
     */

    n = (fi->st_mode & S_IRWXG)
        ? getxattr((char *) dir, "system.posix_acl_access", acl, sizeof(acl))
        : 0;

    if (n == -1 && ngx_errno == ERANGE) {
        return ((fi->st_mode >> 3) | fi->st_mode) & 7;
    }

    if (n < 4 || (n - 4) % 8 != 0
        || acl[0] != NGX_HTTP_TG_ACL_VERSION
        || acl[1] != 0 || acl[2] != 0 || acl[3] != 0)
    {
        /* no ACL: the mode */

        for (i = 0; i < ngids; i++) {
            if (fi->st_gid == gids[i]) {
                return (fi->st_mode >> 3) & 7;
            }
        }

        return fi->st_mode & 7;
    }

    mask = 7;
    other = fi->st_mode & 7;
    grp = 0;
    found = 0;

    last = acl + n;

    for (p = acl + 4; p < last; p += 8) {
        if (p[0] == NGX_HTTP_TG_ACL_MASK && p[1] == 0) {
            mask = p[2] & 7;
        }
    }

    for (p = acl + 4; p < last; p += 8) {
        tag = p[0] | (p[1] << 8);
        perm = p[2] & 7;
        id = (uint32_t) p[4] | ((uint32_t) p[5] << 8)
             | ((uint32_t) p[6] << 16) | ((uint32_t) p[7] << 24);

        switch (tag) {

        case NGX_HTTP_TG_ACL_USER:
            if ((ngx_uid_t) id == uid) {
                return perm & mask;
            }
            break;

        case NGX_HTTP_TG_ACL_GROUP_OBJ:
            id = (uint32_t) fi->st_gid;

            /* fall through */

        case NGX_HTTP_TG_ACL_GROUP:
            for (i = 0; i < ngids; i++) {
                if ((gid_t) id == gids[i]) {
                    grp |= perm;
                    found = 1;
                    break;
                }
            }
            break;

        case NGX_HTTP_TG_ACL_OTHER:
            other = perm;
            break;
        }
    }

    return found ? (grp & mask) : other;
}


/*
 * Who may replace entry in the directory fi describes, dir: the workers
 * when they own it (they may change its bits), everybody when it is
 * world-writable (whoever put a link there, the file it names would be
 * handed to the workers), or the workers by a group's bits or an ACL's
 * entry (ngx_http_taurus_guard_worker_access()).  In a sticky directory
 * only root (or the directory's owner, not the workers here) may remove
 * or rename a name root owns.
 */

static ngx_uint_t
ngx_http_taurus_guard_worker_replaceable(ngx_file_info_t *fi, u_char *dir,
    u_char *entry, ngx_uint_t last, ngx_uid_t uid, gid_t *gids, int ngids)
{
    ngx_uint_t       by;
    ngx_file_info_t  efi;

    if (fi->st_uid == uid) {
        return NGX_HTTP_TG_WORKER_THEIRS;
    }

    by = 0;

    if (fi->st_mode & S_IWOTH) {
        by = NGX_HTTP_TG_WORKER_ALL;

    } else if (ngx_http_taurus_guard_worker_access(fi, dir, uid, gids, ngids)
               & S_IWOTH)
    {
        by = NGX_HTTP_TG_WORKER_THEM;
    }

    if (by == 0 || fi->st_uid != 0 || !(fi->st_mode & S_ISVTX)) {
        return by;
    }

    /* the file itself is the workers' once the master has chowned it */

    if (ngx_link_info(entry, &efi) == NGX_FILE_ERROR
        || efi.st_uid != 0
        || (last && !ngx_is_link(&efi)))
    {
        return by;
    }

    return 0;
}
