
/*
 * taurus-guard: the audit file's directive (taurus_guard_audit_log), its
 * shared zone, and the start of its chain: at "nginx -t", a start and a
 * reload, the file is checked for the worker user and its last record
 * read back (ngx_http_taurus_guard_audit.c writes the records).
 */


#include "ngx_http_taurus_guard_audit.h"


static ngx_int_t ngx_http_taurus_guard_audit_dir(ngx_conf_t *cf,
    ngx_str_t *name);
static void ngx_http_taurus_guard_audit_nginx_logs(ngx_conf_t *cf,
    ngx_str_t *name);
static ngx_int_t ngx_http_taurus_guard_audit_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_http_taurus_guard_audit_check_access(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static ngx_int_t ngx_http_taurus_guard_audit_chain_start(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static ngx_int_t ngx_http_taurus_guard_audit_rotated(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static ngx_int_t ngx_http_taurus_guard_audit_is_rotated(u_char *name,
    size_t len, u_char *base, size_t blen);


char *
ngx_http_taurus_guard_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    ngx_str_t                          *value, name, pool, s;
    ngx_int_t                           timeout, delay;
    ngx_uint_t                          i;
    ngx_flag_t                          fsync;
    ngx_file_info_t                     fi;
    ngx_open_file_t                    *file;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_taurus_guard_audit_t      *audit, **a;
    ngx_http_taurus_guard_main_conf_t  *mcf;
#if (NGX_THREADS)
    ngx_thread_pool_t                  *tp;
#endif

    if (lcf->audit != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters after \"off\"";
        }

        lcf->audit = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes a file path or \"off\"";
    }

    fsync = 1;
    timeout = NGX_HTTP_TG_AUDIT_TIMEOUT;
    delay = 0;
    ngx_str_set(&pool, "default");

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_taurus_guard_param_once(cf, value, 2, i) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(value[i].data, "fsync=on") == 0) {
            fsync = 1;

        } else if (ngx_strcmp(value[i].data, "fsync=off") == 0) {
            fsync = 0;

        } else if (ngx_strncmp(value[i].data, "thread_pool=", 12) == 0
                   && value[i].len > 12)
        {
            pool.data = value[i].data + 12;
            pool.len = value[i].len - 12;

        } else if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            timeout = ngx_parse_time(&s, 0);

            if (timeout == NGX_ERROR || timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            /*
             * A batch in flight for 15 minutes is taken for lost and its
             * instances freed (ngx_http_taurus_guard_policy.c): one still
             * waiting for its flush then would be sent beside a batch
             * that took them since.
             */

            if (timeout > NGX_HTTP_TG_AUDIT_TIMEOUT_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": at most 10m, since a batch in"
                                   " flight for 15 minutes is taken for"
                                   " lost", &value[i]);
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strncmp(value[i].data, "flush_delay=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            /* microseconds as "500us", or an nginx time such as "2ms" */

            if (s.len > 2 && ngx_strncmp(s.data + s.len - 2, "us", 2) == 0) {
                delay = ngx_atoi(s.data, s.len - 2);

            } else {
                delay = ngx_parse_time(&s, 0);

                if (delay != NGX_ERROR) {
                    delay *= 1000;
                }
            }

            if (delay == NGX_ERROR || delay > NGX_HTTP_TG_AUDIT_DELAY_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid flush_delay \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (delay >= timeout * 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flush_delay must be shorter than timeout");
        return NGX_CONF_ERROR;
    }

    file = ngx_conf_open_file(cf->cycle, &value[1]);
    if (file == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_taurus_guard_audit_dir(cf, &file->name) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_http_taurus_guard_audit_nginx_logs(cf, &file->name);

    /*
     * One state per file, however many locations write to it and
     * however its path is spelled (a symlinked directory, a relative
     * path): by device and inode when the file is already there.  Two
     * spellings of a file not created yet get two states, whose records
     * still make one chain (the file lock, ngx_http_taurus_guard_audit.c).
     */

    ngx_memzero(&fi, sizeof(ngx_file_info_t));

    if (ngx_file_info(file->name.data, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi))
    {
        fi.st_ino = 0;
    }

#if (NGX_THREADS)
    tp = NULL;

    if (fsync && ngx_strcmp(pool.data, "off") != 0) {
        tp = ngx_thread_pool_add(cf, &pool);
        if (tp == NULL) {
            return NGX_CONF_ERROR;
        }
    }
#endif

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    a = mcf->audits.elts;

    for (i = 0; i < mcf->audits.nelts; i++) {
        if (a[i]->file != file
            && (fi.st_ino == 0 || a[i]->ino != fi.st_ino
                || a[i]->dev != fi.st_dev))
        {
            continue;
        }

        /* one file, one flush: in one thread pool, or in the loop */

        if (a[i]->fsync != fsync || a[i]->timeout != (ngx_msec_t) timeout
            || a[i]->flush_delay != (ngx_uint_t) delay
#if (NGX_THREADS)
            || a[i]->thread_pool != tp
#endif
           )
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "audit log \"%V\" is used with different"
                               " \"fsync\", \"thread_pool\", \"timeout\""
                               " or \"flush_delay\" parameters",
                               &file->name);
            return NGX_CONF_ERROR;
        }

        lcf->audit = a[i];
        return NGX_CONF_OK;
    }

    audit = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_audit_t));
    if (audit == NULL) {
        return NGX_CONF_ERROR;
    }

    audit->file = file;
    audit->prev_fd = NGX_INVALID_FILE;
    audit->tail_max = NGX_HTTP_TG_AUDIT_TAIL_MAX;
    audit->fsync = fsync;
    audit->timeout = (ngx_msec_t) timeout;
    audit->flush_delay = (ngx_uint_t) delay;
    audit->cycle = cf->cycle;
    audit->conf_file = cf->conf_file->file.name.data;
    audit->conf_line = cf->conf_file->line;
    audit->dev = fi.st_dev;
    audit->ino = fi.st_ino;

    /*
     * nginx calls a file's flush before it reopens it: the worker then
     * looks whether its reopen worked.  An access log buffered into the
     * same file keeps its own flush.
     */

    if (file->flush == NULL) {
        file->flush = ngx_http_taurus_guard_audit_flush;
    }

    ngx_queue_init(&audit->unwritten);
    ngx_queue_init(&audit->written);

    audit->append.handler = ngx_http_taurus_guard_audit_append_handler;
    audit->append.data = audit;
    audit->append.log = &cf->cycle->new_log;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_taurus_guard_audit_cleanup;
    cln->data = audit;

#if (NGX_THREADS)
    audit->thread_pool = tp;

    ngx_queue_init(&audit->pending);
    ngx_queue_init(&audit->syncing);

    audit->kept_fd = NGX_INVALID_FILE;

    audit->failed.handler = ngx_http_taurus_guard_audit_not_started;
    audit->failed.data = audit;
    audit->failed.log = &cf->cycle->new_log;
#endif

    name.len = sizeof("taurus_guard_audit:") - 1 + file->name.len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(name.data, "taurus_guard_audit:%V", &file->name);

    audit->zone = ngx_shared_memory_add(cf, &name,
                                        NGX_HTTP_TG_AUDIT_ZONE_SIZE,
                                        &ngx_http_taurus_guard_module);
    if (audit->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    audit->zone->init = ngx_http_taurus_guard_audit_init_zone;
    audit->zone->data = audit;

    a = ngx_array_push(&mcf->audits);
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    *a = audit;
    lcf->audit = audit;

    return NGX_CONF_OK;
}


/*
 * nginx opens the file only once the whole configuration is read, and
 * says then that the open failed without naming the directive: a
 * directory that is not there (a typo in the path, a package not
 * installed) is said here, with the file and line.  Other errors (a
 * directory this user may not search) are left to that open.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_dir(ngx_conf_t *cf, ngx_str_t *name)
{
    size_t            len;
    u_char           *p, *dir;
    ngx_err_t         err;
    ngx_file_info_t   fi;

    if (ngx_strlchr(name->data, name->data + name->len, '/') == NULL) {
        return NGX_OK;
    }

    for (p = name->data + name->len; *(p - 1) != '/'; p--) {
        /* void */
    }

    /* the directory without its last slash, "/" for the root */

    len = (p - 1 > name->data) ? (size_t) (p - 1 - name->data) : 1;

    dir = ngx_pnalloc(cf->temp_pool, len + 1);
    if (dir == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(dir, name->data, len + 1);

    if (ngx_file_info(dir, &fi) != NGX_FILE_ERROR) {
        if (ngx_is_dir(&fi)) {
            return NGX_OK;
        }

        err = NGX_ENOTDIR;

    } else {
        err = ngx_errno;

        if (err != NGX_ENOENT && err != NGX_ENOTDIR) {
            return NGX_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                       "audit log \"%V\": no directory \"%s\" to hold it:"
                       " correct the path, or create the directory root's"
                       " and writable only by root (the package makes"
                       " /var/log/taurus-guard, 0751, root:adm)",
                       name, dir);

    return NGX_ERROR;
}


/*
 * Runs in ngx_init_cycle() once the files are open and the worker user
 * is known, for "nginx -t", a start and a reload alike; a failure here
 * keeps a running nginx on its old configuration.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_taurus_guard_audit_t  *oaudit = data;

    ngx_http_taurus_guard_audit_t  *audit;

    audit = shm_zone->data;

    if (ngx_http_taurus_guard_audit_check_access(audit, shm_zone->shm.log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (oaudit != NULL) {
        /* a reload: the chain goes on where the old cycle left it */
        audit->sh = oaudit->sh;
        audit->shpool = oaudit->shpool;
        ngx_http_taurus_guard_audit_reloaded(audit, oaudit);
        return NGX_OK;
    }

    audit->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        audit->sh = audit->shpool->data;
        return NGX_OK;
    }

    audit->sh = ngx_slab_calloc(audit->shpool,
                                sizeof(ngx_http_taurus_guard_audit_sh_t));
    if (audit->sh == NULL) {
        return NGX_ERROR;
    }

    audit->shpool->data = audit->sh;

    return ngx_http_taurus_guard_audit_chain_start(audit, shm_zone->shm.log);
}


