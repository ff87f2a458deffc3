
/*
 * taurus-guard-verify: checks the hash chain of an audit log, or of a
 * rotated series of logs given oldest first, and reports the first break.
 *
 *     taurus-guard-verify [-a LINK] [-t LINK] taurus-audit.log.2 \
 *         taurus-audit.log.1 taurus-audit.log
 *
 * Every record carries "prev", the SHA-256 of the line before it (the
 * first record ever has 64 zeros); an allow or would_deny record's link
 * leaves out its instances' items, which must then make again the body
 * its "body_sha256" is the digest of (tg_audit.h).  A record changed,
 * removed, inserted or reordered breaks the link after it.  Each line is
 * read as strictly as tg_audit_read.h says, so what is checked is what a
 * JSON reader reads.
 *
 * The chain cannot show what was cut from either end: records removed
 * before the first one given, or after the last.  So the first record
 * must link to 64 zeros or to the link given with -a (one an earlier run
 * printed as "end:"), and with -t some record must have the link given
 * (an earlier run's "end:", or a line's sha256sum): a chain cut short
 * before it or rewritten up to it fails.  Exit status: 0 intact and
 * anchored, 1 a break or a malformed record, 2 a file could not be read
 * or the report not written (or a usage error), 3 intact but not
 * anchored: its first record links to records not given, or there is no
 * record, and no -a says where the chain was.
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
    const char          *first_path;
    unsigned long        first_lineno;
    const char          *through_path;  /* where -t's record is */
    unsigned long        through_lineno;
    char                *after;         /* -a, or NULL */
    char                *through;       /* -t, or NULL */
    unsigned             started:1;
    unsigned             anchored:1;    /* to 64 zeros or to -a */
    unsigned             through_seen:1;
} tg_verify_t;


static int tg_verify_series(tg_verify_t *v, int files, char **paths,
    char **shown);
static int tg_verify_file(tg_verify_t *v, const char *path,
    const char *shown);
static char *tg_verify_shown(const char *path);
static int tg_verify_link_arg(const char *arg, char link[65],
    int zero);
static int tg_verify_zero(const char *arg);
static int tg_verify_usage(FILE *out, const char *name);


int
main(int argc, char **argv)
{
    int           i, k, files, rc;
    char        **shown;
    tg_verify_t   v;
    char          after[65], through[65];

    memset(&v, 0, sizeof(tg_verify_t));

    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {

        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }

        /* asked for: the usage on the standard output, and success */

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            tg_verify_usage(stdout, argv[0]);
            return (fflush(stdout) == 0 && !ferror(stdout)) ? 0 : 2;
        }

        /*
         * One link each: of two, the first would be dropped unchecked,
         * and "ok" said of a series that has no record with it
         */

        if ((strcmp(argv[i], "-a") == 0 && v.after != NULL)
            || (strcmp(argv[i], "-t") == 0 && v.through != NULL))
        {
            fprintf(stderr, "%s: %s: given twice\n", argv[0], argv[i]);
            return 2;
        }

        if (strcmp(argv[i], "-a") == 0 && i + 1 < argc) {
            if (!tg_verify_link_arg(argv[++i], after, 1)) {
                fprintf(stderr, "%s: -a: not a link: -a takes the 64"
                        " lowercase hex digits an \"end:\" line ends with,"
                        " or 0\n", argv[0]);
                return 2;
            }

            v.after = after;
            continue;
        }

        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            if (!tg_verify_link_arg(argv[++i], through, 0)) {
                fprintf(stderr, "%s: -t: %s: -t takes the 64 lowercase hex"
                        " digits an \"end:\" line ends with, or a line's"
                        " sha256sum\n", argv[0],
                        tg_verify_zero(argv[i])
                        ? "0 is not a link (it stands for no record)"
                        : "not a link");
                return 2;
            }

            v.through = through;
            continue;
        }

        return tg_verify_usage(stderr, argv[0]);
    }

    files = argc - i;

    if (files == 0) {
        return tg_verify_usage(stderr, argv[0]);
    }

    shown = calloc((size_t) files, sizeof(char *));
    if (shown == NULL) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 2;
    }

    rc = 0;

    for (k = 0; k < files; k++) {
        shown[k] = tg_verify_shown(argv[i + k]);

        if (shown[k] == NULL) {
            fprintf(stderr, "%s: out of memory\n", argv[0]);
            rc = 2;
            goto done;
        }
    }

    rc = tg_verify_series(&v, files, argv + i, shown);

    /*
     * The lines are the verdict as much as the status: a script keeps
     * the link of "end:" after an exit 0.  A report lost on its way (a
     * full disk, a closed stdout) must not exit 0 without it.
     */

    errno = 0;

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: the report cannot be written: %s\n", argv[0],
                strerror(errno ? errno : EIO));
        rc = 2;
    }

