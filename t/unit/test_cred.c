/*
 * Unit tests of the credentials file parser (src/tg_cred.c).
 *
 * The good files are written as the Huawei Cloud SDK documents its
 * profile file (~/.huaweicloud/credentials, section [basic], keys ak, sk
 * and security_token); the AK/SK here are made up.
 */

#include <stdlib.h>
#include <string.h>

#include "tg_cred.h"
#include "tap.h"


typedef struct {
    const char  *name;
    const char  *text;
    tg_rc_t      rc;
    size_t       line;
    const char  *ak;
    const char  *sk;
    const char  *token;       /* NULL: none */
} cred_case_t;


static const cred_case_t  cases[] = {

    /* good */

    { "minimal", "[basic]\nak=AK1\nsk=SK1\n", TG_OK, 0, "AK1", "SK1", NULL },

    { "no final newline", "[basic]\nak=AK1\nsk=SK1", TG_OK, 0,
      "AK1", "SK1", NULL },

    { "spaces and tabs around =",
      "[basic]\nak \t=\t AK1 \t\nsk= SK1\n", TG_OK, 0, "AK1", "SK1", NULL },

    { "CRLF",
      "[basic]\r\nak = AK1\r\nsk = SK1\r\n", TG_OK, 0, "AK1", "SK1", NULL },

    { "CRLF without the final newline",
      "[basic]\r\nak = AK1\r\nsk = SK1\r", TG_OK, 0, "AK1", "SK1", NULL },

    { "comments and blank lines",
      "# credentials\n; another comment\n\n[basic]\n  # indented comment\n"
      "\t\nak = AK1\n;sk = NOT_THIS\nsk = SK1\n\n", TG_OK, 0,
      "AK1", "SK1", NULL },

    { "other sections ignored",
      "[global]\nak = GLOBALAK\nak = twice is fine here\nno equals here\n"
      "  indented\n"
      "[basic]\nak = AK1\nsk = SK1\n[other]\nsk = OTHER\n", TG_OK, 0,
      "AK1", "SK1", NULL },

    { "temporary credentials",
      "[basic]\nak = AK1\nsk = SK1\nsecurity_token = gQpjbi1ub3J0aC00+/=\n",
      TG_OK, 0, "AK1", "SK1", "gQpjbi1ub3J0aC00+/=" },

    { "unknown keys ignored, even with spaces in values",
      "[basic]\nproject_id = 0123\nak = AK1\niam_endpoint = a b c\n"
      "sk = SK1\n", TG_OK, 0, "AK1", "SK1", NULL },

    { "upper-case key names (configparser lower-cases them)",
      "[basic]\nAK = AK1\nSk = SK1\n", TG_OK, 0, "AK1", "SK1", NULL },

    { "'=' inside the value",
      "[basic]\nak = AK1\nsk = a=b==\n", TG_OK, 0, "AK1", "a=b==", NULL },

    { "'#' and ';' inside the value",
      "[basic]\nak = A#1\nsk = S;1\n", TG_OK, 0, "A#1", "S;1", NULL },

    /* bad */

    { "empty file", "", TG_ERR_CRED_NO_SECTION, 0, NULL, NULL, NULL },

    { "no [basic]", "[global]\nak=A\nsk=S\n", TG_ERR_CRED_NO_SECTION, 0,
      NULL, NULL, NULL },

    { "[BASIC] is another section", "[BASIC]\nak=A\nsk=S\n",
      TG_ERR_CRED_NO_SECTION, 0, NULL, NULL, NULL },

    { "[basic_old] is another section", "[basic_old]\nak=A\nsk=S\n",
      TG_ERR_CRED_NO_SECTION, 0, NULL, NULL, NULL },

    { "missing ak", "[basic]\nsk=S\n", TG_ERR_CRED_MISSING_AK, 0,
      NULL, NULL, NULL },

    { "missing sk", "[basic]\nak=A\n", TG_ERR_CRED_MISSING_SK, 0,
      NULL, NULL, NULL },

    { "ak only in another section", "[basic]\nsk=S\n[x]\nak=A\n",
      TG_ERR_CRED_MISSING_AK, 0, NULL, NULL, NULL },

    { "ak twice", "[basic]\nak=A\nsk=S\nak=B\n", TG_ERR_CRED_SYNTAX, 4,
      NULL, NULL, NULL },

    { "ak twice, other case", "[basic]\nak=A\nAK=A\nsk=S\n",
      TG_ERR_CRED_SYNTAX, 3, NULL, NULL, NULL },

    { "security_token twice",
      "[basic]\nak=A\nsk=S\nsecurity_token=T\n\nsecurity_token=T\n",
      TG_ERR_CRED_SYNTAX, 6, NULL, NULL, NULL },

    { "[basic] twice", "[basic]\nak=A\n[x]\n[basic]\nsk=S\n",
      TG_ERR_CRED_SYNTAX, 4, NULL, NULL, NULL },

    { "line without '='", "[basic]\nak=A\nsk S\n", TG_ERR_CRED_SYNTAX, 3,
      NULL, NULL, NULL },

    { "\"//\" is no comment", "[basic]\nak=A\nsk=S\n// x\n",
      TG_ERR_CRED_SYNTAX, 4, NULL, NULL, NULL },

    { "':' delimiter", "[basic]\nak: A\nsk=S\n", TG_ERR_CRED_SYNTAX, 2,
      NULL, NULL, NULL },

    { "':' in the key", "[basic]\nak:x=A\nsk=S\n", TG_ERR_CRED_SYNTAX, 2,
      NULL, NULL, NULL },

    { "empty key", "[basic]\n = A\nsk=S\n", TG_ERR_CRED_SYNTAX, 2,
      NULL, NULL, NULL },

    { "indented key (a continuation to configparser)",
      "[basic]\nak=A\n  sk=S\n", TG_ERR_CRED_SYNTAX, 3, NULL, NULL, NULL },

    { "key before any section", "ak=A\n[basic]\nak=A\nsk=S\n",
      TG_ERR_CRED_SYNTAX, 1, NULL, NULL, NULL },

    { "header with junk after it", "[basic] x\nak=A\nsk=S\n",
      TG_ERR_CRED_SYNTAX, 1, NULL, NULL, NULL },

    { "unclosed header", "\n[basic\nak=A\nsk=S\n", TG_ERR_CRED_SYNTAX, 2,
      NULL, NULL, NULL },

    { "empty header", "[]\n[basic]\nak=A\nsk=S\n", TG_ERR_CRED_SYNTAX, 1,
      NULL, NULL, NULL },

    { "malformed header in another section",
      "[basic]\nak=A\nsk=S\n[x]y]\n", TG_ERR_CRED_SYNTAX, 4,
      NULL, NULL, NULL },

    { "UTF-8 BOM (refused, as the SDK's utf-8 reader does)",
      "\xef\xbb\xbf[basic]\nak=A\nsk=S\n", TG_ERR_CRED_SYNTAX, 1,
      NULL, NULL, NULL },

    { "space inside the value", "[basic]\nak=A\nsk=S S\n",
      TG_ERR_CRED_BAD_VALUE, 3, NULL, NULL, NULL },

    { "inline comment stays in the value", "[basic]\nak=A ; mine\nsk=S\n",
      TG_ERR_CRED_BAD_VALUE, 2, NULL, NULL, NULL },

    { "empty value", "[basic]\nak=\nsk=S\n", TG_ERR_CRED_BAD_VALUE, 2,
      NULL, NULL, NULL },

    { "tab inside the value", "[basic]\nak=A\tB\nsk=S\n",
      TG_ERR_CRED_BAD_VALUE, 2, NULL, NULL, NULL },

    { "lone CR inside the value", "[basic]\nak=A\rB\nsk=S\n",
      TG_ERR_CRED_BAD_VALUE, 2, NULL, NULL, NULL },

    { "UTF-8 in the value", "[basic]\nak=A\nsk=S\xc3\xa9\n",
      TG_ERR_CRED_BAD_VALUE, 3, NULL, NULL, NULL },

    { "DEL in the value", "[basic]\nak=A\nsk=S\x7f\n",
      TG_ERR_CRED_BAD_VALUE, 3, NULL, NULL, NULL },

    { "bad security_token", "[basic]\nak=A\nsk=S\nsecurity_token=a b\n",
      TG_ERR_CRED_BAD_VALUE, 4, NULL, NULL, NULL },
};


