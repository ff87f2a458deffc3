/*
 * taurus-guard core: result code names.
 */

#include <string.h>

#include "tg_core.h"


static const char  *tg_errors[TG_RC_MAX] = {
    [TG_OK]                  = "ok",
    [TG_ERR_NOMEM]           = "out of memory",
    [TG_ERR_BUF_TOO_SMALL]   = "buffer too small",
    [TG_ERR_CRYPTO]          = "cryptographic library failure",
    [TG_ERR_ARG]             = "invalid argument",

    [TG_ERR_EMPTY_BODY]      = "empty body",
    [TG_ERR_BOM]             = "byte order mark",
    [TG_ERR_UTF8]            = "invalid UTF-8",
    [TG_ERR_SYNTAX]          = "invalid JSON",
    [TG_ERR_TRAILING]        = "data after the JSON document",
    [TG_ERR_DEPTH]           = "nesting too deep",
    [TG_ERR_CTRL_CHAR]       = "control character in string",
    [TG_ERR_NUL_ESCAPE]      = "\\u0000 in string",
    [TG_ERR_NOT_OBJECT]      = "not a JSON object",
    [TG_ERR_DUP_KEY]         = "duplicate key",
    [TG_ERR_UNKNOWN_KEY]     = "unknown key",
    [TG_ERR_MISSING_KEY]     = "missing key",
    [TG_ERR_TYPE]            = "wrong type",
    [TG_ERR_EMPTY_STRING]    = "empty string",
    [TG_ERR_STRING_TOO_LONG] = "string too long",
    [TG_ERR_BATCH_EMPTY]     = "empty batch",
    [TG_ERR_BATCH_TOO_LARGE] = "batch too large",
    [TG_ERR_DUP_INSTANCE]    = "instance twice in one batch",
    [TG_ERR_DELAY_VALUE]     = "invalid delay",

    [TG_ERR_BAD_PROJECT_ID]  = "malformed project ID",
    [TG_ERR_BAD_INSTANCE_ID] = "malformed instance ID",
    [TG_ERR_DUP_ENTRY]       = "duplicate allow-list entry",
    [TG_ERR_INSTANCE_IS_PROJECT] = "an instance ID is a project ID of the"
                                   " allow-list",

    [TG_ERR_CRED_SYNTAX]     = "malformed line",
    [TG_ERR_CRED_NO_SECTION] = "no [basic] section",
    [TG_ERR_CRED_MISSING_AK] = "no \"ak\" in [basic]",
    [TG_ERR_CRED_MISSING_SK] = "no \"sk\" in [basic]",
    [TG_ERR_CRED_BAD_VALUE]  = "value with a space or a non-printable byte",
    [TG_ERR_IAM_NO_SECTION]  = "no [iam] section",
    [TG_ERR_IAM_MISSING_DOMAIN] = "no \"domain\" in [iam]",
    [TG_ERR_IAM_MISSING_USER] = "no \"user\" in [iam]",
    [TG_ERR_IAM_MISSING_PASSWORD] = "no \"password\" in [iam]",

    [TG_ERR_SIGN_HEADER]     = "header that cannot be signed",
};


const char *
tg_strerror(tg_rc_t rc)
{
    if ((unsigned) rc >= TG_RC_MAX || tg_errors[rc] == NULL) {
        return "unknown error";
    }

    return tg_errors[rc];
}


/*
 * Two digits a byte, copied from a table of every byte's pair, four
 * bytes a turn: a request writes the hex of five digests (its body's,
 * its canonical request's, its signature and two audit links) and its
 * audit id, and the loop of a digit at a time cost nine instructions a
 * byte.
 */

static const char  tg_hex_pairs[] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";


const char  tg_dec_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";


void
tg_hex_encode(const unsigned char *p, size_t n, char *out)
{
    size_t  i;

    for (i = 0; n - i >= 4; i += 4) {
        memcpy(out + 2 * i, tg_hex_pairs + 2 * (size_t) p[i], 2);
        memcpy(out + 2 * i + 2, tg_hex_pairs + 2 * (size_t) p[i + 1], 2);
        memcpy(out + 2 * i + 4, tg_hex_pairs + 2 * (size_t) p[i + 2], 2);
        memcpy(out + 2 * i + 6, tg_hex_pairs + 2 * (size_t) p[i + 3], 2);
    }

    for ( /* void */ ; i < n; i++) {
        memcpy(out + 2 * i, tg_hex_pairs + 2 * (size_t) p[i], 2);
    }
}


/*
 * Eight bytes at a time: the case bit of lower's letters is a mask that
 * p's word is or-ed with before it is compared.  A byte of lower is in
 * a..z when adding 0x80 - 'a' sets its high bit and adding 0x7f - 'z'
 * does not; lower is ASCII, so neither sum passes 0xff and no carry
 * reaches the next byte.  p is only or-ed, never added to: any byte of
 * it is compared as it is, but for the case bit of a letter.  The last
 * word of a string of eight bytes or more overlaps the one before it.
 */

#define TG_ONES   0x0101010101010101ULL
#define TG_HIGHS  0x8080808080808080ULL

int
tg_caseless_eq(const unsigned char *p, const char *lower, size_t len)
{
    size_t    i;
    uint64_t  w, l, m;

    if (len < 8) {
        for (i = 0; i < len; i++) {
            m = ((unsigned char) (lower[i] - 'a') < 26) ? 0x20 : 0;

            if ((p[i] | m) != (unsigned char) lower[i]) {
                return 0;
            }
        }

        return 1;
    }

    for (i = 0; /* void */; i += 8) {
        if (i > len - 8) {
            i = len - 8;
        }

        memcpy(&w, p + i, 8);
        memcpy(&l, lower + i, 8);

        m = (l + TG_ONES * (0x80 - 'a')) & ~(l + TG_ONES * (0x7f - 'z'))
            & TG_HIGHS;

        if ((w | (m >> 2)) != l) {
            return 0;
        }

        if (i == len - 8) {
            return 1;
        }
    }
}


/*
 * H. Hinnant's civil_from_days(): days since 0000-03-01, so that a leap
 * day ends its year, in eras of 400 years (146,097 days).
 */

void
tg_civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    int64_t  era, doe, yoe, doy, mp, m;

    days += 719468;
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    m = (mp < 10) ? mp + 3 : mp - 9;

    *day = (int) (doy - (153 * mp + 2) / 5 + 1);
    *month = (int) m;
    *year = yoe + era * 400 + (m <= 2);
}
