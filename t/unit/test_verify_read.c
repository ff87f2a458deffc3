/*
 * tg_audit_read_line(), the verifier's reading of a record line: every
 * record the encoder writes, with every byte in its strings, is read with
 * its prev, decision and digests; lines that JSON readers (RFC 8259,
 * I-JSON's RFC 7493) read otherwise, or not at all, are refused with the
 * error and the column that say why.
 */

#include <stdlib.h>

#include "tap.h"
#include "tg_audit.h"
#include "tg_audit_read.h"


#define ZEROS                                                                 \
    "0000000000000000000000000000000000000000000000000000000000000000"
#define ONES                                                                  \
    "1111111111111111111111111111111111111111111111111111111111111111"

/* 64 digits: the longest number read */
#define D64                                                                   \
    "1234567890123456789012345678901234567890123456789012345678901234"

/* a deny record's head and tail, around what a vector puts between */
#define HEAD  "{\"id\":\"d1\",\"decision\":\"deny\""
#define TAIL  ",\"prev\":\"" ZEROS "\"}\n"


typedef struct {
    const char  *name;
    const char  *line;
    size_t       len;
    tg_rc_t      rc;
    const char  *err;
} vec_t;


#define V(name, line, rc, err)  { name, line, sizeof(line) - 1, rc, err }


