/*
 * Fuzz target for the allow-list (src/tg_allow.c).
 *
 * The input is lines of "project_id instance_id" (split at the first
 * space).  Each line is added, and the table is checked against a naive
 * list kept here:
 *
 * - tg_allow_add() returns exactly the result the naive rules give
 *   (bad project, bad instance, duplicate, ok, in that order);
 * - a pair is contained right after an add that returned TG_OK or
 *   TG_ERR_DUP_ENTRY, and never after a malformed one;
 * - the pair with its last byte changed is contained exactly when the
 *   naive list has it;
 * - at the end every naive pair is contained, the counts agree, and the
 *   digest is SHA-256 of the naive list sorted bytewise.
 *
 * - the same bytes read as an allow-list file by tg_allow_parse(): every
 *   result is one it documents, with its token inside the text, the
 *   line within the text's lines and the position moving forward; the
 *   table it built gives a digest.
 *
 * Any violation abort()s.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tg_allow.h"


#define FA_MAX_PAIRS  512
#define FA_LINE_MAX   (TG_PROJECT_ID_LEN + 1 + TG_INSTANCE_ID_MAX_LEN + 1)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    char                 line[FA_LINE_MAX + 1];     /* "p i", NUL */
    size_t               len;
} fa_pair_t;


static int fa_id_ok(const uint8_t *p, size_t len, size_t min, size_t max);
static int fa_naive_has(const fa_pair_t *list, size_t n, const uint8_t *p,
    size_t plen, const uint8_t *i, size_t ilen);
static int fa_cmp(const void *x, const void *y);
static void fa_parse(const uint8_t *data, size_t size);


static int
fa_id_ok(const uint8_t *p, size_t len, size_t min, size_t max)
{
    size_t  i;

    if (len < min || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= 'A' && p[i] <= 'Z')))
        {
            return 0;
        }
    }

    return 1;
}


