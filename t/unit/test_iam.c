/*
 * IAM token requests: the request body, byte for byte, and the expiry
 * of IAM's answer.  Expected times computed with Python's
 * calendar.timegm().
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tg_iam.h"


static void
test_body(void)
{
    size_t          len, n;
    tg_iam_cred_t   c;
    unsigned char   buf[512];

    static const char  want[] =
        "{\"auth\":{\"identity\":{\"methods\":[\"password\"],"
        "\"password\":{\"user\":{\"name\":\"tg-user\","
        "\"password\":\"p\\\"w\\\\d\",\"domain\":{\"name\":\"tg-domain\"}}}},"
        "\"scope\":{\"project\":{\"id\":"
        "\"0123456789abcdef0123456789abcdef\"}}}}";

    c.user.data = (const unsigned char *) "tg-user";
    c.user.len = 7;
    c.password.data = (const unsigned char *) "p\"w\\d";
    c.password.len = 5;
    c.domain.data = (const unsigned char *) "tg-domain";
    c.domain.len = 9;

    len = tg_iam_request_body(&c, (const unsigned char *)
                              "0123456789abcdef0123456789abcdef", 32,
                              NULL, 0);
    is_int(len, sizeof(want) - 1, "body: sized exactly");

    memset(buf, 'x', sizeof(buf));
    n = tg_iam_request_body(&c, (const unsigned char *)
                            "0123456789abcdef0123456789abcdef", 32,
                            buf, len - 1);
    ok(n == len && buf[0] == 'x', "body: nothing written when short");

    n = tg_iam_request_body(&c, (const unsigned char *)
                            "0123456789abcdef0123456789abcdef", 32,
                            buf, sizeof(buf));
    buf[n] = '\0';
    is_str((char *) buf, want, "body: the password method, scoped, escaped");
    ok(buf[n + 1] == 'x', "body: nothing written past it");
}


static void
test_expires(void)
{
    size_t   i;
    int64_t  t;

    static const struct {
        const char  *body;
        tg_rc_t      rc;
        int64_t      t;
    } cases[] = {
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}",
          TG_OK, 1796072400 },
        { "{\"token\":{\"methods\":[\"password\"],"
          "\"expires_at\":\"2000-02-29T23:59:59Z\"}}", TG_OK, 951868799 },
        { "{\"token\":{\"expires_at\":\"1970-01-01T00:00:00.0Z\"}}",
          TG_OK, 0 },
        { "{\"token\":{}}", TG_ERR_MISSING_KEY, 0 },
        { "{}", TG_ERR_MISSING_KEY, 0 },
        { "not json", TG_ERR_SYNTAX, 0 },
        { "{\"token\":{\"expires_at\":1796072400}}", TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30 21:00:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-13-30T21:00:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00+08:00\"}}",
          TG_ERR_TYPE, 0 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        t = -1;
        is_rc(tg_iam_expires_at((const unsigned char *) cases[i].body,
                                strlen(cases[i].body), &t),
              cases[i].rc, "expires_at case %zu", i);

        if (cases[i].rc == TG_OK) {
            is_int(t, cases[i].t, "expires_at case %zu: the time", i);
        }
    }
}


int
main(void)
{
    test_body();
    test_expires();

    return done_testing();
}