static const vec_t  refused[] = {
    V("no newline", "{}", TG_ERR_ARG, "no final newline at column 1"),
    V("empty line", "\n", TG_ERR_SYNTAX, "empty line at column 1"),
    V("BOM", "\xef\xbb\xbf" HEAD TAIL, TG_ERR_BOM,
      "byte order mark at column 1"),
    V("an array", "[]\n", TG_ERR_NOT_OBJECT, "not a JSON object at column 1"),
    V("leading space", " " HEAD TAIL, TG_ERR_SYNTAX,
      "white space outside a string at column 1"),
    V("space after a colon", "{\"id\": \"d1\"}\n", TG_ERR_SYNTAX,
      "white space outside a string at column 7"),
    V("CR before the newline", HEAD ",\"prev\":\"" ZEROS "\"}\r\n",
      TG_ERR_TRAILING, "a carriage return before the newline at column 104"),
    V("a second object", HEAD TAIL "{}\n", TG_ERR_TRAILING,
      "data after the object at column 104"),
    V("NUL as white space", HEAD ",\0\"x\":1" TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 30"),
    V("VT as white space", HEAD ",\v\"x\":1" TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 30"),
    V("raw tab in a string", HEAD ",\"x\":\"\t\"" TAIL, TG_ERR_CTRL_CHAR,
      "a raw control byte in a string at column 35"),
    V("raw NUL in a string", HEAD ",\"x\":\"a\0\"" TAIL, TG_ERR_CTRL_CHAR,
      "a raw control byte in a string at column 36"),
    V("raw DEL in a string", HEAD ",\"x\":\"\x7f\"" TAIL, TG_ERR_CTRL_CHAR,
      "a raw control byte in a string at column 35"),
    V("raw U+0085 in a string", HEAD ",\"x\":\"a\xc2\x85\"" TAIL,
      TG_ERR_CTRL_CHAR, "a raw control character or line separator in a"
      " string at column 36"),
    V("raw U+009F in a string", HEAD ",\"x\":\"a\xc2\x9f\"" TAIL,
      TG_ERR_CTRL_CHAR, "a raw control character or line separator in a"
      " string at column 36"),
    V("raw U+2028 in a string", HEAD ",\"x\":\"\xe2\x80\xa8\"" TAIL,
      TG_ERR_CTRL_CHAR, "a raw control character or line separator in a"
      " string at column 35"),
    V("raw U+2029 in a key", HEAD ",\"\xe2\x80\xa9\":1" TAIL,
      TG_ERR_CTRL_CHAR, "a raw control character or line separator in a"
      " string at column 31"),
    V("invalid UTF-8", HEAD ",\"x\":\"\xff\"" TAIL, TG_ERR_UTF8,
      "invalid UTF-8 at column 35"),
    V("overlong UTF-8", HEAD ",\"x\":\"\xc0\xaf\"" TAIL, TG_ERR_UTF8,
      "invalid UTF-8 at column 35"),
    V("UTF-8 surrogate", HEAD ",\"x\":\"\xed\xa0\x80\"" TAIL, TG_ERR_UTF8,
      "invalid UTF-8 at column 35"),
    V("truncated UTF-8", HEAD ",\"x\":\"\xe2\x82\"" TAIL, TG_ERR_UTF8,
      "invalid UTF-8 at column 35"),
    V("lone high surrogate", HEAD ",\"x\":\"\\ud800\"" TAIL, TG_ERR_UTF8,
      "unpaired surrogate escape at column 35"),
    V("high then not low", HEAD ",\"x\":\"\\ud800\\u0041\"" TAIL, TG_ERR_UTF8,
      "unpaired surrogate escape at column 35"),
    V("high then the last high", HEAD ",\"x\":\"\\ud800\\udbff\"" TAIL,
      TG_ERR_UTF8, "unpaired surrogate escape at column 35"),
    V("lone low surrogate", HEAD ",\"x\":\"\\udc00\"" TAIL, TG_ERR_UTF8,
      "unpaired surrogate escape at column 35"),
    V("short \\u", HEAD ",\"x\":\"\\u12\"" TAIL, TG_ERR_SYNTAX,
      "invalid escape at column 35"),
    V("\\x escape", HEAD ",\"x\":\"\\x41\"" TAIL, TG_ERR_SYNTAX,
      "invalid escape at column 35"),
    V("leading zero", HEAD ",\"x\":0403" TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 35"),
    V("plus", HEAD ",\"x\":+1" TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 34"),
    V("bare point", HEAD ",\"x\":1." TAIL, TG_ERR_SYNTAX,
      "invalid number at column 34"),
    V("bare exponent", HEAD ",\"x\":1e" TAIL, TG_ERR_SYNTAX,
      "invalid number at column 34"),
    V("minus alone", HEAD ",\"x\":-" TAIL, TG_ERR_SYNTAX,
      "invalid number at column 34"),
    V("NaN", HEAD ",\"x\":NaN" TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 34"),
    V("True", HEAD ",\"x\":True" TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 34"),
    V("a number of 65 bytes", HEAD ",\"x\":-" D64 TAIL, TG_ERR_SYNTAX,
      "a number longer than 64 bytes at column 34"),
    V("a fraction of 66 bytes", HEAD ",\"x\":" D64 ".5" TAIL, TG_ERR_SYNTAX,
      "a number longer than 64 bytes at column 34"),
    V("trailing comma", HEAD "," TAIL, TG_ERR_SYNTAX,
      "unexpected byte at column 30"),
    V("single quotes", "{'id':1}\n", TG_ERR_SYNTAX,
      "unexpected byte at column 2"),
    V("unterminated", "{\"id\n", TG_ERR_SYNTAX,
      "unterminated string at column 5"),
    V("ends too soon", "{\"id\":\n", TG_ERR_SYNTAX,
      "the line ends too soon at column 7"),
    V("duplicate decision", HEAD ",\"decision\":\"allow\"" TAIL,
      TG_ERR_DUP_KEY, "duplicate key \"decision\" at column 30"),
    V("duplicate spelt with escapes", HEAD ",\"dec\\u0069sion\":\"allow\""
      TAIL, TG_ERR_DUP_KEY, "duplicate key \"decision\" at column 30"),
    V("duplicate prev", HEAD ",\"prev\":\"" ONES "\"" TAIL, TG_ERR_DUP_KEY,
      "duplicate key \"prev\" at column 104"),
    V("duplicate nested", HEAD ",\"u\":[{\"a\":1,\"b\":2,\"a\":3}]" TAIL,
      TG_ERR_DUP_KEY, "duplicate key \"a\" at column 48"),
    V("duplicate, not printable", HEAD ",\"\\u0001\":1,\"\\u0001\":2" TAIL,
      TG_ERR_DUP_KEY, "duplicate key at column 41"),
    V("deep", HEAD ",\"x\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]" TAIL,
      TG_ERR_DEPTH, "nesting deeper than 16 at column 49"),
    V("a key of 65 bytes", HEAD ",\"" "0123456789012345678901234567890123"
      "4567890123456789012345678901234\":1" TAIL, TG_ERR_STRING_TOO_LONG,
      "a key longer than 64 bytes at column 30"),
    V("no prev", HEAD "}\n", TG_ERR_MISSING_KEY,
      "no \"prev\" link at column 1"),
    V("prev a number", HEAD ",\"prev\":1}\n", TG_ERR_TYPE,
      "\"prev\" is not 64 lowercase hex digits at column 37"),
    V("prev in capitals", HEAD ",\"prev\":\"" "ABCDEF" "0000000000000000000"
      "000000000000000000000000000000000000000\"}\n", TG_ERR_TYPE,
      "\"prev\" is not 64 lowercase hex digits at column 37"),
    V("prev with \\u0000 after", HEAD ",\"prev\":\"" ZEROS "\\u0000\"}\n",
      TG_ERR_TYPE, "\"prev\" is not 64 lowercase hex digits at column 37"),
    V("no decision", "{\"id\":\"d1\"" TAIL, TG_ERR_MISSING_KEY,
      "no \"decision\" at column 1"),
    V("decision with \\u0000", "{\"decision\":\"allow\\u0000x\"" TAIL,
      TG_ERR_TYPE, "\"decision\" is not one the gateway writes at column 13"),
    V("decision in capitals", "{\"decision\":\"Allow\"" TAIL, TG_ERR_TYPE,
      "\"decision\" is not one the gateway writes at column 13"),
    V("decision too long", "{\"decision\":\"would_deny_would_deny\"" TAIL,
      TG_ERR_TYPE, "\"decision\" is not one the gateway writes at column 13"),
    V("decision a prefix of one", "{\"decision\":\"allo\"" TAIL,
      TG_ERR_TYPE, "\"decision\" is not one the gateway writes at column 13"),
    V("decision empty", "{\"decision\":\"\"" TAIL, TG_ERR_TYPE,
      "\"decision\" is not one the gateway writes at column 13"),
    V("decision true", "{\"decision\":true" TAIL, TG_ERR_TYPE,
      "\"decision\" is not one the gateway writes at column 13"),

    /* the brief form found in a nested object, not the record's own */
    V("nested instances", "{\"id\":\"x\",\"u\":{\"a\":1,\"instances\":[],"
      "\"delay\":\"false\",\"body_sha256\":\"" ZEROS "\"},\"decision\":"
      "\"allow\"" TAIL, TG_ERR_SYNTAX,
      "the items its link leaves out are not its own \"instances\" at column"
      " 35"),
    V("nested body_sha256", "{\"id\":\"x\",\"instances\":[],\"delay\":"
      "\"false\",\"u\":{\"a\":1,\"body_sha256\":\"" ZEROS "\"},"
      "\"decision\":\"allow\",\"body_sha256\":\"" ONES "\"" TAIL,
      TG_ERR_SYNTAX, "the items its link leaves out are not its own"
      " \"instances\" at column 24"),
};


static const vec_t  accepted[] = {
    V("minimal", "{\"decision\":\"deny\"" TAIL, TG_OK, ""),
    V("escaped key", "{\"dec\\u0069sion\":\"done\"" TAIL, TG_OK, ""),
    V("escaped prev", "{\"decision\":\"error\",\"prev\":\"\\u0030"
      "000000000000000000000000000000000000000000000000000000000000000\"}\n",
      TG_OK, ""),
    V("\\u0000 elsewhere", HEAD ",\"x\":\"a\\u0000b\"" TAIL, TG_OK, ""),
    V("a key with \\u0000", HEAD ",\"decision\\u0000\":1" TAIL, TG_OK, ""),
    V("surrogate pair", HEAD ",\"x\":\"\\ud83d\\ude00\"" TAIL, TG_OK, ""),
    V("U+00A0 and U+2027 raw", HEAD ",\"x\":\"\xc2\xa0\xe2\x80\xa7\"" TAIL,
      TG_OK, ""),
    V("DEL, C1 and U+2028 escaped", HEAD ",\"x\":\"\\u007f\\u0085\\u2028\""
      TAIL, TG_OK, ""),
    V("numbers", HEAD ",\"a\":-0,\"b\":1.5e+3,\"c\":0.25E-1,\"d\":1e999"
      TAIL, TG_OK, ""),
    V("numbers of 64 bytes", HEAD ",\"a\":" D64 ",\"b\":-0.5123456789"
      "01234567890123456789012345678901234567890123456789" TAIL, TG_OK, ""),
    V("literals", HEAD ",\"a\":true,\"b\":false,\"c\":null,\"d\":[],\"e\":{}"
      TAIL, TG_OK, ""),
    V("16 deep", HEAD ",\"x\":[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]" TAIL, TG_OK,
      ""),
    V("the same key in two objects", HEAD ",\"u\":[{\"a\":1},{\"a\":2}]"
      TAIL, TG_OK, ""),
    V("a key of 64 bytes", HEAD ",\"" "0123456789012345678901234567890123"
      "456789012345678901234567890123\":1" TAIL, TG_OK, ""),
    V("would_deny", "{\"decision\":\"would_deny\"" TAIL, TG_OK, ""),
};


static void test_vectors(void);
static void test_long_integer(void);
static void test_many_keys(void);
static void test_long_strings(void);
static void test_encoded(void);
static void read_encoded(const tg_audit_record_t *r, const char *what);


static void
test_vectors(void)
{
    size_t           i;
    const vec_t     *v;
    tg_audit_line_t  l;
    char             err[TG_AUDIT_READ_ERR];

    static const char  dup[] = HEAD ",\"decision\":\"allow\"" TAIL;

    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        v = &refused[i];

        is_rc(tg_audit_read_line((const unsigned char *) v->line, v->len, &l,
                                 err, sizeof(err)),
              v->rc, "%s: refused", v->name);

        is_str(err, v->err, "%s: message", v->name);
    }

    for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        v = &accepted[i];

        is_rc(tg_audit_read_line((const unsigned char *) v->line, v->len, &l,
                                 err, sizeof(err)),
              TG_OK, "%s: read", v->name);
        is_str(err, "", "%s: no message", v->name);
    }

    is_rc(tg_audit_read_line((const unsigned char *) accepted[1].line,
                             accepted[1].len, &l, NULL, 0),
          TG_OK, "no err buffer");
    is_str(l.decision, "done", "an escaped key: decision read decoded");

    is_rc(tg_audit_read_line((const unsigned char *) accepted[2].line,
                             accepted[2].len, &l, err, 8),
          TG_OK, "a short err buffer");
    is_str(l.prev, ZEROS, "an escaped prev: read decoded");

    is_rc(tg_audit_read_line((const unsigned char *) dup, sizeof(dup) - 1,
                             &l, err, 10),
          TG_ERR_DUP_KEY, "a message cut to its buffer");
    is_str(err, "duplicate", "the message cut at 9 bytes");
}


/*
 * An integer of 4301 digits: jq reads it, Python's json refuses it
 * ("Exceeds the limit (4300 digits) for integer string conversion").
 */

static void
test_long_integer(void)
{
    size_t           n;
    char            *s;
    tg_audit_line_t  l;
    char             err[TG_AUDIT_READ_ERR];

    static const char  head[] = HEAD ",\"x\":";
    static const char  tail[] = TAIL;

    n = sizeof(head) - 1 + 4301 + sizeof(tail) - 1;
    s = malloc(n);
    if (s == NULL) {
        ok(0, "an integer of 4301 digits: allocated");
        return;
    }

    memcpy(s, head, sizeof(head) - 1);
    memset(s + sizeof(head) - 1, '9', 4301);
    memcpy(s + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);

    is_rc(tg_audit_read_line((const unsigned char *) s, n, &l, err,
                             sizeof(err)),
          TG_ERR_SYNTAX, "an integer of 4301 digits: refused");
    is_str(err, "a number longer than 64 bytes at column 34",
           "an integer of 4301 digits: message");

    free(s);
}


/* 64 keys in the record, then 65: the most it keeps to compare */

static void
test_many_keys(void)
{
    char             *p, line[2048];
    size_t            i;
    tg_audit_line_t   l;
    char              err[TG_AUDIT_READ_ERR];

    /* id, decision and prev, and 61 or 62 others */

    p = line + sprintf(line, HEAD);

    for (i = 0; i < 61; i++) {
        p += sprintf(p, ",\"k%zu\":1", i);
    }

    sprintf(p, TAIL);

    is_rc(tg_audit_read_line((const unsigned char *) line, strlen(line), &l,
                             err, sizeof(err)),
          TG_OK, "64 keys: read");

    p += sprintf(p, ",\"k%zu\":1", i);
    sprintf(p, TAIL);

    is_rc(tg_audit_read_line((const unsigned char *) line, strlen(line), &l,
                             err, sizeof(err)),
          TG_ERR_SYNTAX, "65 keys: refused");
    is_str(err, "more than 64 keys in an object at column 516",
           "65 keys: message");
}


/*
 * Strings of the record itself far longer than what is kept of them
 * (the first bytes, to compare prev and decision): read, not copied
 * whole.
 */

static void
test_long_strings(void)
{
    size_t            n, k;
    char             *s;
    tg_audit_line_t   l;
    char              err[TG_AUDIT_READ_ERR];

    static const char  head[] = HEAD ",\"reason\":\"";
    static const char  tail[] = "\"" TAIL;

    k = 100000;
    n = sizeof(head) - 1 + k + sizeof(tail) - 1;
    s = malloc(n);
    if (s == NULL) {
        ok(0, "a reason of 100000 bytes: allocated");
        return;
    }

    memcpy(s, head, sizeof(head) - 1);
    memset(s + sizeof(head) - 1, 'r', k);
    memcpy(s + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);

    is_rc(tg_audit_read_line((const unsigned char *) s, n, &l, err,
                             sizeof(err)),
          TG_OK, "a reason of 100000 bytes: read");
    is_str(l.decision, "deny", "a reason of 100000 bytes: its decision");

    free(s);
}


/* every decision the encoder writes, with every byte in its strings */

static void
test_encoded(void)
{
    int                 d;
    size_t              i;
    tg_str_t            denied[2];
    tg_instance_t       inst[2];
    tg_audit_record_t   r;
    unsigned char       all[256];
    char                what[64];

    for (i = 0; i < 256; i++) {
        all[i] = (unsigned char) i;
    }

    inst[0].instance_id.data = all;
    inst[0].instance_id.len = 128;
    inst[0].current_version.data = all + 128;
    inst[0].current_version.len = 128;
    inst[1].instance_id.data = (const unsigned char *) "b\"]}";
    inst[1].instance_id.len = 4;
    inst[1].current_version.data = (const unsigned char *) "\\";
    inst[1].current_version.len = 1;

    denied[0] = inst[1].instance_id;
    denied[1].data = all;
    denied[1].len = 256;

    for (d = TG_DECISION_ALLOW; d <= TG_DECISION_WOULD_DENY; d++) {
        memset(&r, 0, sizeof(tg_audit_record_t));
        r.id = "0123456789abcdef0123456789abcdef";
        r.time_sec = 1764450000;
        r.client.data = all;
        r.client.len = 256;
        r.decision = (tg_decision_t) d;
        r.project_id.data = (const unsigned char *) "0123456789abcdef"
                                                    "0123456789abcdef";
        r.project_id.len = 32;
        r.duration_ms = -1;
        r.bytes = -1;
        r.prev = ONES;

        if (d == TG_DECISION_ALLOW || d == TG_DECISION_WOULD_DENY) {
            r.instances = inst;
            r.ninstances = 2;
            r.has_delay = 1;
            r.delay = 1;
            r.body_sha256 = ZEROS;
        }

        if (d != TG_DECISION_ALLOW && d != TG_DECISION_DONE) {
            r.reason.data = all;
            r.reason.len = 256;
            r.denied = denied;
            r.ndenied = 2;
            r.method.data = all + 200;
            r.method.len = 56;
            r.uri.data = all;
            r.uri.len = 256;
            r.user.data = all;
            r.user.len = 256;
            r.status = 403;
        }

        if (d == TG_DECISION_DONE) {
            r.status = 200;
            r.duration_ms = 6;
            r.bytes = 352;
            r.has_forwarded = 1;
            r.forwarded = 1;
            r.request_id.data = all;
            r.request_id.len = 128;
        }

        snprintf(what, sizeof(what), "an encoded %s record",
                 tg_decision_name((tg_decision_t) d));
        read_encoded(&r, what);
    }
}


static void
read_encoded(const tg_audit_record_t *r, const char *what)
{
    size_t               n;
    unsigned char       *s;
    tg_audit_line_t      l;
    tg_audit_digests_t   d;
    char                 err[TG_AUDIT_READ_ERR];

    n = tg_audit_encode(r, NULL, 0);
    s = malloc(n);
    if (s == NULL || tg_audit_encode(r, s, n) != n) {
        ok(0, "%s: encoded", what);
        free(s);
        return;
    }

    is_rc(tg_audit_read_line(s, n, &l, err, sizeof(err)), TG_OK, "%s: read",
          what);
    is_str(err, "", "%s: no message", what);
    is_str(l.prev, ONES, "%s: its prev", what);
    is_str(l.decision, tg_decision_name(r->decision), "%s: its decision",
           what);

    if (tg_audit_line_digests(s, n, &d) != TG_OK) {
        d.full[0] = '\0';
    }

    ok(strcmp(l.digests.full, d.full) == 0
       && strcmp(l.digests.brief, d.brief) == 0,
       "%s: the line's digests", what);
    ok((r->instances != NULL) == (l.digests.brief[0] != '\0'),
       "%s: a brief form when it has instances", what);

    free(s);
}


int
main(void)
{
    test_vectors();
    test_long_integer();
    test_many_keys();
    test_long_strings();
    test_encoded();

    return done_testing();
}
