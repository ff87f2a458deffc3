/*
 * The chain verifier's reading of one audit record line, strict enough
 * that the record it checks is the record any JSON reader (jq, Python's
 * json) reads from the same bytes.
 *
 * Accepted: one JSON object (RFC 8259, I-JSON's RFC 7493) in the compact
 * form the gateway writes: nothing before or after it (no BOM, no CR),
 * no white space outside a string, valid UTF-8 (RFC 3629), no raw
 * control character in a string (C0, DEL, C1) nor U+2028 or U+2029, all
 * of which the gateway escapes, no unpaired surrogate escape, strict
 * numbers and literals; no key twice in one object, escapes decoded (readers
 * keep the last of two, cJSON the first); at most TG_AUDIT_READ_DEPTH
 * levels, TG_AUDIT_READ_KEYS keys in one object, TG_AUDIT_READ_KEY bytes
 * in one key and TG_AUDIT_READ_NUMBER bytes in one number, far more than
 * a record has (Python's json refuses an integer of more than 4300
 * digits, which jq reads).  Its "prev" is 64 lowercase hex digits and its
 * "decision" one the gateway writes, both compared decoded and whole (a
 * "\u0000" does not cut them short).  When the line has a brief link
 * (tg_audit.h), the items the link leaves out are the record's own
 * "instances" and the digest they are checked against its own
 * "body_sha256", not a nested key of the same name.
 */

#ifndef TG_AUDIT_READ_H
#define TG_AUDIT_READ_H


#include "tg_core.h"
#include "tg_audit.h"


#define TG_AUDIT_READ_DEPTH  16
#define TG_AUDIT_READ_KEYS   64
#define TG_AUDIT_READ_KEY    64
#define TG_AUDIT_READ_NUMBER 64
#define TG_AUDIT_READ_ERR    128         /* a good size for err buffers */


typedef struct {
    char                 prev[65];
    char                 decision[16];
    tg_audit_digests_t   digests;       /* of the line, '\n' included */
} tg_audit_line_t;


/*
 * line is len bytes, the last of them the line's '\n'.  TG_OK fills l.
 * Any other result writes a NUL-terminated message to err (at most
 * errlen bytes): what is wrong and its column (the 1-based byte offset),
 * e.g. "duplicate key \"decision\" at column 57"; a key from the line is
 * quoted only when it is printable ASCII.  TG_ERR_CRYPTO when hashing
 * failed: the line was not judged.
 */
tg_rc_t tg_audit_read_line(const unsigned char *line, size_t len,
    tg_audit_line_t *l, char *err, size_t errlen) TG_WUR;


#endif /* TG_AUDIT_READ_H */
