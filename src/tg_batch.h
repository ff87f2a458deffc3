/*
 * The strict validator of an "upgrade in batches" request body, and its
 * canonical re-serialization.
 *
 * Accepted: one JSON object, valid UTF-8 (no overlongs, no surrogates),
 * no BOM, only whitespace after it; exactly the keys
 * "databases_instance_infos" and "delay" (case-sensitive, no duplicate
 * key at any depth); 1..max_items items, each exactly "instance_id" and
 * "current_version", both non-empty strings of at most
 * TG_BATCH_STRING_MAX bytes without control characters or \u0000; no
 * instance twice; "delay" is "true", "false", true or false.
 *
 * One pass of our own parses, checks and decodes it (tg_batch.c); no
 * JSON library is involved.
 *
 * The gateway forwards tg_batch_serialize()'s output, never the bytes it
 * received, so the upstream cannot parse anything that was not checked.
 */

#ifndef TG_BATCH_H
#define TG_BATCH_H


#include "tg_core.h"
#include "tg_out.h"


#define TG_BATCH_MAX_ITEMS     1000     /* hard ceiling of max_items */
#define TG_BATCH_STRING_MAX    256      /* bytes, after JSON decoding */
#define TG_BATCH_ERR_SIZE      160      /* a good size for err buffers */


typedef struct {
    tg_str_t             instance_id;       /* decoded, in scratch */
    tg_str_t             current_version;   /* decoded, in scratch */
} tg_instance_t;


typedef enum {
    TG_DELAY_STRING = 0,     /* "true" / "false" */
    TG_DELAY_BOOL            /* true / false */
} tg_delay_kind_t;


typedef struct {
    /* set by the caller */
    tg_instance_t       *items;          /* array of room entries */
    size_t               max_items;      /* 1..TG_BATCH_MAX_ITEMS */
    size_t               room;           /* tg_batch_room(); 0: max_items */
    unsigned char       *scratch;        /* decoded strings go here */
    size_t               scratch_size;   /* >= the body length */

    /* set by tg_batch_parse() */
    size_t               nitems;
    int                  delay;          /* 0 or 1 */
    tg_delay_kind_t      delay_kind;
    size_t               quotes;         /* '"' and '\\' in the strings */
} tg_batch_t;


/*
 * The fewest bytes an item takes whole: {"instance_id":"a",
 * "current_version":"b"}, no white space, no escape, one-byte values.
 */
#define TG_BATCH_ITEM_MIN      41

/*
 * The entries items needs for a body of len bytes: max_items, or fewer
 * when the body cannot hold that many whole items.  The parser keeps an
 * item only while every one before it is whole (a batch with a bad item
 * is refused, whatever follows), so a short body needs a short array
 * whatever its count of items: a batch of one asks for a few entries,
 * not for max_items.  Should more whole items come than room (a body
 * this bound is wrong about), tg_batch_parse() fails with
 * TG_ERR_BUF_TOO_SMALL, never writing past room.
 */
size_t tg_batch_room(size_t max_items, size_t len);

/*
 * Validates body; on TG_OK fills b.  On any other result writes a precise,
 * NUL-terminated message to err (at most errlen bytes, e.g.
 * "duplicate key \"delay\"" or
 * "databases_instance_infos[3].instance_id: not a string").  Key names
 * quoted in err are valid UTF-8 but not escaped: escape before output.
 */
tg_rc_t tg_batch_parse(tg_batch_t *b, const unsigned char *body, size_t len,
    char *err, size_t errlen) TG_WUR;

/*
 * The exact length of tg_batch_serialize()'s output, without a look at
 * the strings: the parser counted what escaping them again adds.
 */
size_t tg_batch_serialized_len(const tg_batch_t *b);

/*
 * Writes the canonical body (compact, keys in schema order,
 * databases_instance_infos items as {"instance_id":..,"current_version":..},
 * delay of the caller's kind) at dst, returns the end of it.
 */
unsigned char *tg_batch_serialize(const tg_batch_t *b, unsigned char *dst);

/*
 * The same bytes through a writer: with a SHA-256 state attached, the
 * canonical body is hashed as it is written, in the same pass.
 */
void tg_batch_write(const tg_batch_t *b, tg_out_t *o);

/*
 * The items of body, the canonical body of b: the bytes between the '['
 * and the ']' of databases_instance_infos, each {"instance_id":..,
 * "current_version":..} as escaped as the audit record writes them, which
 * copies them from here (tg_audit.h).  TG_ERR_ARG when body is not what
 * tg_batch_write() wrote for b.
 */
tg_rc_t tg_batch_items(const tg_batch_t *b, const unsigned char *body,
    size_t len, tg_str_t *items) TG_WUR;


#endif /* TG_BATCH_H */
