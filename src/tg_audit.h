/*
 * The audit record encoder: one JSON object per line, every untrusted
 * string escaped by tg_json_escape().  A caller allocates the record's
 * bound (tg_audit_bound()) and writes it in one pass through the output
 * writer, which can hash the line for the chain as it goes; or sizes it
 * first (tg_audit_encode() with size 0).  Either way it goes to the file
 * in one write().
 */

#ifndef TG_AUDIT_H
#define TG_AUDIT_H


#include "tg_core.h"
#include "tg_batch.h"
#include "tg_out.h"


#define TG_AUDIT_ID_LEN      32     /* hex digits */
#define TG_RFC3339_MS_LEN    24     /* 2026-11-29T21:00:00.123Z */
#define TG_AUDIT_REQUEST_ID_MAX  128    /* bytes of request_id kept */
#define TG_AUDIT_USER_MAX        1024   /* bytes of user kept */
#define TG_AUDIT_METHOD_MAX      64     /* bytes of method kept */
#define TG_AUDIT_URI_MAX         512    /* bytes of uri kept */


typedef enum {
    TG_DECISION_ALLOW = 0,
    TG_DECISION_DENY,
    TG_DECISION_INVALID,
    TG_DECISION_ERROR,
    TG_DECISION_DONE,
    TG_DECISION_WOULD_DENY      /* report mode: forwarded all the same */
} tg_decision_t;


/* one try of the upstream, as nginx's $upstream_addr and friends list it */
typedef struct {
    tg_str_t             addr;          /* data NULL: left out */
    int                  status;        /* 0: left out */
    int64_t              bytes_sent;    /* to the upstream */
} tg_audit_attempt_t;


typedef struct {
    const char          *id;            /* TG_AUDIT_ID_LEN hex digits */
    int64_t              time_sec;      /* Unix time */
    int                  time_msec;     /* 0..999 */
    tg_str_t             client;
    tg_decision_t        decision;

    /* each optional: a field with data NULL (or 0 items) is left out */
    tg_str_t             project_id;
    const tg_instance_t *instances;
    size_t               ninstances;
    int                  has_delay;
    int                  delay;
    tg_delay_kind_t      delay_kind;
    tg_str_t             reason;
    const char          *body_sha256;   /* 64 hex digits */
    const tg_str_t      *denied;        /* instance IDs refused */
    size_t               ndenied;
    tg_str_t             method;        /* cut at TG_AUDIT_METHOD_MAX */
    tg_str_t             uri;           /* cut at TG_AUDIT_URI_MAX */
    tg_str_t             user;          /* the caller's identity, cut at
                                           TG_AUDIT_USER_MAX */
    tg_str_t             policy;        /* allow-list digest */
    tg_str_t             items;         /* the instances as the forwarded
                                           body has them (tg_batch_items()),
                                           copied; data NULL: written from
                                           instances */
    int                  status;        /* HTTP status; 0: left out */
    int64_t              duration_ms;   /* -1: left out */
    int64_t              bytes;         /* response body; -1: left out */
    int                  has_forwarded;
    int                  forwarded;     /* the upstream got the request */
    tg_str_t             request_id;    /* the upstream's X-Request-Id,
                                           cut at TG_AUDIT_REQUEST_ID_MAX */
    const tg_audit_attempt_t *upstream; /* each try, in order */
    size_t               nupstream;
    const tg_str_t      *reentries;     /* refused second forwards */
    size_t               nreentries;
    const char          *prev;          /* hash chain: 64 hex digits of
                                           SHA-256 of the previous line */
} tg_audit_record_t;


const char *tg_decision_name(tg_decision_t d);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and a NUL */
tg_rc_t tg_rfc3339_ms(int64_t sec, int msec,
    char out[TG_RFC3339_MS_LEN + 1]) TG_WUR;

/*
 * Returns the length of the record, '\n' included.  Writes it to buf only
 * when size is at least that length (no NUL is written).
 */
size_t tg_audit_encode(const tg_audit_record_t *rec, unsigned char *buf,
    size_t size);

/*
 * At least the length of the record, '\n' and rec->prev included: every
 * string counted at 6 bytes a byte, the most escaping makes of one, but
 * rec->items, escaped already and copied as they are, at one.  A buffer
 * of this size holds the record without a sizing pass.
 */
size_t tg_audit_bound(const tg_audit_record_t *rec);

/*
 * The record in two pieces through o: all of it but the link (rec->prev
 * is not looked at), then the link (left out when prev is NULL) and the
 * end of the line.  The caller may do what it must between the two (the
 * gateway learns prev under its lock) with the same o, whose hash, if
 * one is attached, takes the line in order: all of it, or all but its
 * items when the line has the brief form of its link (below).  With a
 * body_sha256 as tg_sha256_hex() writes it (64 lowercase hex digits),
 * the digest is tg_audit_chain_digest() of the finished line.
 */
void tg_audit_write_head(tg_out_t *o, const tg_audit_record_t *rec);
void tg_audit_write_link(tg_out_t *o, const char *prev);

/* what tg_audit_write_link() writes with a prev of 64 hex digits */
#define TG_AUDIT_LINK_LEN                                                    \
    (sizeof(",\"prev\":\"") - 1 + 64 + sizeof("\"}\n") - 1)


/*
 * A short stand-in for a record too long for a syslog message: one JSON
 * object, no newline, of at most TG_AUDIT_STAND_IN_MAX bytes, with only
 * the fields the gateway itself controls: "id", "time", "decision",
 * "project_id", "body_sha256" and "status" when the record has them (and
 * they are well formed), "truncated":true, "bytes" (the length of the
 * record's line without its newline) and "link" (the record's chain
 * link, what the next record's "prev" is).  Written in two pieces, as
 * the record is, since its link is known only after it is written.
 */
#define TG_AUDIT_STAND_IN_MAX  512

void tg_audit_write_stand_in(tg_out_t *o, const tg_audit_record_t *rec,
    size_t bytes);
void tg_audit_write_stand_in_link(tg_out_t *o, const char *link);


/*
 * The chain: each record's "prev" is the link of the line before it, 64
 * hex digits of a SHA-256 over the line, '\n' included.
 *
 * A record with "instances", "delay" and "body_sha256" (an allow or a
 * would_deny) leaves its instances' items, the bytes between the '[' and
 * the ']', out of its link: they are the items of the body it forwarded,
 * which with "delay" make that body again, and "body_sha256", inside the
 * link, is the digest of that body.  So each byte of a batch is hashed
 * once for the chain, not twice, and a changed item still breaks it: the
 * verifier rebuilds the body and compares.  Any other record's link is
 * over its whole line, as was every record's before this brief form.
 *
 * tg_audit_chain_digest() is the link the gateway writes after a line.
 * tg_audit_line_digests() gives the verifier both forms: "brief" is empty
 * when the line has no brief form; body_ok says whether its items and
 * delay hash to its body_sha256; the offsets say where the brief form
 * found its pieces (tg_audit_read.h checks they are the record's own).
 */
typedef struct {
    char                 full[65];
    char                 brief[65];
    int                  body_ok;

    /* with a brief form: the offsets of its pieces in the line, else 0 */
    size_t               items;         /* the first byte after the '[' */
    size_t               items_end;     /* the ']' */
    size_t               body_sha256;   /* the first of its hex digits */
} tg_audit_digests_t;

tg_rc_t tg_audit_chain_digest(const unsigned char *line, size_t len,
    char hex[65]) TG_WUR;
tg_rc_t tg_audit_line_digests(const unsigned char *line, size_t len,
    tg_audit_digests_t *d) TG_WUR;


#endif /* TG_AUDIT_H */