done:

    for (k = 0; k < files; k++) {
        free(shown[k]);
    }

    free(shown);

    return rc;
}


static int
tg_verify_series(tg_verify_t *v, int files, char **paths, char **shown)
{
    int  i, rc;

    for (i = 0; i < files; i++) {
        rc = tg_verify_file(v, paths[i], shown[i]);
        if (rc != 0) {
            return rc;
        }
    }

    /* nothing links to the last record, but its body can be checked */

    if (v->started && v->last.brief[0] != '\0' && !v->last.body_ok) {
        printf("break: %s:%lu: its instances do not match its body_sha256:"
               " changed instances or delay\n", v->last_path, v->last_lineno);
        return 1;
    }

    if (v->through != NULL && !v->through_seen) {
        if (v->after == NULL || strcmp(v->through, v->after) != 0) {
            printf("break: no record given has the link given with -t: the"
                   " chain was cut short before it, or rewritten up to"
                   " it\n");
            return 1;
        }

        printf("through: the link given with -t is the one given with"
               " -a\n");

    } else if (v->through != NULL) {
        printf("through: %s:%lu: its link is the one given with -t\n",
               v->through_path, v->through_lineno);
    }

    if (!v->started) {
        if (v->after == NULL) {
            printf("unanchored: no record in %d file(s): nothing shows that"
                   " none was removed (give -a with a link an earlier check"
                   " printed)\n", files);
            return 3;
        }

        printf("end: no record given, the link is still -a's: link %s\n",
               v->after);
        v->anchored = 1;

    } else {
        printf("end: %s:%lu: link %s\n", v->last_path, v->last_lineno,
               v->last.brief[0] != '\0' ? v->last.brief : v->last.full);
    }

    printf("%s: %lu records in %d file(s), chain intact"
           " (%lu allowed, %lu completed, %lu refused or failed)",
           v->anchored ? "ok" : "unanchored", v->records, files, v->allow,
           v->done, v->refused);

    if (!v->anchored) {
        printf(", but nothing shows what came before %s:%lu (give the file"
               " before it, or -a with a link an earlier check printed)\n",
               v->first_path, v->first_lineno);
        return 3;
    }

    printf("\n");

    return 0;
}


/*
 * path is the file to open, shown its name as printed: every line about a
 * record names its file, and a name must not make a line of its own
 */

static int
tg_verify_file(tg_verify_t *v, const char *path, const char *shown)
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
        fprintf(stderr, "%s: %s\n", shown, strerror(errno));
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
                   shown, lineno);
            rc = 1;
            goto done;
        }

        if (n > TG_VERIFY_LINE_MAX) {
            printf("break: %s:%lu: record too long\n", shown, lineno);
            rc = 1;
            goto done;
        }

        trc = tg_audit_read_line((unsigned char *) line, (size_t) n, &rec,
                                 err, sizeof(err));

        if (trc == TG_ERR_CRYPTO) {
            fprintf(stderr, "%s:%lu: %s\n", shown, lineno, err);
            rc = 2;
            goto done;
        }

        if (trc != TG_OK) {
            printf("break: %s:%lu: not an audit record: %s\n", shown, lineno,
                   err);
            rc = 1;
            goto done;
        }

        if (!v->started && v->after != NULL) {
            if (strcmp(rec.prev, v->after) != 0) {
                printf("break: %s:%lu: \"prev\" does not match the link"
                       " given with -a: records before it removed, added or"
                       " changed\n", shown, lineno);
                rc = 1;
                goto done;
            }

            printf("start: %s:%lu: chain starts after the record whose link"
                   " -a gives\n", shown, lineno);
            v->anchored = 1;

        } else if (!v->started) {
            v->anchored = (strspn(rec.prev, "0") == TG_SHA256_HEX_LEN);

            printf("start: %s:%lu: chain starts%s\n", shown, lineno,
                   v->anchored ? " at its beginning"
                               : " after earlier, unchecked records");

        } else if (strcmp(rec.prev, v->last.full) == 0
                   && (v->last.brief[0] == '\0' || v->last.body_ok))
        {
            /*
             * linked by the whole line: a record that has no brief form,
             * or one written before it, whose instances still make its
             * body (a record whose instances were all removed links by
             * its whole line as by its brief form)
             */

        } else if ((v->last.brief[0] == '\0'
                    || strcmp(rec.prev, v->last.brief) != 0)
                   && v->last_path == shown)
        {
            printf("break: %s:%lu: \"prev\" does not match the record"
                   " before it: changed, removed or reordered records\n",
                   shown, lineno);
            rc = 1;
            goto done;

        } else if (v->last.brief[0] == '\0'
                   || strcmp(rec.prev, v->last.brief) != 0)
        {
            /* the first record of a file: name the one it should follow */

            printf("break: %s:%lu: \"prev\" does not match the last record"
                   " of %s (line %lu): a file missing between them or given"
                   " out of order, or records changed, removed or"
                   " reordered\n", shown, lineno, v->last_path,
                   v->last_lineno);
            rc = 1;
            goto done;

        } else if (!v->last.body_ok) {
            printf("break: %s:%lu: the instances of the record before it",
                   shown, lineno);

            if (v->last_path != shown) {
                printf(" (%s:%lu)", v->last_path, v->last_lineno);
            }

            printf(" do not match its body_sha256: changed instances or"
                   " delay\n");
            rc = 1;
            goto done;
        }

        if (!v->started) {
            v->first_path = shown;
            v->first_lineno = lineno;
        }

        v->last = rec.digests;
        v->started = 1;
        v->last_path = shown;
        v->last_lineno = lineno;
        v->records++;

        if (v->through != NULL && !v->through_seen
            && (strcmp(v->through, rec.digests.full) == 0
                || strcmp(v->through, rec.digests.brief) == 0))
        {
            v->through_seen = 1;
            v->through_path = shown;
            v->through_lineno = lineno;
        }

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
        fprintf(stderr, "%s:%lu: cannot be read: %s\n", shown, lineno + 1,
                strerror(errno ? errno : EIO));
        rc = 2;
    }

