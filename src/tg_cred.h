/*
 * The credentials file: the Huawei Cloud SDK profile format (INI), whose
 * [basic] section holds ak, sk and optionally security_token.
 *
 *     [basic]
 *     ak = AKEXAMPLE
 *     sk = secret
 *     security_token = ...   ; temporary credentials only
 *
 * Lines are "key = value" with spaces around either trimmed; '#' and ';'
 * start a comment line; other sections and unknown keys are ignored.
 * Values are printable ASCII without spaces.  The parsed values point
 * into the caller's buffer: the caller owns and wipes it.
 */

#ifndef TG_CRED_H
#define TG_CRED_H


#include "tg_core.h"


typedef struct {
    tg_str_t             ak;
    tg_str_t             sk;
    tg_str_t             security_token;    /* len 0 when absent */
} tg_cred_t;


/*
 * On error *line is the 1-based line at fault (0 when the whole file is,
 * e.g. TG_ERR_CRED_MISSING_SK).  No message ever quotes a value.
 */
tg_rc_t tg_cred_parse(tg_cred_t *c, const unsigned char *buf, size_t len,
    size_t *line) TG_WUR;


/*
 * The IAM password file of "taurus_guard_token iam=": the same format,
 * section [iam] with domain, user and password, all three required
 * (TG_ERR_IAM_NO_SECTION, TG_ERR_IAM_MISSING_DOMAIN, _USER, _PASSWORD
 * otherwise).  Values follow the same rule:
 * printable ASCII without spaces.
 */

typedef struct {
    tg_str_t             domain;
    tg_str_t             user;
    tg_str_t             password;
} tg_iam_cred_t;


tg_rc_t tg_iam_cred_parse(tg_iam_cred_t *c, const unsigned char *buf,
    size_t len, size_t *line) TG_WUR;


#endif /* TG_CRED_H */
