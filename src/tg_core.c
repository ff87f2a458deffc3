/*
 * taurus-guard core: result code names.
 */

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
    [TG_ERR_NOT_ALLOWED]     = "instance not allowed",
    [TG_ERR_INSTANCE_IS_PROJECT] = "an instance ID is a project ID of the"
                                   " allow-list",

    [TG_ERR_CRED_SYNTAX]     = "malformed line",
    [TG_ERR_CRED_NO_SECTION] = "no [basic] section",
    [TG_ERR_CRED_MISSING_AK] = "no \"ak\" in [basic]",
    [TG_ERR_CRED_MISSING_SK] = "no \"sk\" in [basic]",
    [TG_ERR_CRED_BAD_VALUE]  = "value with a space or a non-printable byte",
    [TG_ERR_CRED_MISSING_KEY] = "a required key is missing",
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
