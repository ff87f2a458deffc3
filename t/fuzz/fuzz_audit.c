/*
 * Fuzz target for the audit chain's reading of a line (src/tg_audit.c,
 * src/tg_audit_read.c): the links the gateway and the verifier compute,
 * and the verifier's strict reading of a record.
 *
 * Properties (abort() on violation):
 * - tg_audit_line_digests() and tg_audit_chain_digest() succeed on any
 *   bytes; the link is the brief form when the line has one, else the
 *   whole line's SHA-256, and every digest is 64 lowercase hex digits;
 * - a line with no brief form has no body to check;
 * - a copy of the input gives the same digests (no read outside the
 *   given length: ASan sees the input's end);
 * - a line tg_audit_read_line() accepts is one JSON object to cJSON
 *   too, a second parser, whose "prev" and "decision" are the ones read
 *   (where no "\u0000" can cut cJSON's keys short): prev is 64 hex
 *   digits, decision one the gateway writes; its digests are the line's;
 *   and where it has a brief form, its items are its "instances".
 */

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tg_audit.h"
#include "tg_audit_read.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void fa_check_hex(const char *hex);
static void fa_check_read(const uint8_t *data, size_t size, uint8_t *line);


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
    char                 link[65];
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

    copy = malloc(size + 1);
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

    fa_check_read(data, size, copy);

    free(copy);

    return 0;
}


/*
 * data as a line of the log, its '\n' added when it has none: line is a
 * copy of data with room for it
 */

static void
fa_check_read(const uint8_t *data, size_t size, uint8_t *line)
{
    size_t                i, n;
    cJSON                *root, *p, *d, *in;
    const char           *end;
    tg_audit_line_t       l;
    tg_audit_digests_t    c;
    char                  err[TG_AUDIT_READ_ERR];

    if (size > 0 && data[size - 1] == '\n') {
        size--;
    }

    line[size] = '\n';
    n = size + 1;

    memset(&l, 'x', sizeof(l));
    memset(err, 'x', sizeof(err));

    if (tg_audit_read_line(line, n, &l, err, sizeof(err)) != TG_OK) {
        if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0') {
            abort();
        }

        return;
    }

    fa_check_hex(l.prev);

    if (memchr(l.decision, '\0', sizeof(l.decision)) == NULL
        || (strcmp(l.decision, "allow") != 0
            && strcmp(l.decision, "deny") != 0
            && strcmp(l.decision, "invalid") != 0
            && strcmp(l.decision, "error") != 0
            && strcmp(l.decision, "done") != 0
            && strcmp(l.decision, "would_deny") != 0))
    {
        abort();
    }

    if (tg_audit_line_digests(line, n, &c) != TG_OK
        || strcmp(c.full, l.digests.full) != 0
        || strcmp(c.brief, l.digests.brief) != 0
        || c.body_ok != l.digests.body_ok)
    {
        abort();
    }

    /* cJSON cuts a key at "\u0000": two different keys may look one */

    for (i = 0; i + 6 <= size; i++) {
        if (memcmp(data + i, "\\u0000", 6) == 0) {
            return;
        }
    }

    end = NULL;
    root = cJSON_ParseWithLengthOpts((const char *) data, size, &end, 0);

    if (root == NULL || !cJSON_IsObject(root)
        || end != (const char *) data + size)
    {
        abort();
    }

    p = cJSON_GetObjectItemCaseSensitive(root, "prev");
    d = cJSON_GetObjectItemCaseSensitive(root, "decision");
    in = cJSON_GetObjectItemCaseSensitive(root, "instances");

    if (!cJSON_IsString(p) || strcmp(p->valuestring, l.prev) != 0
        || !cJSON_IsString(d) || strcmp(d->valuestring, l.decision) != 0
        || (l.digests.brief[0] != '\0' && !cJSON_IsArray(in)))
    {
        abort();
    }

    cJSON_Delete(root);
}
