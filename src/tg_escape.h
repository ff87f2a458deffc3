/*
 * JSON string escaping, in one place: audit records, error responses and
 * the re-serialized body all go through it.
 *
 * '"' and '\\' are backslash-escaped, every byte below 0x20 and 0x7f is
 * written as \u00XX, and a byte that is not part of a valid UTF-8
 * sequence is written as \u00XX of its value; of valid UTF-8, the C1
 * controls (U+0080..U+009F), U+2028 and U+2029 are written as \uXXXX
 * too, since readers that split lines by Unicode's rules end a line
 * there.  So no raw control byte, no line separator and no invalid UTF-8
 * from the wire ever reaches the output.
 */

#ifndef TG_ESCAPE_H
#define TG_ESCAPE_H


#include "tg_core.h"


/* the number of bytes tg_json_escape() writes for src (no quotes) */
size_t tg_json_escaped_len(const unsigned char *src, size_t len);

/* writes the escaped form of src at dst, returns the end of it */
unsigned char *tg_json_escape(unsigned char *dst, const unsigned char *src,
    size_t len);


/*
 * The length of the run at src of bytes that escaping leaves as they are
 * (printable ASCII but '"' and '\\'), eight at a time.
 */
size_t tg_json_plain_len(const unsigned char *src, size_t len);


/*
 * The length of the valid UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) of 2 to 4 bytes at p, where p[0] is
 * at least 0x80 and n bytes are readable; 0 if there is none.  The one
 * rule the validator and the escaper share.
 */
size_t tg_utf8_seq_len(const unsigned char *p, size_t n);

/*
 * JSON's lexing, shared by the batch's validator and the audit record
 * reader, so that the two read the same bytes the same way.
 */

/* four hex digits of a \uXXXX escape, either case: 1 and *v, or 0 */
int tg_json_hex4(const unsigned char *p, unsigned *v);

/*
 * The escape at p (its backslash, with at least one byte after it before
 * end) as the code point *u, and *n the bytes it takes: 2 for \" \\ \/
 * \b \f \n \r \t, 6 for \uXXXX, 12 for a surrogate pair.  TG_ERR_SYNTAX:
 * no escape JSON has, or one cut short; TG_ERR_UTF8: a low surrogate
 * alone, or a high one not followed by a low one (readers differ on a
 * lone one).  \u0000 is the code point 0: the caller says if it may be.
 */
tg_rc_t tg_json_unescape(const unsigned char *p, const unsigned char *end,
    unsigned *u, size_t *n) TG_WUR;

/* the code point u (at most U+10FFFF) as UTF-8 in buf: its length */
size_t tg_utf8_put(unsigned u, unsigned char buf[4]);

/*
 * The length of the number of RFC 8259 at p, before end:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; 0 if there is none.
 */
size_t tg_json_number_len(const unsigned char *p, const unsigned char *end);


#endif /* TG_ESCAPE_H */
