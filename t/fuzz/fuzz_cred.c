/*
 * Fuzz target for the credentials file parser (src/tg_cred.c).
 *
 * Properties (abort() on violation):
 * - on TG_OK, ak and sk are non-empty, printable ASCII without spaces,
 *   and lie inside the input; security_token is absent (NULL, 0) or the
 *   same; *line is 0;
 * - on an error, nothing points into the input, and *line is 0 exactly
 *   for the whole-file errors and otherwise a line that exists;
 * - parsing a copy of the input gives the same result, line and value
 *   offsets (no hidden state, no read outside the given length).
 */

#include <stdlib.h>
#include <string.h>

#include "tg_cred.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void fc_check_value(tg_str_t v, const uint8_t *buf, size_t size,
    int optional);
static size_t fc_off(tg_str_t v, const uint8_t *buf);


static void
fc_check_value(tg_str_t v, const uint8_t *buf, size_t size, int optional)
{
    size_t  i;

    if (v.data == NULL) {
        if (!optional || v.len != 0) {
            abort();
        }

        return;
    }

    if (v.len == 0 || v.data < buf || v.len > size
        || (size_t) (v.data - buf) > size - v.len)
    {
        abort();
    }

    for (i = 0; i < v.len; i++) {
        if (v.data[i] <= 0x20 || v.data[i] >= 0x7f) {
            abort();
        }
    }
}


static size_t
fc_off(tg_str_t v, const uint8_t *buf)
{
    return (v.data == NULL) ? (size_t) -1 : (size_t) (v.data - buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t      i, line, line2, nlines;
    tg_rc_t     rc, rc2;
    uint8_t    *copy;
    tg_cred_t   c, c2;

    line = 7;
    rc = tg_cred_parse(&c, data, size, &line);

    nlines = 1;
    for (i = 0; i < size; i++) {
        nlines += (data[i] == '\n');
    }

    if (rc == TG_OK) {
        fc_check_value(c.ak, data, size, 0);
        fc_check_value(c.sk, data, size, 0);
        fc_check_value(c.security_token, data, size, 1);

        if (line != 0) {
            abort();
        }

    } else {
        if (c.ak.data != NULL || c.sk.data != NULL
            || c.security_token.data != NULL)
        {
            abort();
        }

        if (rc == TG_ERR_CRED_NO_SECTION
            || rc == TG_ERR_CRED_MISSING_AK
            || rc == TG_ERR_CRED_MISSING_SK)
        {
            if (line != 0) {
                abort();
            }

        } else if (rc == TG_ERR_CRED_SYNTAX || rc == TG_ERR_CRED_BAD_VALUE) {
            if (line == 0 || line > nlines) {
                abort();
            }

        } else {
            abort();
        }
    }

    /* an exact-size copy (a zero-size input still gets a valid pointer) */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    if (size > 0) {
        memcpy(copy, data, size);
    }

    line2 = 9;
    rc2 = tg_cred_parse(&c2, copy, size, &line2);

    if (rc2 != rc || line2 != line) {
        abort();
    }

    if (rc == TG_OK
        && (fc_off(c.ak, data) != fc_off(c2.ak, copy)
            || c.ak.len != c2.ak.len
            || fc_off(c.sk, data) != fc_off(c2.sk, copy)
            || c.sk.len != c2.sk.len
            || fc_off(c.security_token, data)
               != fc_off(c2.security_token, copy)
            || c.security_token.len != c2.security_token.len))
    {
        abort();
    }

    free(copy);

    return 0;
}