/* a printable copy of s: "(none)" when absent */
static const char *
cstr(tg_str_t s, char *buf, size_t size)
{
    if (s.data == NULL) {
        return (s.len == 0) ? "(none)" : "(NULL with a length)";
    }

    if (s.len >= size) {
        return "(too long)";
    }

    memcpy(buf, s.data, s.len);
    buf[s.len] = '\0';

    return buf;
}


static void
test_table(void)
{
    size_t          i, len, line;
    tg_rc_t         rc;
    tg_cred_t       c;
    unsigned char  *buf;
    char            tmp[128];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const cred_case_t  *t = &cases[i];

        /* an exact-size heap copy, so ASan sees any over-read */
        len = strlen(t->text);
        buf = malloc(len ? len : 1);
        if (buf == NULL) {
            ok(0, "%s: malloc", t->name);
            continue;
        }

        memcpy(buf, t->text, len);

        line = 12345;
        rc = tg_cred_parse(&c, buf, len, &line);

        is_rc(rc, t->rc, "%s: rc", t->name);
        is_int(line, t->line, "%s: line", t->name);

        if (t->rc == TG_OK) {
            is_str(cstr(c.ak, tmp, sizeof(tmp)), t->ak, "%s: ak", t->name);
            is_str(cstr(c.sk, tmp, sizeof(tmp)), t->sk, "%s: sk", t->name);
            is_str(cstr(c.security_token, tmp, sizeof(tmp)),
                   t->token ? t->token : "(none)", "%s: security_token",
                   t->name);
            ok(c.ak.data >= buf && c.ak.data + c.ak.len <= buf + len,
               "%s: ak points into the buffer", t->name);

        } else {
            ok(c.ak.data == NULL && c.sk.data == NULL
               && c.security_token.data == NULL,
               "%s: nothing left pointing at the buffer", t->name);
        }

        free(buf);
    }
}


