
/*
 * taurus-guard: secret files, and the one way they are re-read.
 *
 * The credentials file, the token files (one per project too) and the
 * IAM password file are each a secret file: private to the worker user,
 * read whole when the configuration is loaded, and re-read by each
 * worker when it changes, without a reload.  A worker looks at most once
 * a second, paced by nginx's monotonic clock, so that a wall clock
 * stepped back or forward changes nothing.  A change is decided by the
 * file's identity (device, inode, size, mtime and ctime to the
 * nanosecond) and then by its bytes: the same bytes in a new file are
 * not a change.  A version that turns out bad keeps the last good
 * secret, and says so once a minute, naming the file and the problem,
 * never a value; each failed re-read is counted by the file's source.
 * A replaced secret is wiped.
 */


#include "ngx_http_taurus_guard_module.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>


#define NGX_HTTP_TG_RECHECK_MS       1000      /* between looks */
#define NGX_HTTP_TG_PROBLEM_LEN      128
#define NGX_HTTP_TG_FILES_ZONE       "taurus_guard_secret_files"


static u_char *ngx_http_taurus_guard_secret_file_load(ngx_conf_t *cf,
    ngx_http_taurus_guard_secret_file_t *file, size_t *size);
static ngx_int_t ngx_http_taurus_guard_secret_file_look(ngx_log_t *log,
    ngx_http_taurus_guard_secret_file_t *file, u_char **data, size_t *size,
    ngx_str_t *problem);
static ngx_uint_t ngx_http_taurus_guard_secret_file_same(
    ngx_http_taurus_guard_secret_file_t *file, ngx_file_info_t *fi);
static void ngx_http_taurus_guard_secret_file_known(
    ngx_http_taurus_guard_secret_file_t *file, ngx_file_info_t *fi,
    u_char *data, size_t size);
static void ngx_http_taurus_guard_secret_file_error(ngx_log_t *log,
    ngx_http_taurus_guard_secret_file_t *file, ngx_err_t err,
    ngx_str_t *problem);
static ngx_int_t ngx_http_taurus_guard_secret_file_zone(ngx_conf_t *cf);
static ngx_int_t ngx_http_taurus_guard_secret_file_init_zone(
    ngx_shm_zone_t *zone, void *data);
static ngx_int_t ngx_http_taurus_guard_secret_file_owner(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_secret_file_t *file);
static ngx_int_t ngx_http_taurus_guard_secret_file_dirs(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_secret_file_t *file);
static void ngx_http_taurus_guard_secret_file_cleanup(void *data);


/*
 * A secret file named in the configuration: path (made absolute) must
 * be a private regular file now, so that a mistake shows at "nginx -t".
 * Its text is in file->text for the caller to check; the caller's
 * parse() takes it again at run time.  Every secret file is checked for
 * its owner and the directories on its path once the worker user is
 * known.
 */

