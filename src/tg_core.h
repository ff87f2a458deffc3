/*
 * taurus-guard core: shared types and result codes.
 *
 * The core is plain C99 over libc, OpenSSL and cJSON.  It knows nothing
 * of nginx: every input is a pointer and a length, every output goes to
 * a caller-provided buffer of explicit size, and every result is a
 * tg_rc_t that tg_strerror() can name.
 */

#ifndef TG_CORE_H
#define TG_CORE_H


#include <stddef.h>
#include <stdint.h>
#include <string.h>


#if defined(__GNUC__) || defined(__clang__)
#define TG_WUR  __attribute__((warn_unused_result))
#else
#define TG_WUR
#endif


typedef enum {
    TG_OK = 0,

    /* generic */
    TG_ERR_NOMEM,
    TG_ERR_BUF_TOO_SMALL,
    TG_ERR_CRYPTO,
    TG_ERR_ARG,

    /* body validation (tg_batch) */
    TG_ERR_EMPTY_BODY,
    TG_ERR_BOM,
    TG_ERR_UTF8,
    TG_ERR_SYNTAX,
    TG_ERR_TRAILING,
    TG_ERR_DEPTH,
    TG_ERR_CTRL_CHAR,
    TG_ERR_NUL_ESCAPE,
    TG_ERR_NOT_OBJECT,
    TG_ERR_DUP_KEY,
    TG_ERR_UNKNOWN_KEY,
    TG_ERR_MISSING_KEY,
    TG_ERR_TYPE,
    TG_ERR_EMPTY_STRING,
    TG_ERR_STRING_TOO_LONG,
    TG_ERR_BATCH_EMPTY,
    TG_ERR_BATCH_TOO_LARGE,
    TG_ERR_DUP_INSTANCE,
    TG_ERR_DELAY_VALUE,

    /* allow-list (tg_allow) */
    TG_ERR_BAD_PROJECT_ID,
    TG_ERR_BAD_INSTANCE_ID,
    TG_ERR_DUP_ENTRY,
    TG_ERR_INSTANCE_IS_PROJECT,

    /* credentials (tg_cred) */
    TG_ERR_CRED_SYNTAX,
    TG_ERR_CRED_NO_SECTION,
    TG_ERR_CRED_MISSING_AK,
    TG_ERR_CRED_MISSING_SK,
    TG_ERR_CRED_BAD_VALUE,
    TG_ERR_IAM_NO_SECTION,
    TG_ERR_IAM_MISSING_DOMAIN,
    TG_ERR_IAM_MISSING_USER,
    TG_ERR_IAM_MISSING_PASSWORD,

    /* signing (tg_sign) */
    TG_ERR_SIGN_HEADER,

    TG_RC_MAX
} tg_rc_t;


typedef struct {
    const unsigned char  *data;
    size_t                len;
} tg_str_t;


const char *tg_strerror(tg_rc_t rc);

/*
 * The proleptic Gregorian date of a day counted from 1970-01-01 (day 0,
 * negative before it), as gmtime_r() has it but by arithmetic, without
 * its time zone lock: the audit record's time stamp and the signer's
 * X-Sdk-Date.
 */
void tg_civil_from_days(int64_t days, int64_t *year, int *month, int *day);

/* the lowercase hex of n bytes at p: 2 n digits at out, no NUL */
void tg_hex_encode(const unsigned char *p, size_t n, char *out);

/*
 * Whether the len bytes at p are lower, a lowercase ASCII literal of as
 * many bytes, in any case (a header name, a media type): 1 or 0.
 */
int tg_caseless_eq(const unsigned char *p, const char *lower, size_t len);


/*
 * v (below 100) as its two decimal digits at p, copied from a table of
 * the hundred pairs: a time stamp's fields and a number's digits two at
 * a time, not a division a digit.
 */

extern const char  tg_dec_pairs[];

static inline void
tg_dec2(char *p, unsigned v)
{
    memcpy(p, tg_dec_pairs + 2 * v, 2);
}


#endif /* TG_CORE_H */