static int
fa_naive_has(const fa_pair_t *list, size_t n, const uint8_t *p, size_t plen,
    const uint8_t *i, size_t ilen)
{
    size_t  k;

    for (k = 0; k < n; k++) {
        if (list[k].len == plen + 1 + ilen
            && memcmp(list[k].line, p, plen) == 0
            && list[k].line[plen] == ' '
            && memcmp(list[k].line + plen + 1, i, ilen) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static int
fa_cmp(const void *x, const void *y)
{
    /* the lines hold no NUL: strcmp is bytewise, as LC_ALL=C sort */
    return strcmp(((const fa_pair_t *) x)->line,
                  ((const fa_pair_t *) y)->line);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             has;
    char            hex[65], want[65];
    size_t          n, k, plen, ilen, nproj;
    tg_rc_t         rc, expect;
    uint8_t         mut[TG_INSTANCE_ID_MAX_LEN];
    EVP_MD_CTX     *md_ctx;
    fa_pair_t      *list;
    tg_allow_t     *a;
    unsigned char   md[EVP_MAX_MD_SIZE];
    const uint8_t  *p, *end, *eol, *sp, *inst;

    static const char  digits[] = "0123456789abcdef";

    list = malloc(FA_MAX_PAIRS * sizeof(fa_pair_t));
    if (list == NULL) {
        return 0;
    }

    a = tg_allow_create(0);
    if (a == NULL) {
        free(list);
        return 0;
    }

    n = 0;
    p = data;
    end = data + size;

    while (p < end && n < FA_MAX_PAIRS) {
        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            eol = end;
        }

        sp = memchr(p, ' ', eol - p);
        if (sp == NULL) {
            sp = eol;
        }

        plen = sp - p;
        inst = (sp < eol) ? sp + 1 : eol;
        ilen = eol - inst;

        if (!fa_id_ok(p, plen, 32, 32)) {
            expect = TG_ERR_BAD_PROJECT_ID;

        } else if (!fa_id_ok(inst, ilen, 32, 64)) {
            expect = TG_ERR_BAD_INSTANCE_ID;

        } else if (fa_naive_has(list, n, p, plen, inst, ilen)) {
            expect = TG_ERR_DUP_ENTRY;

        } else {
            expect = TG_OK;
        }

        rc = tg_allow_add(a, p, plen, inst, ilen);
        if (rc != expect) {
            abort();
        }

        if (rc == TG_OK) {
            memcpy(list[n].line, p, plen);
            list[n].line[plen] = ' ';
            memcpy(list[n].line + plen + 1, inst, ilen);
            list[n].len = plen + 1 + ilen;
            list[n].line[list[n].len] = '\0';
            n++;
        }

        has = tg_allow_contains(a, p, plen, inst, ilen);

        if (has != (rc == TG_OK || rc == TG_ERR_DUP_ENTRY)) {
            abort();
        }

        /* the last byte changed, to each of a few values */
        if (ilen > 0 && ilen <= sizeof(mut)) {
            for (k = 0; k < 4; k++) {
                memcpy(mut, inst, ilen);
                mut[ilen - 1] = (uint8_t) ("0aZ\0"[k] + inst[ilen - 1] % 3);

                if (tg_allow_contains(a, p, plen, mut, ilen)
                    != fa_naive_has(list, n, p, plen, mut, ilen))
                {
                    abort();
                }
            }
        }

        p = (eol < end) ? eol + 1 : end;
    }

    if (tg_allow_count(a) != n) {
        abort();
    }

    nproj = 0;

    for (k = 0; k < n; k++) {
        size_t  j;

        if (!tg_allow_contains(a, (const uint8_t *) list[k].line, 32,
                               (const uint8_t *) list[k].line + 33,
                               list[k].len - 33))
        {
            abort();
        }

        for (j = 0; j < k; j++) {
            if (memcmp(list[j].line, list[k].line, 32) == 0) {
                break;
            }
        }

        nproj += (j == k);
    }

    if (tg_allow_project_count(a) != nproj) {
        abort();
    }

    qsort(list, n, sizeof(fa_pair_t), fa_cmp);

    md_ctx = EVP_MD_CTX_new();
    if (md_ctx == NULL || EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) != 1) {
        abort();
    }

    for (k = 0; k < n; k++) {
        list[k].line[list[k].len] = '\n';

        if (EVP_DigestUpdate(md_ctx, list[k].line, list[k].len + 1) != 1) {
            abort();
        }
    }

    if (EVP_DigestFinal_ex(md_ctx, md, NULL) != 1) {
        abort();
    }

    EVP_MD_CTX_free(md_ctx);

    for (k = 0; k < 32; k++) {
        want[2 * k] = digits[md[k] >> 4];
        want[2 * k + 1] = digits[md[k] & 0x0f];
    }

    want[64] = '\0';

    if (tg_allow_digest(a, hex) != TG_OK || strcmp(hex, want) != 0) {
        abort();
    }

    tg_allow_destroy(a);
    free(list);

    fa_parse(data, size);

    return 0;
}


static void
fa_parse(const uint8_t *data, size_t size)
{
    char               hex[65];
    size_t             k, lines, pos;
    tg_rc_t            rc;
    tg_allow_t        *b;
    tg_allow_parse_t   ps;

    b = tg_allow_create(0);
    if (b == NULL) {
        return;
    }

    lines = 1;

    for (k = 0; k < size; k++) {
        lines += (data[k] == '\n');
    }

    memset(&ps, 0, sizeof(ps));
    ps.text = data;
    ps.len = size;

    for ( ;; ) {
        pos = ps.pos;
        rc = tg_allow_parse(b, &ps);

        if (ps.pos > ps.len || ps.line < 1 || ps.line > lines
            || (ps.token.len > 0
                && (ps.token.data < data
                    || ps.token.data + ps.token.len > data + size)))
        {
            abort();
        }

        if (rc != TG_OK) {
            if (rc != TG_ERR_BAD_PROJECT_ID && rc != TG_ERR_BAD_INSTANCE_ID
                && rc != TG_ERR_DUP_ENTRY && rc != TG_ERR_SYNTAX)
            {
                abort();
            }

            if (rc == TG_ERR_SYNTAX && ps.what == NULL) {
                abort();
            }

            break;
        }

        if (ps.include.data == NULL) {
            if (ps.pos != ps.len) {
                abort();
            }

            break;
        }

        if (ps.pos <= pos) {
            abort();
        }
    }

    if (tg_allow_digest(b, hex) != TG_OK) {
        abort();
    }

    tg_allow_destroy(b);
}