ngx_int_t
ngx_http_taurus_guard_secret_file_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_secret_file_t *file, ngx_str_t *path, size_t max)
{
    ngx_pool_cleanup_t                    *cln;
    ngx_http_taurus_guard_secret_file_t  **f;
    ngx_http_taurus_guard_main_conf_t     *mcf;

    file->path = *path;
    file->max = max;
    file->conf_file = cf->conf_file->file.name.data;
    file->conf_line = cf->conf_file->line;

    if (ngx_conf_full_name(cf->cycle, &file->path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_taurus_guard_secret_file_cleanup;
    cln->data = file;

    file->text = ngx_http_taurus_guard_secret_file_load(cf, file,
                                                        &file->size);
    if (file->text == NULL) {
        return NGX_ERROR;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    if (mcf->files.nelts == 0
        && ngx_http_taurus_guard_secret_file_zone(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    f = ngx_array_push(&mcf->files);
    if (f == NULL) {
        return NGX_ERROR;
    }

    *f = file;

    return NGX_OK;
}


/*
 * A parse() callback's problem: what the core's parser refused, with the
 * line at fault when it knows it.
 */

void
ngx_http_taurus_guard_secret_file_problem(ngx_str_t *problem, size_t line,
    tg_rc_t rc)
{
    u_char  *end;

    end = problem->data + NGX_HTTP_TG_PROBLEM_LEN;

    problem->len = (line ? ngx_slprintf(problem->data, end, "line %uz: %s",
                                        line, tg_strerror(rc))
                         : ngx_slprintf(problem->data, end, "%s",
                                        tg_strerror(rc)))
                   - problem->data;
}


/*
 * The text in hand is wiped, and forgotten: the file is read again when
 * a request next needs it.  A worker's own copy is freed; one read at
 * configuration time lives in the pool.
 */

void
ngx_http_taurus_guard_secret_file_forget(
    ngx_http_taurus_guard_secret_file_t *file)
{
    if (file->text != NULL) {
        OPENSSL_cleanse(file->text, file->size);

        if (file->owned) {
            ngx_free(file->text);
        }
    }

    file->text = NULL;
    file->size = 0;
    file->known = 0;
    file->owned = 0;
}


static u_char *
ngx_http_taurus_guard_secret_file_load(ngx_conf_t *cf,
    ngx_http_taurus_guard_secret_file_t *file, size_t *size)
{
    u_char           *data;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    /* O_NONBLOCK: a FIFO put at the path must not stall nginx in open() */

    fd = ngx_open_file(file->path.data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open \"%V\"", &file->path);
        return NULL;
    }

    data = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", &file->path);
        goto done;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a regular file", &file->path);
        goto done;
    }

    if (ngx_file_access(&fi) & 077) {
        /* nginx's formats have no octal */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is accessible by group or others"
                           " (mode 0%ui%ui%ui): make it 0600, owned by the"
                           " nginx worker user", &file->path,
                           (ngx_uint_t) (ngx_file_access(&fi) >> 6) & 7,
                           (ngx_uint_t) (ngx_file_access(&fi) >> 3) & 7,
                           (ngx_uint_t) ngx_file_access(&fi) & 7);
        goto done;
    }

    if (ngx_file_size(&fi) > (off_t) file->max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is larger than %uz bytes", &file->path,
                           file->max);
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
                           "cannot read \"%V\"", &file->path);
        OPENSSL_cleanse(data, *size);
        data = NULL;
        goto done;
    }

    data[*size] = '\0';

    ngx_http_taurus_guard_secret_file_known(file, &fi, data, *size);

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &file->path);
    }

    return data;
}


/*
 * The one reload path.  NGX_OK: a new version was taken (file->parse()
 * has kept what it parsed, pointing into file->text); NGX_DECLINED:
 * looked at less than a second ago, unchanged, or a new version that
 * is bad (said in the log once a minute; the last good secret is kept).
 * Either way file->text is the secret in use, NULL if none ever was.
 */

ngx_int_t
ngx_http_taurus_guard_secret_file_update(ngx_log_t *log,
    ngx_http_taurus_guard_secret_file_t *file)
{
    u_char     *data;
    size_t      size;
    ngx_int_t   rc;
    ngx_str_t   problem;
    u_char      msg[NGX_HTTP_TG_PROBLEM_LEN];

    rc = ngx_http_taurus_guard_secret_file_look(log, file, &data, &size,
                                                &problem);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        ngx_http_taurus_guard_secret_file_error(log, file, ngx_errno,
                                                &problem);
        ngx_http_taurus_guard_metrics_fetch_failed(file->source);
        return NGX_DECLINED;
    }

    problem.data = msg;
    problem.len = 0;

    if (file->parse(file, data, size, &problem) != NGX_OK) {
        OPENSSL_cleanse(data, size);
        ngx_free(data);

        ngx_http_taurus_guard_secret_file_error(log, file, 0, &problem);
        ngx_http_taurus_guard_metrics_fetch_failed(file->source);
        return NGX_DECLINED;
    }

    /* a configuration-time copy lives in the pool: wipe, don't free */

    if (file->text != NULL) {
        OPENSSL_cleanse(file->text, file->size);

        if (file->owned) {
            ngx_free(file->text);
        }
    }

    file->text = data;
    file->size = size;
    file->owned = 1;

    return NGX_OK;
}


