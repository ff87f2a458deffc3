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


/* scoped to the user's domain: the token an agency token is asked with */

static void
test_domain_body(void)
{
    size_t          len, n;
    tg_iam_cred_t   c;
    unsigned char   buf[512];

    static const char  want[] =
        "{\"auth\":{\"identity\":{\"methods\":[\"password\"],"
        "\"password\":{\"user\":{\"name\":\"tg-user\","
        "\"password\":\"pw\",\"domain\":{\"name\":\"tg-domain\"}}}},"
        "\"scope\":{\"domain\":{\"name\":\"tg-domain\"}}}}";

    c.user.data = (const unsigned char *) "tg-user";
    c.user.len = 7;
    c.password.data = (const unsigned char *) "pw";
    c.password.len = 2;
    c.domain.data = (const unsigned char *) "tg-domain";
    c.domain.len = 9;

    len = tg_iam_request_body(&c, NULL, 0, NULL, 0);
    is_int(len, sizeof(want) - 1, "domain body: sized exactly");

    n = tg_iam_request_body(&c, NULL, 0, buf, sizeof(buf));
    buf[n] = '\0';
    is_str((char *) buf, want, "domain body: scoped to the user's domain");
}


static void
test_agency_body(void)
{
    size_t          len, n;
    tg_str_t        domain, agency;
    unsigned char   buf[512];

    static const char  want[] =
        "{\"auth\":{\"identity\":{\"methods\":[\"assume_role\"],"
        "\"assume_role\":{\"domain_name\":\"owner\\\"dom\","
        "\"agency_name\":\"taurus_ops\"}},"
        "\"scope\":{\"project\":{\"id\":"
        "\"0123456789abcdef0123456789abcdef\"}}}}";

    domain.data = (const unsigned char *) "owner\"dom";
    domain.len = 9;
    agency.data = (const unsigned char *) "taurus_ops";
    agency.len = 10;

    len = tg_iam_agency_body(&domain, &agency, (const unsigned char *)
                             "0123456789abcdef0123456789abcdef", 32,
                             NULL, 0);
    is_int(len, sizeof(want) - 1, "agency body: sized exactly");

    memset(buf, 'x', sizeof(buf));
    n = tg_iam_agency_body(&domain, &agency, (const unsigned char *)
                           "0123456789abcdef0123456789abcdef", 32,
                           buf, len - 1);
    ok(n == len && buf[0] == 'x', "agency body: nothing written when short");

    n = tg_iam_agency_body(&domain, &agency, (const unsigned char *)
                           "0123456789abcdef0123456789abcdef", 32,
                           buf, sizeof(buf));
    buf[n] = '\0';
    is_str((char *) buf, want, "agency body: assume_role, scoped, escaped");
    ok(buf[n + 1] == 'x', "agency body: nothing written past it");
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

        /* the form exactly: nothing between the seconds and the Z */
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00+08:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00 Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00.Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00.12aZ\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00.0000000000Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00.123456789Z\"}}",
          TG_OK, 1796072400 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00ZZ\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-11-30T21:00:00.5Zjunk\"}}",
          TG_ERR_TYPE, 0 },

        /* a day its month has: no 31st of February read as March */
        { "{\"token\":{\"expires_at\":\"2026-02-31T00:00:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-02-29T00:00:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2028-02-29T00:00:00Z\"}}",
          TG_OK, 1835395200 },
        { "{\"token\":{\"expires_at\":\"2100-02-29T00:00:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-04-31T00:00:00Z\"}}",
          TG_ERR_TYPE, 0 },
        { "{\"token\":{\"expires_at\":\"2026-12-31T23:59:59Z\"}}",
          TG_OK, 1798761599 },

        /*
         * JSON that reads one way: cJSON cuts a string at \u0000 (or at a
         * raw NUL), takes the first of two keys where other readers take
         * the last, and stops reading after the value.
         */
        { "{\"token\":{\"expires_at\":\"2099-01-01T00:00:00Z\\u0000+08:00\""
          "}}", TG_ERR_NUL_ESCAPE, 0 },
        { "{\"token\":{\"expires_at\":\"2099-01-01T00:00:00Z\\u0000\"}}",
          TG_ERR_NUL_ESCAPE, 0 },
        { "{\"token\":{\"expires_at\\u0000x\":\"2099-01-01T00:00:00Z\"}}",
          TG_ERR_NUL_ESCAPE, 0 },
        { "{\"token\":{\"expires_at\":\"2099-01-01T00:00:00Z\","
          "\"expires_at\":\"2026-01-01T00:00:00Z\"}}", TG_ERR_DUP_KEY, 0 },
        { "{\"token\":{\"expires_at\":\"2026-01-01T00:00:00Z\"},"
          "\"token\":{\"expires_at\":\"2099-01-01T00:00:00Z\"}}",
          TG_ERR_DUP_KEY, 0 },
        { "{\"token\":{\"expires_at\":\"2099-01-01T00:00:00Z\"}} {}",
          TG_ERR_TRAILING, 0 },

        /* an escaped backslash before "u0000" is no \u0000 */
        { "{\"token\":{\"m\":\"\\\\u0000\","
          "\"expires_at\":\"2026-12-31T23:59:59Z\"}} \r\n",
          TG_OK, 1798761599 },
        { "{\"token\":{\"m\":\"\\\\\\u0000\","
          "\"expires_at\":\"2026-12-31T23:59:59Z\"}}",
          TG_ERR_NUL_ESCAPE, 0 },
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


