/*
 * The credentials file parser.
 *
 * Matched against huaweicloud-sdk-python-v3,
 * huaweicloudsdkcore/auth/provider.py (ProfileCredentialProvider): the
 * SDK reads ~/.huaweicloud/credentials (or $HUAWEICLOUD_SDK_CREDENTIALS_FILE)
 * with Python's configparser as UTF-8 and takes "ak", "sk" and
 * "security_token" from the section "[basic]".  From configparser's
 * defaults we keep: section names are case-sensitive, key names are not
 * ("AK" is "ak"), spaces around the key and the value are trimmed, lines
 * whose first non-blank byte is '#' or ';' are comments, a key twice in a
 * section and a section twice are errors.  Where configparser is looser
 * we refuse rather than guess, so that no file means one thing to the SDK
 * and another to the gateway:
 *
 * - only '=' separates key and value; a key containing ':' (configparser's
 *   other delimiter) is TG_ERR_CRED_SYNTAX;
 * - an indented line in [basic] (a value continuation to configparser)
 *   and a non-comment line before the first section are
 *   TG_ERR_CRED_SYNTAX;
 * - a section header is '[' name ']' with nothing but blanks after it;
 * - ak, sk and security_token must be non-empty printable ASCII without
 *   spaces (so an inline "; comment", which configparser keeps in the
 *   value, is TG_ERR_CRED_BAD_VALUE);
 * - a UTF-8 BOM is refused (TG_ERR_CRED_SYNTAX at line 1): the SDK reads
 *   with "utf-8", not "utf-8-sig", and fails on it too;
 * - values from [DEFAULT], which configparser would inherit, are not.
 *
 * Unknown keys in [basic] (project_id, domain_id, iam_endpoint, ...) and
 * every other section are skipped without looking at their values.
 * Lines end in LF or CRLF.
 */

#include <string.h>

#include "tg_cred.h"


static tg_rc_t tg_ini_section(const unsigned char *buf, size_t len,
    const char *section, const char *const *keys, tg_str_t *values,
    size_t nkeys, size_t *line);
static int tg_cred_blank(unsigned char c);
static int tg_cred_key_is(const unsigned char *k, size_t klen,
    const char *name);
static tg_rc_t tg_cred_value(tg_str_t *dst, const unsigned char *v,
    size_t vlen);


tg_rc_t
tg_cred_parse(tg_cred_t *c, const unsigned char *buf, size_t len,
    size_t *line)
{
    tg_rc_t   rc;
    tg_str_t  v[3];

    static const char  *keys[] = { "ak", "sk", "security_token" };

    if (c == NULL || line == NULL || (buf == NULL && len != 0)) {
        return TG_ERR_ARG;
    }

    memset(c, 0, sizeof(tg_cred_t));

    rc = tg_ini_section(buf, len, "basic", keys, v, 3, line);

    if (rc == TG_OK && v[0].data == NULL) {
        rc = TG_ERR_CRED_MISSING_AK;
    }

    if (rc == TG_OK && v[1].data == NULL) {
        rc = TG_ERR_CRED_MISSING_SK;
    }

    if (rc != TG_OK) {
        /* no pointer into the secrets is left behind on failure */
        memset(v, 0, sizeof(v));
        return rc;
    }

    c->ak = v[0];
    c->sk = v[1];
    c->security_token = v[2];

    return TG_OK;
}


tg_rc_t
tg_iam_cred_parse(tg_iam_cred_t *c, const unsigned char *buf, size_t len,
    size_t *line)
{
    size_t    i;
    tg_rc_t   rc;
    tg_str_t  v[3];

    static const char     *keys[] = { "domain", "user", "password" };
    static const tg_rc_t   missing[] = {
        TG_ERR_IAM_MISSING_DOMAIN, TG_ERR_IAM_MISSING_USER,
        TG_ERR_IAM_MISSING_PASSWORD
    };

    if (c == NULL || line == NULL || (buf == NULL && len != 0)) {
        return TG_ERR_ARG;
    }

    memset(c, 0, sizeof(tg_iam_cred_t));

    rc = tg_ini_section(buf, len, "iam", keys, v, 3, line);

    if (rc == TG_ERR_CRED_NO_SECTION) {
        rc = TG_ERR_IAM_NO_SECTION;
    }

    for (i = 0; rc == TG_OK && i < 3; i++) {
        if (v[i].data == NULL) {
            rc = missing[i];
        }
    }

    if (rc != TG_OK) {
        memset(v, 0, sizeof(v));
        return rc;
    }

    c->domain = v[0];
    c->user = v[1];
    c->password = v[2];

    return TG_OK;
}