/*
 * A master running as root opens the file itself, and at every reopen
 * hands it to the worker user (ngx_reopen_files() chowns it), but the
 * workers then reopen it by name: every directory on its path must let
 * them through, or they go on writing the rotated file.  A master that
 * is not root runs its workers as itself and has opened the file
 * already, so nothing is left to check.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_check_access(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    u_char           *dir;
    ngx_int_t         rc;
    ngx_uint_t        who;
    const char       *by;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(audit->cycle->conf_ctx,
                                           ngx_core_module);

    rc = ngx_http_taurus_guard_worker_can_enter(audit->cycle,
                                                &audit->file->name, &dir);
    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "audit log \"%V\": nginx workers run as \"%s\""
                      " (uid %ui) and cannot enter \"%s\", so they"
                      " could not reopen the file after a rotation,"
                      " in %s:%ui",
                      &audit->file->name,
                      ccf->username ? ccf->username : "?",
                      (ngx_uint_t) ccf->user, dir, audit->conf_file,
                      audit->conf_line);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_taurus_guard_worker_can_replace(audit->cycle,
                                                  &audit->file->name, &dir,
                                                  &who);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    by = (who == NGX_HTTP_TG_WORKER_THEIRS) ? "belongs to"
         : (who == NGX_HTTP_TG_WORKER_THEM) ? "is writable by"
         : "is writable by everybody, including";

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "audit log \"%V\": \"%s\" %s the nginx workers"
                  " (\"%s\", uid %ui), who could put a symbolic link"
                  " in the file's place, and the master (root) would"
                  " hand them the file it names at the next reopen:"
                  " make every directory on the path root's and"
                  " writable only by root (as /var/log/taurus-guard:"
                  " 0751, root:adm), in %s:%ui",
                  &audit->file->name, dir, by,
                  ccf->username ? ccf->username : "?",
                  (ngx_uint_t) ccf->user, audit->conf_file,
                  audit->conf_line);

    return NGX_ERROR;
}


/*
 * Debian's logrotate rule for nginx's own logs (each "*.log" file in
 * /var/log/nginx) compresses the rotated files and deletes them after 14
 * days: an audit log it matches loses its records, and a start on an
 * empty file finds only a compressed one to link to.  A warning: the
 * operator may have changed that rule.
 */

