/*
 * Fuzz target for the audit chain's reading of a line (src/tg_audit.c):
 * the links the gateway and the verifier compute, and the verifier's
 * parse of "prev" and "decision".
 *
 * Properties (abort() on violation):
 * - tg_audit_line_digests() and tg_audit_chain_digest() succeed on any
 *   bytes; the link is the brief form when the line has one, else the
 *   whole line's SHA-256, and every digest is 64 lowercase hex digits;
 * - a line with no brief form has no body to check;
 * - a copy of the input gives the same digests (no read outside the
 *   given length: ASan sees the input's end);
 * - tg_audit_parse_link() fills prev (64 hex digits) and decision only
 *   on TG_OK.
 */

#include <stdlib.h>
#include <string.h>

#include "tg_audit.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void fa_check_hex(const char *hex);


static void
fa_check_hex(const char *hex)
{
    size_t  i;

    for (i = 0; i < 64; i++) {
        if (!((hex[i] >= '0' && hex[i] <= '9')
              || (hex[i] >= 'a' && hex[i] <= 'f')))
        {
            abort();
        }
    }

    if (hex[64] != '\0') {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                 link[65], prev[65], decision[16];
    uint8_t             *copy;
    tg_audit_digests_t   d, c;

    if (tg_audit_line_digests(data, size, &d) != TG_OK
        || tg_audit_chain_digest(data, size, link) != TG_OK)
    {
        abort();
    }

    fa_check_hex(d.full);
    fa_check_hex(link);

    if (d.brief[0] != '\0') {
        fa_check_hex(d.brief);

        if (strcmp(link, d.brief) != 0 || (d.body_ok != 0 && d.body_ok != 1))
        {
            abort();
        }

    } else if (strcmp(link, d.full) != 0 || d.body_ok != 0) {
        abort();
    }

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    if (tg_audit_line_digests(copy, size, &c) != TG_OK
        || strcmp(c.full, d.full) != 0 || strcmp(c.brief, d.brief) != 0
        || c.body_ok != d.body_ok)
    {
        abort();
    }

    free(copy);

    memset(prev, 'x', sizeof(prev));
    memset(decision, 'x', sizeof(decision));

    if (tg_audit_parse_link(data, size, prev, decision) == TG_OK) {
        fa_check_hex(prev);

        if (memchr(decision, '\0', sizeof(decision)) == NULL) {
            abort();
        }
    }

    return 0;
}