done:

    free(line);
    fclose(f);

    return rc;
}


/*
 * A link exactly as "end:" and sha256sum print it: 64 lowercase hex
 * digits.  With zero (-a), the 64 zeros the first record ever follows,
 * also written "0".  Without (-t), neither: they stand for no record,
 * so -t would name none, and beside -a 0 was taken as found.  Anything
 * else is a typing or a copying mistake: a usage error, never a verdict
 * on the files.
 */

static int
tg_verify_link_arg(const char *arg, char link[65], int zero)
{
    size_t  i;

    if (tg_verify_zero(arg)) {
        if (!zero) {
            return 0;
        }

        memset(link, '0', 64);
        link[64] = '\0';
        return 1;
    }

    if (strlen(arg) != 64) {
        return 0;
    }

    for (i = 0; i < 64; i++) {
        if ((arg[i] < '0' || arg[i] > '9') && (arg[i] < 'a' || arg[i] > 'f')) {
            return 0;
        }

        link[i] = arg[i];
    }

    link[64] = '\0';

    return 1;
}


/* "0", or the 64 zeros it stands for */

static int
tg_verify_zero(const char *arg)
{
    size_t  n;

    n = strlen(arg);

    return (n == 1 || n == 64) && strspn(arg, "0") == n;
}


/* bytes outside printable ASCII, and '\\', as \xNN */

static char *
tg_verify_shown(const char *path)
{
    char                 *shown, *p;
    size_t                len;
    const unsigned char  *c;

    static const char  hex[] = "0123456789abcdef";

    len = strlen(path);

    shown = malloc(len * 4 + 1);
    if (shown == NULL) {
        return NULL;
    }

    p = shown;

    for (c = (const unsigned char *) path; *c != '\0'; c++) {
        if (*c >= 0x20 && *c < 0x7f && *c != '\\') {
            *p++ = (char) *c;
            continue;
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[*c >> 4];
        *p++ = hex[*c & 0x0f];
    }

    *p = '\0';

    return shown;
}


static int
tg_verify_usage(FILE *out, const char *name)
{
    fprintf(out, "usage: %s [-a LINK] [-t LINK] AUDIT_LOG"
            " [NEWER_AUDIT_LOG ...]\n"
            "checks the hash chain of taurus-guard audit logs, given oldest"
            " first\n"
            "  -a LINK  the link the first record must follow (an earlier"
            " check's \"end:\"),\n"
            "           or 0 for the first record ever written\n"
            "  -t LINK  a link some record must have (an earlier check's"
            " \"end:\", or a\n"
            "           line's sha256sum)\n"
            "  -h       this text, on the standard output (also --help)\n",
            name);

    return 2;
}
