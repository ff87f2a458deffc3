
/*
 * taurus-guard-verify: checks the hash chain of an audit log, or of a
 * rotated series of logs given oldest first, and reports the first break.
 *
 *     taurus-guard-verify taurus-audit.log.2 taurus-audit.log.1 \
 *         taurus-audit.log
 *
 * Every record carries "prev", the SHA-256 of the line before it (the
 * first record ever has 64 zeros); an allow or would_deny record's link
 * leaves out its instances' items, which must then make again the body
 * its "body_sha256" is the digest of (tg_audit.h).  A record changed,
 * removed, inserted or reordered breaks the link after it.  Each line is
 * read as strictly as tg_audit_read.h says, so what is checked is what a
 * JSON reader reads.  Exit status: 0 intact, 1 a break or a malformed
 * record, 2 a file could not be read.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_audit.h"
#include "tg_audit_read.h"
#include "tg_sign.h"


#define TG_VERIFY_LINE_MAX  (1024L * 1024 * 1024)


typedef struct {
    unsigned long        records;
    unsigned long        allow;
    unsigned long        done;
    unsigned long        refused;
    tg_audit_digests_t   last;          /* of the record before */
    const char          *last_path;
    unsigned long        last_lineno;
    int                  started;
} tg_verify_t;


static int tg_verify_file(tg_verify_t *v, const char *path);


int
main(int argc, char **argv)
{
    int          i, rc;
    tg_verify_t  v;

    if (argc < 2 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "--help") == 0)
    {
        fprintf(stderr, "usage: %s AUDIT_LOG [NEWER_AUDIT_LOG ...]\n"
                "checks the hash chain of taurus-guard audit logs, given"
                " oldest first\n", argv[0]);
        return 2;
    }

    memset(&v, 0, sizeof(tg_verify_t));

    for (i = 1; i < argc; i++) {
        rc = tg_verify_file(&v, argv[i]);
        if (rc != 0) {
            return rc;
        }
    }

    /* nothing links to the last record, but its body can be checked */

    if (v.started && v.last.brief[0] != '\0' && !v.last.body_ok) {
        printf("break: %s:%lu: its instances do not match its body_sha256:"
               " changed instances or delay\n", v.last_path, v.last_lineno);
        return 1;
    }

    printf("ok: %lu records in %d file(s), chain intact"
           " (%lu allowed, %lu completed, %lu refused or failed)\n",
           v.records, argc - 1, v.allow, v.done, v.refused);

    return 0;
}


static int
tg_verify_file(tg_verify_t *v, const char *path)
{
    int              rc;
    FILE            *f;
    char            *line;
    size_t           len;
    ssize_t          n;
    tg_rc_t          trc;
    unsigned long    lineno;
    tg_audit_line_t  rec;
    char             err[TG_AUDIT_READ_ERR];

    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 2;
    }

    line = NULL;
    len = 0;
    lineno = 0;
    rc = 0;

    for ( ;; ) {
        errno = 0;
        n = getline(&line, &len, f);

        if (n == -1) {
            break;
        }

        lineno++;

        if (n == 0 || line[n - 1] != '\n') {
            printf("break: %s:%lu: torn record (no final newline)\n",
                   path, lineno);
            rc = 1;
            goto done;
        }

        if (n > TG_VERIFY_LINE_MAX) {
            printf("break: %s:%lu: record too long\n", path, lineno);
            rc = 1;
            goto done;
        }

        trc = tg_audit_read_line((unsigned char *) line, (size_t) n, &rec,
                                 err, sizeof(err));

        if (trc == TG_ERR_CRYPTO) {
            fprintf(stderr, "%s:%lu: %s\n", path, lineno, err);
            rc = 2;
            goto done;
        }

        if (trc != TG_OK) {
            printf("break: %s:%lu: not an audit record: %s\n", path, lineno,
                   err);
            rc = 1;
            goto done;
        }

        if (!v->started) {
            printf("start: %s:%lu: chain starts%s\n", path, lineno,
                   strspn(rec.prev, "0") == TG_SHA256_HEX_LEN
                   ? " at its beginning" : " after earlier, unchecked records");

        } else if (strcmp(rec.prev, v->last.full) == 0
                   && (v->last.brief[0] == '\0' || v->last.body_ok))
        {
            /*
             * linked by the whole line: a record that has no brief form,
             * or one written before it, whose instances still make its
             * body (a record whose instances were all removed links by
             * its whole line as by its brief form)
             */

        } else if (v->last.brief[0] == '\0'
                   || strcmp(rec.prev, v->last.brief) != 0)
        {
            printf("break: %s:%lu: \"prev\" does not match the record"
                   " before it: changed, removed or reordered records\n",
                   path, lineno);
            rc = 1;
            goto done;

        } else if (!v->last.body_ok) {
            printf("break: %s:%lu: the instances of the record before it"
                   " do not match its body_sha256: changed instances or"
                   " delay\n", path, lineno);
            rc = 1;
            goto done;
        }

        v->last = rec.digests;
        v->started = 1;
        v->last_path = path;
        v->last_lineno = lineno;
        v->records++;

        if (strcmp(rec.decision, "allow") == 0
            || strcmp(rec.decision, "would_deny") == 0)
        {
            v->allow++;

        } else if (strcmp(rec.decision, "done") == 0) {
            v->done++;

        } else {
            v->refused++;
        }
    }

    /* getline() fails without an error on the stream too (ENOMEM) */

    if (ferror(f) || !feof(f)) {
        fprintf(stderr, "%s:%lu: cannot be read: %s\n", path, lineno + 1,
                strerror(errno ? errno : EIO));
        rc = 2;
    }

done:

    free(line);
    fclose(f);

    return rc;
}