/*
 * The values of keys[] in [section], each NULL when absent: the rules of
 * the comment at the top, for any section.
 */

static tg_rc_t
tg_ini_section(const unsigned char *buf, size_t len, const char *section,
    const char *const *keys, tg_str_t *values, size_t nkeys, size_t *line)
{
    int                   in_section, seen_named, seen_section;
    size_t                n, i, llen, klen, vlen, ln, slen;
    tg_rc_t               rc;
    tg_str_t             *dst;
    const unsigned char  *p, *end, *l, *eq, *k, *v;

    memset(values, 0, nkeys * sizeof(tg_str_t));
    *line = 0;
    slen = strlen(section);

    if (len >= 3 && buf[0] == 0xef && buf[1] == 0xbb && buf[2] == 0xbf) {
        *line = 1;
        return TG_ERR_CRED_SYNTAX;
    }

    in_section = 0;
    seen_named = 0;
    seen_section = 0;
    ln = 0;
    p = buf;
    end = buf + len;

    while (p < end) {
        ln++;
        l = p;

        while (p < end && *p != '\n') {
            p++;
        }

        llen = p - l;

        if (p < end) {
            p++;                    /* the LF */
        }

        if (llen > 0 && l[llen - 1] == '\r') {
            llen--;
        }

        /* trailing blanks */
        while (llen > 0 && tg_cred_blank(l[llen - 1])) {
            llen--;
        }

        /* leading blanks */
        n = 0;
        while (n < llen && tg_cred_blank(l[n])) {
            n++;
        }

        if (n == llen || l[n] == '#' || l[n] == ';') {
            continue;               /* blank or comment */
        }

        if (l[0] == '[') {
            if (l[llen - 1] != ']' || llen < 3
                || memchr(l + 1, ']', llen - 2) != NULL)
            {
                goto syntax;
            }

            seen_section = 1;

            if (llen - 2 == slen && memcmp(l + 1, section, slen) == 0) {
                if (seen_named) {
                    goto syntax;    /* the section twice */
                }

                seen_named = 1;
                in_section = 1;

            } else {
                in_section = 0;
            }

            continue;
        }

        if (!seen_section) {
            goto syntax;
        }

        if (!in_section) {
            continue;
        }

        if (n != 0) {
            goto syntax;            /* a continuation to configparser */
        }

        eq = memchr(l, '=', llen);
        if (eq == NULL) {
            goto syntax;
        }

        k = l;
        klen = eq - l;

        while (klen > 0 && tg_cred_blank(k[klen - 1])) {
            klen--;
        }

        if (klen == 0 || memchr(k, ':', klen) != NULL) {
            goto syntax;
        }

        v = eq + 1;
        vlen = llen - (v - l);

        while (vlen > 0 && tg_cred_blank(*v)) {
            v++;
            vlen--;
        }

        dst = NULL;

        for (i = 0; i < nkeys; i++) {
            if (tg_cred_key_is(k, klen, keys[i])) {
                dst = &values[i];
                break;
            }
        }

        if (dst == NULL) {
            continue;
        }

        if (dst->data != NULL) {
            goto syntax;            /* the key twice */
        }

        rc = tg_cred_value(dst, v, vlen);
        if (rc != TG_OK) {
            *line = ln;
            goto failed;
        }
    }

    if (!seen_named) {
        rc = TG_ERR_CRED_NO_SECTION;
        goto failed;
    }

    return TG_OK;

syntax:

    *line = ln;
    rc = TG_ERR_CRED_SYNTAX;

failed:

    memset(values, 0, nkeys * sizeof(tg_str_t));

    return rc;
}


static int
tg_cred_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}


/* configparser lower-cases key names */
static int
tg_cred_key_is(const unsigned char *k, size_t klen, const char *name)
{
    size_t         i;
    unsigned char  ch;

    if (klen != strlen(name)) {
        return 0;
    }

    for (i = 0; i < klen; i++) {
        ch = k[i];

        if (ch >= 'A' && ch <= 'Z') {
            ch = ch - 'A' + 'a';
        }

        if (ch != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


static tg_rc_t
tg_cred_value(tg_str_t *dst, const unsigned char *v, size_t vlen)
{
    size_t  i;

    if (vlen == 0) {
        return TG_ERR_CRED_BAD_VALUE;
    }

    for (i = 0; i < vlen; i++) {
        if (v[i] <= 0x20 || v[i] >= 0x7f) {
            return TG_ERR_CRED_BAD_VALUE;
        }
    }

    dst->data = v;
    dst->len = vlen;

    return TG_OK;
}