/*
 * NGX_DECLINED: looked at less than a second ago, or unchanged; NGX_OK:
 * new bytes in *data (ngx_alloc()ed, the caller wipes and frees them);
 * NGX_ERROR: *problem says what is wrong with the file.
 */

static ngx_int_t
ngx_http_taurus_guard_secret_file_look(ngx_log_t *log,
    ngx_http_taurus_guard_secret_file_t *file, u_char **data, size_t *size,
    ngx_str_t *problem)
{
    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_err_t         err;
    ngx_uint_t        same;
    ngx_file_info_t   fi;
    u_char            md[EVP_MAX_MD_SIZE];

    if (file->looked
        && (ngx_msec_int_t) (ngx_current_msec - file->checked)
           < NGX_HTTP_TG_RECHECK_MS)
    {
        return NGX_DECLINED;
    }

    file->looked = 1;
    file->checked = ngx_current_msec;

    /* O_NONBLOCK: a FIFO put at the path must not stall nginx in open() */

    fd = ngx_open_file(file->path.data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_str_set(problem, "cannot be opened");
        return NGX_ERROR;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_str_set(problem, "cannot be examined");
        goto failed;
    }

    if (ngx_http_taurus_guard_secret_file_same(file, &fi)) {
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    if (!ngx_is_file(&fi) || (ngx_file_access(&fi) & 077)) {
        ngx_str_set(problem, "is not a regular file private to its owner,"
                             " so not used");
        ngx_set_errno(0);
        goto failed;
    }

    if (ngx_file_size(&fi) > (off_t) file->max) {
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

    /* a new file, or the same one touched: are the bytes new? */

    same = file->known
           && EVP_Digest(buf, *size, md, NULL, EVP_sha256(), NULL) == 1
           && CRYPTO_memcmp(md, file->digest, sizeof(file->digest)) == 0;

    ngx_http_taurus_guard_secret_file_known(file, &fi, buf, *size);

    if (same) {
        OPENSSL_cleanse(buf, *size);
        ngx_free(buf);
        return NGX_DECLINED;
    }

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


/* the file is the one last read: nothing about it has changed */

static ngx_uint_t
ngx_http_taurus_guard_secret_file_same(
    ngx_http_taurus_guard_secret_file_t *file, ngx_file_info_t *fi)
{
    return file->known
           && fi->st_dev == file->dev
           && fi->st_ino == file->ino
           && fi->st_size == file->fsize
           && fi->st_mtim.tv_sec == file->mtime.tv_sec
           && fi->st_mtim.tv_nsec == file->mtime.tv_nsec
           && fi->st_ctim.tv_sec == file->ctime.tv_sec
           && fi->st_ctim.tv_nsec == file->ctime.tv_nsec;
}


/*
 * Remembers what was read, good or bad: a bad version is said once,
 * not again until the file changes.
 */

static void
ngx_http_taurus_guard_secret_file_known(
    ngx_http_taurus_guard_secret_file_t *file, ngx_file_info_t *fi,
    u_char *data, size_t size)
{
    file->dev = fi->st_dev;
    file->ino = fi->st_ino;
    file->fsize = fi->st_size;
    file->mtime = fi->st_mtim;
    file->ctime = fi->st_ctim;

    file->known = (EVP_Digest(data, size, file->digest, NULL, EVP_sha256(),
                              NULL)
                   == 1);
}


static void
ngx_http_taurus_guard_secret_file_error(ngx_log_t *log,
    ngx_http_taurus_guard_secret_file_t *file, ngx_err_t err,
    ngx_str_t *problem)
{
    ngx_uint_t  level;

    /* one line a minute per file, not one a request */

    if (!ngx_http_taurus_guard_pace(&file->error_pace)) {
        return;
    }

    level = file->text ? file->level : NGX_LOG_ALERT;

    ngx_log_error(level, log, err,
                  "taurus_guard: \"%V\" %V, %s", &file->path, problem,
                  file->text ? file->kept : "requests are refused");
}


/*
 * The worker user is known only once the whole configuration is read,
 * and the one hook that comes after it and can still refuse a
 * configuration, so that a reload keeps the running one, is the init of
 * a shared memory zone (a module's init_module failing makes the master
 * exit).  The zone holds nothing: it is there for its init, which runs
 * in "nginx -t", a start and a reload alike.
 */

static ngx_int_t
ngx_http_taurus_guard_secret_file_zone(ngx_conf_t *cf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, NGX_HTTP_TG_FILES_ZONE);

    zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                 &ngx_http_taurus_guard_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_taurus_guard_secret_file_init_zone;
    zone->data = cf->cycle;

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_secret_file_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_cycle_t  *cycle = zone->data;

    ngx_uint_t                             i;
    ngx_http_taurus_guard_main_conf_t     *mcf;
    ngx_http_taurus_guard_secret_file_t  **files;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_taurus_guard_module);

    files = mcf->files.elts;

    for (i = 0; i < mcf->files.nelts; i++) {
        if (ngx_http_taurus_guard_secret_file_owner(cycle, files[i])
            != NGX_OK
            || ngx_http_taurus_guard_secret_file_dirs(cycle, files[i])
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a file that only its owner may read must be the worker user's */

static ngx_int_t
ngx_http_taurus_guard_secret_file_owner(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_secret_file_t *file)
{
    ngx_uid_t         worker;
    ngx_core_conf_t  *ccf;
    ngx_file_info_t   fi;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    worker = (geteuid() == 0) ? ccf->user : geteuid();

    if (worker == 0 || worker == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    if (ngx_file_info(file->path.data, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_file_info_n " \"%V\" failed in %s:%ui",
                      &file->path, file->conf_file, file->conf_line);
        return NGX_ERROR;
    }

    if (fi.st_uid != worker) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "\"%V\" is owned by uid %ui, but nginx workers run as"
                      " \"%s\" (uid %ui) and could not read it: chown it to"
                      " the worker user, in %s:%ui",
                      &file->path, (ngx_uint_t) fi.st_uid,
                      ccf->username ? ccf->username : "?",
                      (ngx_uint_t) worker, file->conf_file,
                      file->conf_line);
        return NGX_ERROR;
    }

    /*
     * The master (root) reads any mode; the workers, which read a token
     * file before their first request and any file when it changes,
     * need the owner's read bit (the 077 bits are refused at load).
     */

    if (!(ngx_file_access(&fi) & S_IRUSR)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "\"%V\" has mode 0%ui%ui%ui: nginx workers run as"
                      " its owner \"%s\" (uid %ui) and could not read it:"
                      " make it 0600, in %s:%ui",
                      &file->path,
                      (ngx_uint_t) (ngx_file_access(&fi) >> 6) & 7,
                      (ngx_uint_t) (ngx_file_access(&fi) >> 3) & 7,
                      (ngx_uint_t) ngx_file_access(&fi) & 7,
                      ccf->username ? ccf->username : "?",
                      (ngx_uint_t) worker, file->conf_file,
                      file->conf_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The workers read the file again by name, a token file before their
 * first request, any file when it changes: every directory on its path
 * must let them through, or they would go on with the master's copy, or
 * with none.
 */

static ngx_int_t
ngx_http_taurus_guard_secret_file_dirs(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_secret_file_t *file)
{
    u_char           *dir;
    ngx_int_t         rc;
    ngx_core_conf_t  *ccf;

    rc = ngx_http_taurus_guard_worker_can_enter(cycle, &file->path, &dir);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                  "\"%V\": nginx workers run as \"%s\" (uid %ui) and"
                  " cannot enter \"%s\", so they could not read the file:"
                  " let them search that directory, in %s:%ui",
                  &file->path, ccf->username ? ccf->username : "?",
                  (ngx_uint_t) ccf->user, dir, file->conf_file,
                  file->conf_line);

    return NGX_ERROR;
}


static void
ngx_http_taurus_guard_secret_file_cleanup(void *data)
{
    ngx_http_taurus_guard_secret_file_forget(data);
}