static void
ngx_http_taurus_guard_audit_nginx_logs(ngx_conf_t *cf, ngx_str_t *name)
{
    u_char  *p, *end;

    static ngx_str_t  dir = ngx_string("/var/log/nginx/");

    if (name->len < dir.len + sizeof(".log") - 1
        || ngx_strncmp(name->data, dir.data, dir.len) != 0)
    {
        return;
    }

    p = name->data + dir.len;
    end = name->data + name->len;

    if (ngx_strlchr(p, end, '/') != NULL
        || ngx_strncmp(end - 4, ".log", 4) != 0
        || access("/etc/logrotate.d/nginx", F_OK) != 0)
    {
        return;
    }

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "audit log \"%V\" is one of /var/log/nginx/*.log,"
                       " which /etc/logrotate.d/nginx rotates, compresses"
                       " and deletes after 14 days: give the audit log a"
                       " directory of its own, as /var/log/taurus-guard",
                       name);
}


/*
 * A start: the chain goes on from the last record of the file, which
 * records where the previous run ended, or where the other master of a
 * binary upgrade is.  An empty file is a rotated one no record has gone
 * into yet: the chain goes on from the file before it.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_chain_start(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    off_t             size;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_file_info_t   fi;

    ngx_memcpy(audit->sh->last, NGX_HTTP_TG_ZERO_HASH, TG_SHA256_HEX_LEN + 1);

    fd = ngx_open_file(audit->file->name.data, NGX_FILE_RDWR, NGX_FILE_OPEN,
                       0);

    if (fd == NGX_INVALID_FILE) {
        /* a device such as /dev/stderr: a new chain */
        return NGX_OK;
    }

    rc = NGX_OK;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        goto done;
    }

    if (ngx_http_taurus_guard_audit_lock(fd, F_WRLCK) != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "taurus_guard: cannot lock audit log \"%V\"",
                      &audit->file->name);
        rc = NGX_ERROR;
        goto done;
    }

    /* the size under the lock: another master's worker may be writing */

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        rc = NGX_ERROR;
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size > 0) {
        rc = ngx_http_taurus_guard_audit_tail(audit, fd, fd, &size,
                                              audit->sh->last, log);
    } else {
        rc = ngx_http_taurus_guard_audit_rotated(audit, log);
    }

    if (rc == NGX_DECLINED) {
        rc = NGX_OK;
    }

    audit->sh->dev = fi.st_dev;
    audit->sh->ino = ngx_file_uniq(&fi);
    audit->sh->size = size;