static void
test_args(void)
{
    size_t     line;
    tg_cred_t  c;

    is_rc(tg_cred_parse(NULL, (const unsigned char *) "", 0, &line),
          TG_ERR_ARG, "NULL cred");
    is_rc(tg_cred_parse(&c, (const unsigned char *) "", 0, NULL),
          TG_ERR_ARG, "NULL line");
    is_rc(tg_cred_parse(&c, NULL, 3, &line), TG_ERR_ARG, "NULL buffer");
    is_rc(tg_cred_parse(&c, (const unsigned char *) "[basic]\nak=A\nsk=S\n",
                        12, &line),
          TG_ERR_CRED_MISSING_SK, "length honoured, not the NUL");
}


/* the IAM password file: the same rules, section [iam] */

static void
test_iam(void)
{
    size_t         line;
    tg_rc_t        rc;
    tg_iam_cred_t  c;

    static const char  spaced[] = "[iam]\ndomain=d\nuser=u u\npassword=p\n";
    static const char  good[] =
        "# IAM user for the gateway\n"
        "[basic]\nak = NOTUSED\n"
        "[iam]\r\ndomain = tg-domain\r\nUSER=tg-user\r\n"
        "password = P@ss-w0rd!\r\n";

    rc = tg_iam_cred_parse(&c, (const unsigned char *) good,
                           sizeof(good) - 1, &line);
    is_rc(rc, TG_OK, "iam: parsed");

    if (rc == TG_OK) {
        ok(c.domain.len == 9
           && memcmp(c.domain.data, "tg-domain", 9) == 0, "iam: domain");
        ok(c.user.len == 7 && memcmp(c.user.data, "tg-user", 7) == 0,
           "iam: user, key name case-insensitive");
        ok(c.password.len == 10
           && memcmp(c.password.data, "P@ss-w0rd!", 10) == 0,
           "iam: password");
    }

    is_rc(tg_iam_cred_parse(&c, (const unsigned char *)
                            "[iam]\ndomain=d\nuser=u\n",
                            sizeof("[iam]\ndomain=d\nuser=u\n") - 1, &line),
          TG_ERR_IAM_MISSING_PASSWORD, "iam: no password");
    ok(c.domain.data == NULL, "iam: nothing left on failure");

    is_rc(tg_iam_cred_parse(&c, (const unsigned char *)
                            "[basic]\nak=A\nsk=S\n",
                            sizeof("[basic]\nak=A\nsk=S\n") - 1, &line),
          TG_ERR_IAM_NO_SECTION, "iam: no [iam]");

    rc = tg_iam_cred_parse(&c, (const unsigned char *) spaced,
                           sizeof(spaced) - 1,
                           &line);
    is_rc(rc, TG_ERR_CRED_BAD_VALUE, "iam: a space in a value");
    is_int(line, 3, "iam: at its line");

    rc = tg_iam_cred_parse(&c, (const unsigned char *)
                           "[iam]\nuser=u\nuser=v\n",
                           sizeof("[iam]\nuser=u\nuser=v\n") - 1, &line);
    is_rc(rc, TG_ERR_CRED_SYNTAX, "iam: a key twice");
    is_int(line, 3, "iam: the second one");
}


int
main(void)
{
    test_table();
    test_args();
    test_iam();

    return done_testing();
}