static void
test_metadata(void)
{
    size_t         len;
    int64_t        t;
    unsigned char  out[256];

    static const char  body[] =
        "{\"credential\":{\"access\":\"TMPAK\",\"secret\":\"tmp-sk\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  lf[] =
        "{\"credential\":{\"access\":\"TMPAK\","
        "\"secret\":\"tmp-sk\\nsecurity_token=zzz\\n[x]\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  blank[] =
        "{\"credential\":{\"access\":\"TMPAK\",\"secret\":\"tmp-sk\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00 \","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  high[] =
        "{\"credential\":{\"access\":\"TMP\\u00c4K\",\"secret\":\"tmp-sk\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  nul[] =
        "{\"credential\":{\"access\":\"TMPAK\","
        "\"secret\":\"tmp-sk\\u0000more\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  raw[] =
        "{\"credential\":{\"access\":\"TMPAK\","
        "\"secret\":\"tmp-sk\0more\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  dup[] =
        "{\"credential\":{\"access\":\"TMPAK\",\"secret\":\"tmp-sk\","
        "\"secret\":\"other-sk\",\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}";
    static const char  trailing[] =
        "{\"credential\":{\"access\":\"TMPAK\",\"secret\":\"tmp-sk\","
        "\"securitytoken\":\"gQ1jbi1ub3J0aC00\","
        "\"expires_at\":\"2026-11-30T21:00:00.000000Z\"}}x";

    is_rc(tg_metadata_profile((const unsigned char *) body,
                              sizeof(body) - 1, out, sizeof(out), &len, &t),
          TG_OK, "metadata: parsed");
    out[len < sizeof(out) ? len : 0] = '\0';
    is_str((char *) out, "[basic]\nak=TMPAK\nsk=tmp-sk\n"
           "security_token=gQ1jbi1ub3J0aC00\n", "metadata: as a profile");
    is_int(t, 1796072400, "metadata: expires_at");

    is_rc(tg_metadata_profile((const unsigned char *) body,
                              sizeof(body) - 1, out, 20, &len, &t),
          TG_ERR_BUF_TOO_SMALL, "metadata: short buffer");

    is_rc(tg_metadata_profile((const unsigned char *)
                              "{\"credential\":{\"access\":\"A\"}}", 29,
                              out, sizeof(out), &len, &t),
          TG_ERR_MISSING_KEY, "metadata: no secret");
    is_rc(tg_metadata_profile((const unsigned char *) "[]", 2,
                              out, sizeof(out), &len, &t),
          TG_ERR_SYNTAX, "metadata: not an object");

    /* a line feed would add a line of the answer's own to the profile */

    is_rc(tg_metadata_profile((const unsigned char *) lf, sizeof(lf) - 1,
                              out, sizeof(out), &len, &t),
          TG_ERR_CRED_BAD_VALUE, "metadata: a line feed in the secret");
    is_rc(tg_metadata_profile((const unsigned char *) blank,
                              sizeof(blank) - 1, out, sizeof(out), &len, &t),
          TG_ERR_CRED_BAD_VALUE, "metadata: a trailing blank in the token");
    is_rc(tg_metadata_profile((const unsigned char *) high,
                              sizeof(high) - 1, out, sizeof(out), &len, &t),
          TG_ERR_CRED_BAD_VALUE, "metadata: a byte above ASCII in the AK");

    /* cJSON would send "tmp-sk", or the first secret, as the answer's */

    is_rc(tg_metadata_profile((const unsigned char *) nul, sizeof(nul) - 1,
                              out, sizeof(out), &len, &t),
          TG_ERR_NUL_ESCAPE, "metadata: \\u0000 in the secret");
    is_rc(tg_metadata_profile((const unsigned char *) raw, sizeof(raw) - 1,
                              out, sizeof(out), &len, &t),
          TG_ERR_NUL_ESCAPE, "metadata: a raw NUL in the secret");
    is_rc(tg_metadata_profile((const unsigned char *) dup, sizeof(dup) - 1,
                              out, sizeof(out), &len, &t),
          TG_ERR_DUP_KEY, "metadata: the secret twice");
    is_rc(tg_metadata_profile((const unsigned char *) trailing,
                              sizeof(trailing) - 1, out, sizeof(out), &len,
                              &t),
          TG_ERR_TRAILING, "metadata: bytes after the answer");
}