done:

    /* closing the descriptor drops the lock */

    (void) ngx_close_file(fd);

    return rc;
}


/*
 * The file before an empty audit file is the newest of those in its
 * directory whose name is the file's followed by a rotation's suffix
 * (logrotate's "audit.log.1", "audit.log-20261207"): the chain goes on
 * from its last record.  If that newest one is compressed, or none is
 * there (a first start), a new chain starts.  Either is logged.  The
 * workers cannot write in that directory ("nginx -t" makes sure of it,
 * ngx_http_taurus_guard_worker_can_replace()).
 */

static ngx_int_t
ngx_http_taurus_guard_audit_rotated(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    int               dfd;
    DIR              *dir;
    off_t             size;
    u_char           *path, *base, *end, *slash, c;
    size_t            blen;
    ngx_fd_t          fd;
    ngx_int_t         rc, kind, packed;
    struct stat       st;
    struct dirent    *de;
    struct timespec   newest;
    u_char            best[NAME_MAX + 1];

    path = audit->file->name.data;
    end = path + audit->file->name.len;

    for (base = end; base > path && base[-1] != '/'; base--) {
        /* void */
    }

    blen = end - base;

    if (base == path || blen == 0 || blen + 2 > NAME_MAX) {
        return NGX_DECLINED;
    }

    /* the directory's name, in place, as ngx_create_full_path() does */

    slash = (base - 1 == path) ? base : base - 1;
    c = *slash;
    *slash = '\0';

    dir = opendir((char *) path);

    *slash = c;

    if (dir == NULL) {
        return NGX_DECLINED;
    }

    dfd = dirfd(dir);
    best[0] = '\0';
    packed = 0;
    newest.tv_sec = 0;
    newest.tv_nsec = 0;

    while ((de = readdir(dir)) != NULL) {

        kind = ngx_http_taurus_guard_audit_is_rotated((u_char *) de->d_name,
                                                      ngx_strlen(de->d_name),
                                                      base, blen);
        if (kind == NGX_DECLINED) {
            continue;
        }

        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1
            || !S_ISREG(st.st_mode) || st.st_size == 0)
        {
            continue;
        }

        if (best[0] != '\0'
            && (st.st_mtim.tv_sec < newest.tv_sec
                || (st.st_mtim.tv_sec == newest.tv_sec
                    && st.st_mtim.tv_nsec <= newest.tv_nsec)))
        {
            continue;
        }

        newest = st.st_mtim;
        packed = (kind == NGX_DONE);
        (void) ngx_cpystrn(best, (u_char *) de->d_name, NAME_MAX + 1);
    }

    rc = NGX_DECLINED;

    if (best[0] == '\0') {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "taurus_guard: audit log \"%V\" is empty and no"
                      " rotated file is beside it: a new chain starts",
                      &audit->file->name);
        goto done;
    }

    if (packed) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "taurus_guard: audit log \"%V\" is empty and the"
                      " file before it, \"%s\", is compressed: a new"
                      " chain starts", &audit->file->name, best);
        goto done;
    }

    /*
     * A file before it that cannot be read back costs the link, not the
     * start: the new chain is logged, and the verifier shows the break.
     */

    fd = openat(dfd, (char *) best, O_RDONLY|O_NOFOLLOW|O_CLOEXEC);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "taurus_guard: audit log \"%V\" is empty and the"
                      " file before it, \"%s\", cannot be opened: a new"
                      " chain starts", &audit->file->name, best);
        goto done;
    }

    rc = NGX_ERROR;

    if (fstat(fd, &st) != -1 && S_ISREG(st.st_mode)) {
        size = st.st_size;
        rc = ngx_http_taurus_guard_audit_tail(audit, fd, NGX_INVALID_FILE,
                                              &size, audit->sh->last, log);
    }

    (void) ngx_close_file(fd);

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "taurus_guard: audit log \"%V\" is empty, its chain"
                      " goes on from the last record of \"%s\"",
                      &audit->file->name, best);
        goto done;
    }

    ngx_memcpy(audit->sh->last, NGX_HTTP_TG_ZERO_HASH, TG_SHA256_HEX_LEN + 1);

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "taurus_guard: audit log \"%V\" is empty and no record"
                  " can be read from the file before it, \"%s\": a new"
                  " chain starts", &audit->file->name, best);

    rc = NGX_DECLINED;