/*
 * The identity a token is asked with.  Expected digests computed with
 * Python: hashlib.sha256(bytes([3]) + part(b"tg-domain")
 * + part(b"tg-user") + part(b'p"w\\d')).hexdigest(), where part(b) is
 * struct.pack(">I", len(b)) + b; the agency's with bytes([5]) and
 * part(b"tg-owner") + part(b"tg-agency") after the password.
 */

static void
test_identity(void)
{
    char            hex[65];
    tg_str_t        domain, agency;
    tg_iam_cred_t   c;
    unsigned char   md[TG_SHA256_LEN], md2[TG_SHA256_LEN];

    c.user.data = (const unsigned char *) "tg-user";
    c.user.len = 7;
    c.password.data = (const unsigned char *) "p\"w\\d";
    c.password.len = 5;
    c.domain.data = (const unsigned char *) "tg-domain";
    c.domain.len = 9;

    domain.data = (const unsigned char *) "tg-owner";
    domain.len = 8;
    agency.data = (const unsigned char *) "tg-agency";
    agency.len = 9;

    is_rc(tg_iam_identity(&c, NULL, NULL, md), TG_OK, "identity: TG_OK");
    tg_sha256_hex_of(md, hex);
    is_str(hex, "00f31f9b2a50e908295f3f483a705f85"
                "76cae5fc24d0393d219f21f8b6d55046",
           "identity: the user's, known answer");

    is_rc(tg_iam_identity(&c, &domain, &agency, md), TG_OK,
          "agency identity: TG_OK");
    tg_sha256_hex_of(md, hex);
    is_str(hex, "708cbdb87a583da253c58c6aa8e984dc"
                "e6a5a611568231bc472a8331d4f6d48a",
           "agency identity: known answer");

    /* a byte moved from the user to the password is another identity */

    c.user.len = 6;
    c.password.data = (const unsigned char *) "rp\"w\\d";
    c.password.len = 6;

    is_rc(tg_iam_identity(&c, NULL, NULL, md2), TG_OK,
          "identity, a byte moved: TG_OK");
    tg_sha256_hex_of(md2, hex);
    ok(strcmp(hex, "00f31f9b2a50e908295f3f483a705f85"
                   "76cae5fc24d0393d219f21f8b6d55046") != 0,
       "identity: a byte moved between parts changes it");

    /* another password, the same user */

    c.user.len = 7;
    c.password.data = (const unsigned char *) "p\"w\\e";
    c.password.len = 5;

    is_rc(tg_iam_identity(&c, &domain, &agency, md2), TG_OK,
          "agency identity, another password: TG_OK");
    ok(memcmp(md, md2, TG_SHA256_LEN) != 0,
       "agency identity: another password changes it");
}


int
main(void)
{
    test_body();
    test_domain_body();
    test_agency_body();
    test_expires();
    test_metadata();
    test_identity();

    return done_testing();
}