done:

    (void) closedir(dir);

    return rc;
}


/*
 * NGX_OK: name is base and a rotation's suffix ("." or "-", a digit and
 * more);
 * NGX_DONE: the same, compressed; NGX_DECLINED: another file.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_is_rotated(u_char *name, size_t len, u_char *base,
    size_t blen)
{
    size_t       n;
    ngx_uint_t   i;

    static ngx_str_t  packed[] = {
        ngx_string(".gz"), ngx_string(".bz2"), ngx_string(".xz"),
        ngx_string(".zst"), ngx_string(".lz4"), ngx_string(".lzma"),
        ngx_string(".lzo"), ngx_string(".Z"), ngx_string(".zip")
    };

    /*
     * A rotation's number or date follows: "audit.log-b", another audit
     * log beside this one, and its own rotated files are not this one's.
     */

    if (len < blen + 2 || ngx_strncmp(name, base, blen) != 0
        || (name[blen] != '.' && name[blen] != '-')
        || name[blen + 1] < '0' || name[blen + 1] > '9')
    {
        return NGX_DECLINED;
    }

    for (i = 0; i < sizeof(packed) / sizeof(packed[0]); i++) {
        n = packed[i].len;

        if (len > blen + n
            && ngx_strncmp(name + len - n, packed[i].data, n) == 0)
        {
            return NGX_DONE;
        }
    }

    return NGX_OK;
}


/*
 * A location takes bodies of up to "body" bytes: every audit file reads
 * back a last line as long as the longest record such a body makes (the
 * file may be shared, the audit states of two spellings of its path may
 * be two).  A record holds the batch's instances, those denied and a
 * reason that names them again, each escaped at most to twice its
 * length (the validator lets no control byte through), and fields of
 * bounded length: the method, a refused route's target, the user and
 * the upstream's request id are cut by the encoder (tg_audit.h).  Eight
 * times the body and 64k is more than that.  The upstream tries are
 * left out of it: at most one for each server of the upstream, named by
 * the configuration.
 */

void
ngx_http_taurus_guard_audit_record_max(ngx_http_taurus_guard_main_conf_t *mcf,
    size_t body)
{
    size_t                           max;
    ngx_uint_t                       i;
    ngx_http_taurus_guard_audit_t  **a;

    max = (body > (NGX_MAX_SIZE_T_VALUE / 2 - NGX_HTTP_TG_AUDIT_TAIL_MIN) / 8)
          ? NGX_MAX_SIZE_T_VALUE / 2 : 8 * body + NGX_HTTP_TG_AUDIT_TAIL_MIN;

    a = mcf->audits.elts;

    for (i = 0; i < mcf->audits.nelts; i++) {
        if (a[i]->tail_max < max) {
            a[i]->tail_max = max;
        }
    }
}
