/*
 * tg_batch_parse() and tg_batch_serialize(): what is accepted, what is
 * refused and with which tg_rc_t and message, and that the canonical
 * re-serialization validates back to the same batch.
 *
 * The example body is the README's first one, which is the request
 * example of Huawei Cloud's "Upgrading Minor Versions of Instances in
 * Batches" API.
 */

#include <stdlib.h>

#include "tap.h"
#include "tg_batch.h"
#include "tg_sign.h"


#define MAX_ITEMS  100

#define ID   "6754902da1f447269c6979b0590102a5in07"
#define VER  "2.0.48.231200"

#define EXAMPLE_BODY                                                          \
    "{\"databases_instance_infos\":[{\"current_version\":\"" VER "\","       \
    "\"instance_id\":\"" ID "\"}],\"delay\":\"false\"}"

#define EXAMPLE_CANON                                                         \
    "{\"databases_instance_infos\":[{\"instance_id\":\"" ID "\","           \
    "\"current_version\":\"" VER "\"}],\"delay\":\"false\"}"

/* one well-formed item, and a body around items */
#define ITEM(id, ver)                                                         \
    "{\"instance_id\":\"" id "\",\"current_version\":\"" ver "\"}"
#define BODY(items, delay)                                                    \
    "{\"databases_instance_infos\":[" items "],\"delay\":" delay "}"


typedef struct {
    const char    *name;
    const char    *body;
    size_t         len;          /* 0: strlen(body) */
    size_t         nitems;
    int            delay;
    int            kind;
    const char    *id0;          /* decoded, NULL: not checked */
    const char    *ver0;
} accept_t;


typedef struct {
    const char    *name;
    const char    *body;
    size_t         len;          /* 0: strlen(body) */
    tg_rc_t        rc;
    const char    *msg;          /* NULL: only rc (and non-empty) checked */
} reject_t;


static const accept_t  accepts[] = {

    { "README example", EXAMPLE_BODY, 0, 1, 0, TG_DELAY_STRING, ID, VER },

    { "delay \"true\"", BODY(ITEM("a", "1"), "\"true\""), 0,
      1, 1, TG_DELAY_STRING, "a", "1" },

    { "delay true (bool)", BODY(ITEM("a", "1"), "true"), 0,
      1, 1, TG_DELAY_BOOL, "a", "1" },

    { "delay false (bool)", BODY(ITEM("a", "1"), "false"), 0,
      1, 0, TG_DELAY_BOOL, "a", "1" },

    { "delay first, keys in any order",
      "{\"delay\":\"true\",\"databases_instance_infos\":"
      "[{\"current_version\":\"v\",\"instance_id\":\"i\"}]}", 0,
      1, 1, TG_DELAY_STRING, "i", "v" },

    { "whitespace everywhere JSON allows it",
      " \t\r\n{ \t\r\n\"databases_instance_infos\" \t\r\n: \t\r\n[ \t\r\n"
      "{ \"instance_id\" : \"a\" , \"current_version\" : \"1\" } \t\r\n,"
      "\n{\"instance_id\"\n:\n\"b\"\n,\n\"current_version\"\n:\n\"2\"\n}"
      " \t\r\n] \t\r\n, \t\r\n\"delay\" \t\r\n: \t\r\nfalse \t\r\n} \t\r\n",
      0, 2, 0, TG_DELAY_BOOL, "a", "1" },

    { "trailing newline", EXAMPLE_BODY "\n", 0,
      1, 0, TG_DELAY_STRING, ID, VER },

    { "escaped quote and backslash in version",
      BODY(ITEM("a", "2.0\\\"x\\\\y"), "\"false\""), 0,
      1, 0, TG_DELAY_STRING, "a", "2.0\"x\\y" },

    { "\\u00e9 and \\u00E9 decode to U+00E9",
      BODY(ITEM("a", "v\\u00e9\\u00E9"), "\"false\""), 0,
      1, 0, TG_DELAY_STRING, "a", "v\xc3\xa9\xc3\xa9" },

    { "\\/ and escaped surrogate pair",
      BODY(ITEM("a", "x\\/\\ud83d\\ude00"), "\"false\""), 0,
      1, 0, TG_DELAY_STRING, "a", "x/\xf0\x9f\x98\x80" },

    { "raw UTF-8 of 2, 3 and 4 bytes",
      BODY(ITEM("a", "\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf"), "\"true\""),
      0, 1, 1, TG_DELAY_STRING, "a", "\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf" },

    { "escaped key names",
      "{\"databases_instance_infos\":[{\"instance\\u005fid\":\"a\","
      "\"current_version\":\"1\"}],\"del\\u0061y\":\"false\"}", 0,
      1, 0, TG_DELAY_STRING, "a", "1" },

    { "escaped delay value",
      BODY(ITEM("a", "1"), "\"tru\\u0065\""), 0,
      1, 1, TG_DELAY_STRING, "a", "1" },

    { "item keys spaced before and after their colons",
      BODY("{\"instance_id\" :\"a\",\"current_version\": \"1\"},"
           "{\"current_version\"\t:\t\"2\",\"instance_id\":\n\"b\"}",
           "\"true\""), 0, 2, 1, TG_DELAY_STRING, "a", "1" },

    { "two distinct instances",
      BODY(ITEM("a", "1") "," ITEM("ab", "1"), "\"false\""), 0,
      2, 0, TG_DELAY_STRING, "a", "1" },
};


static const reject_t  rejects[] = {

    /* the byte level */

    { "empty body", "", 0, TG_ERR_EMPTY_BODY, "empty body" },
    { "whitespace only", " \t\r\n ", 0, TG_ERR_EMPTY_BODY, "empty body" },
    { "BOM", "\xef\xbb\xbf" EXAMPLE_BODY, 0, TG_ERR_BOM, "byte order mark" },
    { "BOM alone", "\xef\xbb\xbf", 0, TG_ERR_BOM, "byte order mark" },
    { "BOM after whitespace", " \xef\xbb\xbf{}", 0, TG_ERR_SYNTAX,
      "unexpected character at byte 1" },

    { "overlong C0 AF in a key", "{\"a\xc0\xaf\":1}", 0, TG_ERR_UTF8,
      "invalid UTF-8 at byte 3" },
    { "overlong C0 AF in a version",
      BODY(ITEM("a", "\xc0\xaf"), "\"true\""), 0, TG_ERR_UTF8,
      "invalid UTF-8 at byte 67" },
    { "overlong E0 80 AF", BODY(ITEM("a", "\xe0\x80\xaf"), "\"true\""), 0,
      TG_ERR_UTF8, "invalid UTF-8 at byte 67" },
    { "UTF-8 surrogate ED A0 80",
      BODY(ITEM("\xed\xa0\x80", "1"), "\"true\""), 0, TG_ERR_UTF8,
      "invalid UTF-8 at byte 45" },
    { "above U+10FFFF F4 90 80 80",
      BODY(ITEM("\xf4\x90\x80\x80", "1"), "\"true\""), 0, TG_ERR_UTF8,
      NULL },
    { "F5 lead", BODY(ITEM("\xf5\x80\x80\x80", "1"), "\"true\""), 0,
      TG_ERR_UTF8, NULL },
    { "lone continuation byte", BODY(ITEM("a\x80", "1"), "\"true\""), 0,
      TG_ERR_UTF8, "invalid UTF-8 at byte 46" },
    { "truncated sequence before the quote",
      BODY(ITEM("a\xe2\x82", "1"), "\"true\""), 0, TG_ERR_UTF8, NULL },
    { "truncated sequence at the end of the body", "{\"a\xe2\x82", 0,
      TG_ERR_UTF8, "invalid UTF-8 at byte 3" },
    { "invalid UTF-8 outside strings", "{\xff}", 0, TG_ERR_UTF8,
      "invalid UTF-8 at byte 1" },

    { "escaped lone high surrogate \\ud800",
      BODY(ITEM("\\ud800", "1"), "\"true\""), 0, TG_ERR_UTF8,
      "unpaired surrogate escape at byte 45" },
    { "escaped lone low surrogate \\udc00",
      BODY(ITEM("a\\udc00", "1"), "\"true\""), 0, TG_ERR_UTF8,
      "unpaired surrogate escape at byte 46" },
    { "high surrogate then a non-surrogate escape",
      BODY(ITEM("\\ud800\\u0041", "1"), "\"true\""), 0, TG_ERR_UTF8, NULL },
    { "high surrogate then two high",
      BODY(ITEM("\\ud800\\ud800", "1"), "\"true\""), 0, TG_ERR_UTF8, NULL },
    { "high surrogate then the last high one",
      BODY(ITEM("\\ud800\\udbff", "1"), "\"true\""), 0, TG_ERR_UTF8, NULL },
    { "high surrogate at the end of the string",
      BODY(ITEM("\\udbff", "1"), "\"true\""), 0, TG_ERR_UTF8, NULL },

    { "raw control byte in a string",
      BODY(ITEM("a\x01", "1"), "\"true\""), 0, TG_ERR_CTRL_CHAR,
      "control character at byte 46" },
    { "raw tab in a string", BODY(ITEM("a\tb", "1"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR, NULL },
    { "raw newline in a key", "{\"a\nb\":1}", 0, TG_ERR_CTRL_CHAR,
      "control character at byte 3" },
    { "raw DEL in a string", BODY(ITEM("a\x7f", "1"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR, NULL },
    { "raw NUL in a string", "{\"a\0\":1}", 8, TG_ERR_CTRL_CHAR,
      "control character at byte 3" },

    { "\\u0000 inside instance_id",
      BODY(ITEM("abc\\u0000def", "1"), "\"true\""), 0, TG_ERR_NUL_ESCAPE,
      "\\u0000 at byte 48" },
    { "\\u0000 in a key", "{\"delay\\u0000x\":1}", 0, TG_ERR_NUL_ESCAPE,
      NULL },

    /* syntax */

    { "invalid escape \\x", BODY(ITEM("a\\x", "1"), "\"true\""), 0,
      TG_ERR_SYNTAX, "invalid escape at byte 46" },
    { "invalid escape \\U", BODY(ITEM("a\\U0041", "1"), "\"true\""), 0,
      TG_ERR_SYNTAX, NULL },
    { "short \\u escape", BODY(ITEM("a\\u12", "1"), "\"true\""), 0,
      TG_ERR_SYNTAX, NULL },
    { "non-hex \\u escape", BODY(ITEM("a\\u12g4", "1"), "\"true\""), 0,
      TG_ERR_SYNTAX, NULL },
    { "backslash at the end", "{\"a\\", 0, TG_ERR_SYNTAX,
      "unterminated string at byte 3" },
    { "unterminated string", "{\"abc", 0, TG_ERR_SYNTAX,
      "unterminated string at byte 5" },
    { "unterminated object", "{", 0, TG_ERR_SYNTAX,
      "unexpected end of body at byte 1" },
    { "unterminated array", "{\"a\":[1,", 0, TG_ERR_SYNTAX, NULL },
    { "trailing comma in object", "{\"delay\":true,}", 0, TG_ERR_SYNTAX,
      "unexpected character at byte 14" },
    { "trailing comma in array",
      BODY(ITEM("a", "1") ",", "\"true\""), 0, TG_ERR_SYNTAX, NULL },
    { "missing colon", "{\"delay\" true}", 0, TG_ERR_SYNTAX, NULL },
    { "missing comma", "{\"a\":1 \"b\":2}", 0, TG_ERR_SYNTAX, NULL },
    { "single quotes", "{'delay':'true'}", 0, TG_ERR_SYNTAX, NULL },
    { "bare key", "{delay:true}", 0, TG_ERR_SYNTAX, NULL },
    { "comment", "{/* x */}", 0, TG_ERR_SYNTAX, NULL },
    { "leading zero", "{\"delay\":01}", 0, TG_ERR_SYNTAX, NULL },
    { "fraction without digits", "{\"delay\":1.}", 0, TG_ERR_SYNTAX,
      "invalid number at byte 9" },
    { "leading dot", "{\"delay\":.5}", 0, TG_ERR_SYNTAX, NULL },
    { "lone minus", "{\"delay\":-}", 0, TG_ERR_SYNTAX, NULL },
    { "exponent without digits", "{\"delay\":1e+}", 0, TG_ERR_SYNTAX, NULL },
    { "plus sign", "{\"delay\":+1}", 0, TG_ERR_SYNTAX, NULL },
    { "hex number", "{\"delay\":0x10}", 0, TG_ERR_SYNTAX, NULL },
    { "number of 64 bytes",
      "{\"delay\":-1.0000000000000000000000000000"
      "00000000000000000000000000000e+10}",
      0, TG_ERR_SYNTAX, "number longer than 63 bytes at byte 9" },
    { "NaN", "{\"delay\":NaN}", 0, TG_ERR_SYNTAX, NULL },
    { "bad literal tru", "{\"delay\":tru}", 0, TG_ERR_SYNTAX,
      "invalid literal at byte 9" },
    { "bad literal True", "{\"delay\":True}", 0, TG_ERR_SYNTAX, NULL },
    { "bad literal nul", "{\"delay\":nul", 0, TG_ERR_SYNTAX, NULL },
    { "literal run on", "{\"delay\":truex}", 0, TG_ERR_SYNTAX, NULL },
    { "form feed is not JSON whitespace", "{\f}", 0, TG_ERR_SYNTAX, NULL },

    /* keys: compared in place when plain, decoded when not */

    { "raw control byte in a key", "{\"del\x01" "ay\":1}", 0,
      TG_ERR_CTRL_CHAR, "control character at byte 5" },
    { "raw DEL in a long key", "{\"databases_\x7finstance_infos\":1}", 0,
      TG_ERR_CTRL_CHAR, "control character at byte 12" },
    { "invalid UTF-8 in a key", "{\"delay\xff\":1}", 0, TG_ERR_UTF8,
      "invalid UTF-8 at byte 7" },
    { "key cut by the end of the body", "{\"databases_instance_in", 0,
      TG_ERR_SYNTAX, "unterminated string at byte 23" },
    { "key then the end of the body", "{\"delay\"", 0, TG_ERR_SYNTAX,
      "unexpected end of body at byte 8" },
    { "key then no colon", "{\"delay\" ,1}", 0, TG_ERR_SYNTAX,
      "unexpected character at byte 9" },
    { "a key one byte short", "{\"dela\":1}", 0, TG_ERR_UNKNOWN_KEY,
      "unknown key \"dela\"" },
    { "a key one byte long", "{\"delayy\":1}", 0, TG_ERR_UNKNOWN_KEY,
      "unknown key \"delayy\"" },
    { "a key in capitals", "{\"Delay\":1}", 0, TG_ERR_UNKNOWN_KEY,
      "unknown key \"Delay\"" },
    { "an item key with UTF-8",
      BODY("{\"instance_\xc3\xa9\":\"a\",\"current_version\":\"1\"}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"instance_\xc3\xa9\"" },
    { "an item key escaped past its first word",
      BODY("{\"instance_id\":\"a\",\"current_versio\\u006e\":\"1\","
           "\"current_version\":\"2\"}", "\"true\""), 0, TG_ERR_DUP_KEY,
      "databases_instance_infos[0]: duplicate key \"current_version\"" },

    /* an item's keys: matched raw when compact, decoded when not */

    { "item keys cut by the end of the body",
      "{\"databases_instance_infos\":[{\"instance_id\"", 0, TG_ERR_SYNTAX,
      "unexpected end of body at byte 43" },
    { "item key cut before its colon",
      "{\"databases_instance_infos\":[{\"current_version", 0,
      TG_ERR_SYNTAX, "unterminated string at byte 46" },
    { "item key then the end of the body",
      "{\"databases_instance_infos\":[{\"current_version\":", 0,
      TG_ERR_SYNTAX, "unexpected end of body at byte 48" },
    { "instance_id twice, raw then spaced",
      BODY("{\"instance_id\":\"a\",\"current_version\":\"1\","
           "\"instance_id\" : \"b\"}", "\"true\""), 0, TG_ERR_DUP_KEY,
      "databases_instance_infos[0]: duplicate key \"instance_id\"" },
    { "current_version twice, escaped then raw",
      BODY("{\"instance_id\":\"a\",\"current_\\u0076ersion\":\"1\","
           "\"current_version\":\"2\"}", "\"true\""), 0, TG_ERR_DUP_KEY,
      "databases_instance_infos[0]: duplicate key \"current_version\"" },
    { "an item key one byte long",
      BODY("{\"instance_idd\":\"a\",\"current_version\":\"1\"}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"instance_idd\"" },
    { "an item key differing in its middle word",
      BODY("{\"instance_id\":\"a\",\"current_versiom\":\"1\"}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"current_versiom\"" },
    { "an item key differing in its ninth byte, which only the middle"
      " word of a compact key covers",
      BODY("{\"instance_id\":\"a\",\"current-version\":\"1\"}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"current-version\"" },
    { "an item key differing in its tenth byte",
      BODY("{\"instance_id\":\"a\",\"current_Version\":\"1\"}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"current_Version\"" },
    { "an item key differing in its first byte",
      BODY("{\"Instance_id\":\"a\",\"current_version\":\"1\"}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"Instance_id\"" },
    { "an item key with a raw control byte",
      BODY("{\"instance_i\x01\":\"a\",\"current_version\":\"1\"}",
           "\"true\""), 0, TG_ERR_CTRL_CHAR, "control character at byte 41" },

    /* the document */

    { "{}{}", "{}{}", 0, TG_ERR_TRAILING,
      "data after the JSON document at byte 2" },
    { "{} x", "{} x", 0, TG_ERR_TRAILING,
      "data after the JSON document at byte 3" },
    { "a second document", EXAMPLE_BODY "\n" EXAMPLE_BODY, 0, TG_ERR_TRAILING,
      NULL },
    { "a NUL after the document", EXAMPLE_BODY "\0", sizeof(EXAMPLE_BODY),
      TG_ERR_TRAILING, NULL },

    { "top-level array", "[]", 0, TG_ERR_NOT_OBJECT,
      "top level is not an object" },
    { "top-level string", "\"x\"", 0, TG_ERR_NOT_OBJECT, NULL },
    { "top-level number", " 1 ", 0, TG_ERR_NOT_OBJECT, NULL },
    { "top-level null", "null", 0, TG_ERR_NOT_OBJECT, NULL },

    { "object at depth 4",
      BODY("{\"instance_id\":{\"a\":\"b\"},\"current_version\":\"1\"}",
           "\"true\""), 0, TG_ERR_DEPTH, "nesting deeper than 3 at byte 44" },
    { "array at depth 4", BODY(ITEM("a", "1") ",[[]]", "\"true\""), 0,
      TG_ERR_DEPTH, NULL },
    { "nested arrays", "[[[[1]]]]", 0, TG_ERR_DEPTH,
      "nesting deeper than 3 at byte 3" },

    /* the schema */

    { "duplicate key at top level",
      "{\"delay\":\"true\",\"databases_instance_infos\":[" ITEM("a", "1")
      "],\"delay\":\"false\"}", 0, TG_ERR_DUP_KEY,
      "duplicate key \"delay\"" },
    { "duplicate key spelt with an escape",
      "{\"delay\":\"true\",\"databases_instance_infos\":[" ITEM("a", "1")
      "],\"de\\u006cay\":\"true\"}", 0, TG_ERR_DUP_KEY,
      "duplicate key \"delay\"" },
    { "duplicate databases_instance_infos",
      BODY(ITEM("a", "1"), "\"true\",\"databases_instance_infos\":[]"), 0,
      TG_ERR_DUP_KEY, "duplicate key \"databases_instance_infos\"" },
    { "duplicate key inside an item",
      BODY(ITEM("a", "1") ",{\"instance_id\":\"b\",\"current_version\":"
           "\"1\",\"instance_id\":\"c\"}", "\"true\""), 0, TG_ERR_DUP_KEY,
      "databases_instance_infos[1]: duplicate key \"instance_id\"" },

    { "Delay instead of delay",
      "{\"databases_instance_infos\":[" ITEM("a", "1") "],\"Delay\":\"true\"}",
      0, TG_ERR_UNKNOWN_KEY, "unknown key \"Delay\"" },
    { "extra top-level key", BODY(ITEM("a", "1"), "\"true\",\"x\":1"), 0,
      TG_ERR_UNKNOWN_KEY, "unknown key \"x\"" },
    { "Instance_id inside an item",
      BODY("{\"Instance_id\":\"a\",\"current_version\":\"1\"}", "\"true\""),
      0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"Instance_id\"" },
    { "extra key inside an item",
      BODY("{\"instance_id\":\"a\",\"current_version\":\"1\",\"x\":1}",
           "\"true\""), 0, TG_ERR_UNKNOWN_KEY,
      "databases_instance_infos[0]: unknown key \"x\"" },
    { "long unknown key is cut to 64 bytes",
      "{\"" "0123456789012345678901234567890123456789012345678901234567890123"
      "456789\":1}", 0, TG_ERR_UNKNOWN_KEY,
      "unknown key \""
      "0123456789012345678901234567890123456789012345678901234567890123"
      "...\"" },
    { "long unknown key is cut on a UTF-8 boundary",
      "{\"" "012345678901234567890123456789012345678901234567890123456789012"
      "\xc3\xa9xyz\":1}", 0, TG_ERR_UNKNOWN_KEY,
      "unknown key \""
      "012345678901234567890123456789012345678901234567890123456789012"
      "...\"" },

    { "missing delay", "{\"databases_instance_infos\":[" ITEM("a", "1") "]}",
      0, TG_ERR_MISSING_KEY, "missing key \"delay\"" },
    { "missing databases_instance_infos", "{\"delay\":\"true\"}", 0,
      TG_ERR_MISSING_KEY, "missing key \"databases_instance_infos\"" },
    { "empty object", "{}", 0, TG_ERR_MISSING_KEY, NULL },
    { "item without current_version",
      BODY("{\"instance_id\":\"a\"}", "\"true\""), 0, TG_ERR_MISSING_KEY,
      "databases_instance_infos[0]: missing key \"current_version\"" },
    { "empty item", BODY("{}", "\"true\""), 0, TG_ERR_MISSING_KEY,
      "databases_instance_infos[0]: missing key \"instance_id\"" },

    { "databases_instance_infos an object",
      "{\"databases_instance_infos\":{},\"delay\":\"true\"}", 0, TG_ERR_TYPE,
      "databases_instance_infos: not an array" },
    { "databases_instance_infos a string",
      "{\"databases_instance_infos\":\"a\",\"delay\":\"true\"}", 0,
      TG_ERR_TYPE, "databases_instance_infos: not an array" },
    { "databases_instance_infos null",
      "{\"databases_instance_infos\":null,\"delay\":\"true\"}", 0,
      TG_ERR_TYPE, "databases_instance_infos: not an array" },
    { "item a string", BODY("\"a\"", "\"true\""), 0, TG_ERR_TYPE,
      "databases_instance_infos[0]: not an object" },
    { "item an array", BODY(ITEM("a", "1") ",[]", "\"true\""), 0,
      TG_ERR_TYPE, "databases_instance_infos[1]: not an object" },
    { "item null", BODY("null", "\"true\""), 0, TG_ERR_TYPE,
      "databases_instance_infos[0]: not an object" },
    { "instance_id a number",
      BODY(ITEM("a", "1") "," ITEM("b", "1") "," ITEM("c", "1")
           ",{\"instance_id\":42,\"current_version\":\"1\"}", "\"true\""),
      0, TG_ERR_TYPE,
      "databases_instance_infos[3].instance_id: not a string" },
    { "instance_id null",
      BODY("{\"instance_id\":null,\"current_version\":\"1\"}", "\"true\""),
      0, TG_ERR_TYPE,
      "databases_instance_infos[0].instance_id: not a string" },
    { "current_version an array is nesting depth 4",
      BODY("{\"instance_id\":\"a\",\"current_version\":[\"1\"]}",
           "\"true\""), 0, TG_ERR_DEPTH, "nesting deeper than 3 at byte 66" },
    { "current_version a bool",
      BODY("{\"instance_id\":\"a\",\"current_version\":true}", "\"true\""),
      0, TG_ERR_TYPE,
      "databases_instance_infos[0].current_version: not a string" },
    { "delay a number of 63 bytes",
      BODY(ITEM("a", "1"),
           "-1.0000000000000000000000000000"
           "0000000000000000000000000000e+10"),
      0, TG_ERR_DELAY_VALUE, NULL },
    { "current_version a number",
      BODY("{\"instance_id\":\"a\",\"current_version\":2.0e1}", "\"true\""),
      0, TG_ERR_TYPE,
      "databases_instance_infos[0].current_version: not a string" },

    { "empty instance_id", BODY(ITEM("", "1"), "\"true\""), 0,
      TG_ERR_EMPTY_STRING, "databases_instance_infos[0].instance_id: empty" },
    { "empty current_version", BODY(ITEM("a", ""), "\"true\""), 0,
      TG_ERR_EMPTY_STRING,
      "databases_instance_infos[0].current_version: empty" },

    { "escaped newline in current_version",
      BODY(ITEM("a", "1") "," ITEM("b", "2\\n"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR,
      "databases_instance_infos[1].current_version: control character" },
    { "\\u001f in instance_id", BODY(ITEM("a\\u001f", "1"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR,
      "databases_instance_infos[0].instance_id: control character" },
    { "\\u007f in instance_id", BODY(ITEM("a\\u007F", "1"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR, NULL },
    { "\\t escape in instance_id", BODY(ITEM("a\\tb", "1"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR, NULL },
    { "C1 \\u0085 in current_version",
      BODY(ITEM("a", "2.0\\u0085"), "\"true\""), 0, TG_ERR_CTRL_CHAR,
      "databases_instance_infos[0].current_version: control character" },
    { "raw C1 U+009F in instance_id",
      BODY(ITEM("a\xc2\x9f", "1"), "\"true\""), 0, TG_ERR_CTRL_CHAR, NULL },
    { "U+2028 in instance_id", BODY(ITEM("a\\u2028", "1"), "\"true\""), 0,
      TG_ERR_CTRL_CHAR, NULL },
    { "raw U+2028 in instance_id",
      BODY(ITEM("a\xe2\x80\xa8", "1"), "\"true\""), 0, TG_ERR_CTRL_CHAR,
      NULL },
    { "raw U+2029 in current_version",
      BODY(ITEM("a", "1\xe2\x80\xa9"), "\"true\""), 0, TG_ERR_CTRL_CHAR,
      NULL },

    { "no items", BODY("", "\"true\""), 0, TG_ERR_BATCH_EMPTY,
      "databases_instance_infos: no items" },

    { "instance twice", BODY(ITEM("a", "1") "," ITEM("b", "1") ","
      ITEM("a", "2"), "\"true\""), 0, TG_ERR_DUP_INSTANCE,
      "databases_instance_infos[2].instance_id: same as [0]" },
    { "earliest repeat is reported",
      BODY(ITEM("a", "1") "," ITEM("b", "1") "," ITEM("b", "1") ","
           ITEM("a", "1") "," ITEM("a", "1"), "\"true\""), 0,
      TG_ERR_DUP_INSTANCE,
      "databases_instance_infos[2].instance_id: same as [1]" },
    { "instance twice, once escaped",
      BODY(ITEM("ab", "1") "," ITEM("\\u0061b", "1"), "\"true\""), 0,
      TG_ERR_DUP_INSTANCE,
      "databases_instance_infos[1].instance_id: same as [0]" },

    { "delay \"yes\"", BODY(ITEM("a", "1"), "\"yes\""), 0,
      TG_ERR_DELAY_VALUE, "delay: must be \"true\" or \"false\"" },
    { "delay 1", BODY(ITEM("a", "1"), "1"), 0, TG_ERR_DELAY_VALUE,
      "delay: must be \"true\" or \"false\"" },
    { "delay null", BODY(ITEM("a", "1"), "null"), 0, TG_ERR_DELAY_VALUE,
      "delay: must be \"true\" or \"false\"" },
    { "delay \"TRUE\"", BODY(ITEM("a", "1"), "\"TRUE\""), 0,
      TG_ERR_DELAY_VALUE, NULL },
    { "delay \"truE\"", BODY(ITEM("a", "1"), "\"truE\""), 0,
      TG_ERR_DELAY_VALUE, NULL },
    { "delay \"falsE\"", BODY(ITEM("a", "1"), "\"falsE\""), 0,
      TG_ERR_DELAY_VALUE, NULL },
    { "delay \" true\"", BODY(ITEM("a", "1"), "\" true\""), 0,
      TG_ERR_DELAY_VALUE, NULL },
    { "delay \"\"", BODY(ITEM("a", "1"), "\"\""), 0, TG_ERR_DELAY_VALUE,
      NULL },
    { "delay []", BODY(ITEM("a", "1"), "[]"), 0, TG_ERR_DELAY_VALUE, NULL },
    { "delay {}", BODY(ITEM("a", "1"), "{}"), 0, TG_ERR_DELAY_VALUE, NULL },
};


static tg_instance_t  items[TG_BATCH_MAX_ITEMS];
static tg_instance_t  items2[TG_BATCH_MAX_ITEMS];


static void
batch_init(tg_batch_t *b, tg_instance_t *it, size_t max, unsigned char *scratch,
    size_t size)
{
    memset(b, 0, sizeof(*b));
    b->items = it;
    b->max_items = max;
    b->scratch = scratch;
    b->scratch_size = size;
}


static tg_rc_t
parse(tg_batch_t *b, tg_instance_t *it, size_t max, const char *body,
    size_t len, char *err)
{
    tg_rc_t         rc;
    unsigned char  *scratch;

    /* exactly len bytes, so ASan sees any read past the body */
    scratch = malloc(len + 1);

    batch_init(b, it, max, scratch, len);
    rc = tg_batch_parse(b, (const unsigned char *) body, len, err,
                        TG_BATCH_ERR_SIZE);

    if (rc != TG_OK) {
        free(scratch);
        b->scratch = NULL;
    }

    return rc;
}


static int
str_eq(tg_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0;
}


static int
batches_equal(const tg_batch_t *a, const tg_batch_t *z)
{
    size_t  i;

    if (a->nitems != z->nitems || a->delay != z->delay
        || a->delay_kind != z->delay_kind)
    {
        return 0;
    }

    for (i = 0; i < a->nitems; i++) {
        if (a->items[i].instance_id.len != z->items[i].instance_id.len
            || memcmp(a->items[i].instance_id.data,
                      z->items[i].instance_id.data,
                      a->items[i].instance_id.len) != 0
            || a->items[i].current_version.len
               != z->items[i].current_version.len
            || memcmp(a->items[i].current_version.data,
                      z->items[i].current_version.data,
                      a->items[i].current_version.len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * parse -> serialize -> parse: the same batch, the length foretold
 * exactly, and the serialized form is a fixed point.
 */

static void
round_trip(const char *name, const tg_batch_t *b)
{
    char            err[TG_BATCH_ERR_SIZE];
    size_t          len;
    tg_rc_t         rc;
    tg_batch_t      b2;
    unsigned char  *out, *out2, *end;

    len = tg_batch_serialized_len(b);
    out = malloc(len + 1);
    out2 = malloc(len + 1);
    out[len] = 0xa5;

    end = tg_batch_serialize(b, out);
    ok((size_t) (end - out) == len && out[len] == 0xa5,
       "%s: serialized_len is exact", name);

    rc = parse(&b2, items2, b->max_items, (const char *) out, len, err);
    is_rc(rc, TG_OK, "%s: serialized body is accepted", name);

    if (rc == TG_OK) {
        ok(batches_equal(b, &b2), "%s: same items and delay after the trip",
           name);

        end = tg_batch_serialize(&b2, out2);
        ok((size_t) (end - out2) == len && memcmp(out, out2, len) == 0,
           "%s: serialization is a fixed point", name);

        free(b2.scratch);
    }

    free(out);
    free(out2);
}


/* a body of n items "id0000", "id0001", ... (the last one as given) */

static char *
make_body(size_t n, const char *last)
{
    char    *body, *p;
    size_t   i;

    body = malloc(64 + n * 80);
    p = body;
    p += sprintf(p, "{\"databases_instance_infos\":[");

    for (i = 0; i < n; i++) {
        if (i + 1 == n && last != NULL) {
            p += sprintf(p, "%s{\"instance_id\":\"%s\","
                         "\"current_version\":\"2.0\"}", i ? "," : "", last);

        } else {
            p += sprintf(p, "%s{\"instance_id\":\"id%04zu\","
                         "\"current_version\":\"2.0\"}", i ? "," : "", i);
        }
    }

    sprintf(p, "],\"delay\":\"true\"}");

    return body;
}


static void
test_accepts(void)
{
    char               err[TG_BATCH_ERR_SIZE];
    size_t             i, k, len;
    tg_rc_t            rc;
    tg_batch_t         b;
    const accept_t    *a;
    const tg_str_t    *s;

    for (i = 0; i < sizeof(accepts) / sizeof(accepts[0]); i++) {
        a = &accepts[i];
        len = a->len ? a->len : strlen(a->body);

        rc = parse(&b, items, MAX_ITEMS, a->body, len, err);
        if (!is_rc(rc, TG_OK, "accept: %s", a->name)) {
            printf("#   err: %s\n", err);
            continue;
        }

        is_int(b.nitems, a->nitems, "%s: item count", a->name);
        is_int(b.delay, a->delay, "%s: delay", a->name);
        is_int(b.delay_kind, a->kind, "%s: delay kind", a->name);

        if (a->id0 != NULL) {
            ok(str_eq(items[0].instance_id, a->id0),
               "%s: instance_id decoded", a->name);
            ok(str_eq(items[0].current_version, a->ver0),
               "%s: current_version decoded", a->name);
        }

        for (k = 0; k < b.nitems; k++) {
            s = &items[k].instance_id;
            if (s->data < b.scratch || s->data + s->len > b.scratch + len) {
                break;
            }
        }

        is_int(k, b.nitems, "%s: strings live in scratch", a->name);

        round_trip(a->name, &b);
        free(b.scratch);
    }
}


static void
test_rejects(void)
{
    char               err[TG_BATCH_ERR_SIZE];
    size_t             i, len;
    tg_rc_t            rc;
    tg_batch_t         b;
    const reject_t    *r;

    for (i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
        r = &rejects[i];
        len = r->len ? r->len : strlen(r->body);

        memset(err, 'X', sizeof(err));
        rc = parse(&b, items, MAX_ITEMS, r->body, len, err);
        is_rc(rc, r->rc, "reject: %s (%s)", r->name, tg_strerror(r->rc));

        if (r->msg != NULL) {
            is_str(err, r->msg, "%s: message", r->name);

        } else {
            ok(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0',
               "%s: message \"%s\"", r->name,
               memchr(err, '\0', sizeof(err)) ? err : "(unterminated)");
        }

        is_int(b.nitems, 0, "%s: nitems stays 0", r->name);
    }
}


static void
test_sizes(void)
{
    char        err[TG_BATCH_ERR_SIZE], *body, s[TG_BATCH_STRING_MAX + 2];
    char        big[TG_BATCH_STRING_MAX * 8];
    size_t      i;
    tg_rc_t     rc;
    tg_batch_t  b;

    /* exactly max_items, then one more */

    body = make_body(MAX_ITEMS, NULL);
    rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_OK, "exactly max_items (%d) items", MAX_ITEMS);
    is_int(b.nitems, MAX_ITEMS, "max_items: all counted");
    ok(str_eq(items[MAX_ITEMS - 1].instance_id, "id0099"),
       "max_items: last item decoded");
    if (rc == TG_OK) {
        round_trip("max_items", &b);
        free(b.scratch);
    }
    free(body);

    body = make_body(MAX_ITEMS + 1, NULL);
    rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_ERR_BATCH_TOO_LARGE, "max_items + 1 items");
    is_str(err, "databases_instance_infos: 101 items, at most 100",
           "max_items + 1: message");
    free(body);

    body = make_body(2, NULL);
    rc = parse(&b, items, 1, body, strlen(body), err);
    is_rc(rc, TG_ERR_BATCH_TOO_LARGE, "2 items with max_items 1");
    is_str(err, "databases_instance_infos: 2 items, at most 1",
           "max_items 1: message");
    free(body);

    /* the ceiling, with the repeat at the far end */

    body = make_body(TG_BATCH_MAX_ITEMS, NULL);
    rc = parse(&b, items, TG_BATCH_MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_OK, "TG_BATCH_MAX_ITEMS distinct items");
    if (rc == TG_OK) {
        free(b.scratch);
    }
    free(body);

    body = make_body(TG_BATCH_MAX_ITEMS, "id0000");
    rc = parse(&b, items, TG_BATCH_MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_ERR_DUP_INSTANCE, "last of 1000 repeats the first");
    is_str(err, "databases_instance_infos[999].instance_id: same as [0]",
           "last of 1000: message");
    free(body);

    /* strings of TG_BATCH_STRING_MAX bytes and one more */

    memset(s, 'v', sizeof(s));
    s[TG_BATCH_STRING_MAX] = '\0';
    body = malloc(1024);
    sprintf(body, BODY("{\"instance_id\":\"a\",\"current_version\":\"%s\"}",
                       "false"), s);
    rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_OK, "current_version of %d bytes", TG_BATCH_STRING_MAX);
    if (rc == TG_OK) {
        round_trip("longest string", &b);
        free(b.scratch);
    }

    s[TG_BATCH_STRING_MAX] = 'v';
    s[TG_BATCH_STRING_MAX + 1] = '\0';
    sprintf(body, BODY("{\"instance_id\":\"%s\",\"current_version\":\"1\"}",
                       "false"), s);
    rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_ERR_STRING_TOO_LONG, "instance_id of %d bytes",
          TG_BATCH_STRING_MAX + 1);
    is_str(err, "databases_instance_infos[0].instance_id: 257 bytes, "
           "at most 256", "too long: message");
    free(body);

    /* the limit is on decoded bytes: 129 x \u00e9 is 774 raw, 258 decoded */

    big[0] = '\0';
    for (i = 0; i < 129; i++) {
        strcat(big, "\\u00e9");
    }
    body = malloc(2048);
    sprintf(body, BODY("{\"instance_id\":\"a\",\"current_version\":\"%s\"}",
                       "false"), big);
    rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_ERR_STRING_TOO_LONG, "258 decoded bytes from escapes");

    /* 128 of them: 256 decoded bytes, accepted */
    big[128 * 6] = '\0';
    sprintf(body, BODY("{\"instance_id\":\"a\",\"current_version\":\"%s\"}",
                       "false"), big);
    rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
    is_rc(rc, TG_OK, "256 decoded bytes from escapes");
    if (rc == TG_OK) {
        is_int(items[0].current_version.len, 256, "decoded length 256");
        round_trip("escaped non-ASCII", &b);
        free(b.scratch);
    }
    free(body);

    /* nesting far past the limit is refused at the fourth level */

    body = malloc(100001);
    memset(body, '[', 100000);
    body[100000] = '\0';
    rc = parse(&b, items, MAX_ITEMS, body, 100000, err);
    is_rc(rc, TG_ERR_DEPTH, "100000 nested arrays");
    is_str(err, "nesting deeper than 3 at byte 3", "deep nesting: message");
    free(body);
}


/*
 * A value's bytes at every offset of its first words: a plain run up to
 * the closing quote is copied as it is, anything else is decoded, and
 * either way the same bytes come out or the same error at the same byte.
 */

static void
test_values(void)
{
    char          err[TG_BATCH_ERR_SIZE], want[TG_BATCH_ERR_SIZE];
    char          body[256], value[64];
    size_t        pos, tail, x, head, bad;
    tg_rc_t       rc;
    tg_batch_t    b;

    static const struct {
        const char  *raw;        /* as written in the body */
        const char  *decoded;    /* NULL: refused */
        tg_rc_t      rc;
        const char  *what;       /* the syntax error, or NULL: schema */
    } probes[] = {
        { "\x01", NULL, TG_ERR_CTRL_CHAR, "control character" },
        { "\x1f", NULL, TG_ERR_CTRL_CHAR, "control character" },
        { "\x7f", NULL, TG_ERR_CTRL_CHAR, "control character" },
        { "\x80", NULL, TG_ERR_UTF8, "invalid UTF-8" },
        { "\xff", NULL, TG_ERR_UTF8, "invalid UTF-8" },
        { "\\n", NULL, TG_ERR_CTRL_CHAR, NULL },
        { "\xc3\xa9", "\xc3\xa9", TG_OK, NULL },
        { "\\\"", "\"", TG_OK, NULL },
        { "\\u0041", "A", TG_OK, NULL },
        { "~", "~", TG_OK, NULL },
    };

    bad = 0;
    head = strlen("{\"databases_instance_infos\":[{\"instance_id\":\"");

    for (pos = 0; pos < 20; pos++) {
        for (tail = 0; tail < 10; tail += 3) {
            for (x = 0; x < sizeof(probes) / sizeof(probes[0]); x++) {
                memset(value, 'v', pos);
                value[pos] = '\0';
                snprintf(body, sizeof(body),
                         "{\"databases_instance_infos\":[{\"instance_id\":"
                         "\"%s%s%.*s\",\"current_version\":\"1\"}],"
                         "\"delay\":true}", value, probes[x].raw,
                         (int) tail, "wwwwwwwwww");

                rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);

                if (probes[x].rc == TG_OK) {
                    snprintf(want, sizeof(want), "%s%s%.*s", value,
                             probes[x].decoded, (int) tail, "wwwwwwwwww");
                    bad += (rc != TG_OK
                            || !str_eq(items[0].instance_id, want));

                } else if (probes[x].what != NULL) {
                    snprintf(want, sizeof(want), "%s at byte %zu",
                             probes[x].what, head + pos);
                    bad += (rc != probes[x].rc || strcmp(err, want) != 0);

                } else {
                    bad += (rc != probes[x].rc || strcmp(err,
                            "databases_instance_infos[0].instance_id: "
                            "control character") != 0);
                }

                if (rc == TG_OK) {
                    free(b.scratch);
                }
            }
        }
    }

    is_int(bad, 0, "a value's byte to decode or refuse at every offset");
}


/*
 * The repeated instance reported, for batches that the hash table checks
 * (up to 512 items) and that the sort checks (more): IDs of 1 to 40
 * bytes, so they end anywhere in a word, drawn from a pool small enough
 * to repeat, against a quadratic search for the earliest second
 * occurrence.  Half the bodies spell every ID with a "\u0069" escape
 * somewhere, so equal IDs are compared decoded.
 */

static void
test_dups(void)
{
    char          err[TG_BATCH_ERR_SIZE], want[TG_BATCH_ERR_SIZE], *body, *p;
    size_t        sizes[] = { 2, 3, 8, 50, 511, 512, 513, 1000 };
    size_t        t, round, n, i, j, k, pool, first, second, len, bad;
    tg_rc_t       rc;
    tg_batch_t    b;
    static char   ids[TG_BATCH_MAX_ITEMS][48];

    srand(20261205);

    for (t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        bad = 0;
        n = sizes[t];

        for (round = 0; round < 40; round++) {

            /* round 0: all distinct; then pools from 2n down to 2 IDs */

            pool = (round == 0) ? n : 2 * n / round + 2;

            for (i = 0; i < n; i++) {
                k = (round == 0) ? i : (size_t) rand() % pool;
                len = 1 + (k * 7) % 40;
                memset(ids[i], 'a' + (int) (k % 26), len);
                sprintf(ids[i] + (len > 8 ? len - 8 : 0), "%08zx", k);
            }

            second = n;
            first = 0;

            for (i = 1; i < n && second == n; i++) {
                for (j = 0; j < i; j++) {
                    if (strcmp(ids[i], ids[j]) == 0) {
                        first = j;
                        second = i;
                        break;
                    }
                }
            }

            body = malloc(64 + n * 120);
            p = body + sprintf(body, "{\"databases_instance_infos\":[");

            for (i = 0; i < n; i++) {
                p += sprintf(p, "%s{\"current_version\":\"2.0\","
                             "\"instance_id\":\"%s%s\"}", i ? "," : "",
                             (round % 2) ? "\\u0069" : "i", ids[i]);
            }

            sprintf(p, "],\"delay\":\"true\"}");

            rc = parse(&b, items, TG_BATCH_MAX_ITEMS, body, strlen(body), err);

            if (second == n) {
                bad += (rc != TG_OK);

                if (rc == TG_OK) {
                    free(b.scratch);
                }

            } else {
                snprintf(want, sizeof(want), "databases_instance_infos[%zu]"
                         ".instance_id: same as [%zu]", second, first);
                bad += (rc != TG_ERR_DUP_INSTANCE || strcmp(err, want) != 0);

                if (rc != TG_ERR_DUP_INSTANCE || strcmp(err, want) != 0) {
                    printf("# %zu items: got \"%s\", want \"%s\"\n",
                           n, err, want);
                }
            }

            free(body);
        }

        is_int(bad, 0, "%zu items: the earliest repeat, %s", n,
               n > 512 ? "by the sort" : "by the hash table");
    }
}


/*
 * tg_batch_write() through windows of every size from 1 to past the
 * body, hashed: an item composes itself in the window when it fits and
 * goes piece by piece when not, and the hash is the body's either way;
 * a counting pass learns its length.
 */

static void
test_write_windows(void)
{
    char            err[TG_BATCH_ERR_SIZE], want[TG_SHA256_HEX_LEN + 1];
    char            got[TG_SHA256_HEX_LEN + 1], *body;
    size_t          w, len, bad, quoted;
    tg_rc_t         rc;
    tg_out_t        o;
    tg_batch_t      b;
    tg_sha256_t     sha;
    unsigned char   out[1024], win[300], md[TG_SHA256_LEN], *end;

    for (quoted = 0; quoted < 2; quoted++) {
        body = quoted ? BODY(ITEM("a\\\"1", "2.0") "," ITEM("b", "3"), "false")
                      : BODY(ITEM("a1", "2.0") "," ITEM("bb", "3") ","
                             ITEM("\xc3\xa9", "4"), "false");

        rc = parse(&b, items, MAX_ITEMS, body, strlen(body), err);
        if (!is_rc(rc, TG_OK, "windows: body %zu parses", quoted)) {
            continue;
        }

        end = tg_batch_serialize(&b, out);
        len = (size_t) (end - out);

        if (tg_sha256_hex(out, len, want) != TG_OK) {
            free(b.scratch);
            continue;
        }

        bad = 0;

        for (w = 1; w <= len + 2 && w <= sizeof(win); w++) {
            tg_sha256_init(&sha);
            tg_out_init(&o, win, w);
            tg_out_hash(&o, &sha);
            tg_batch_write(&b, &o);

            if (tg_out_sha256(&o, md) != TG_OK) {
                bad++;
                continue;
            }

            tg_sha256_hex_of(md, got);
            bad += (o.overflow || o.len != len || strcmp(got, want) != 0);
        }

        tg_out_init(&o, NULL, 0);
        tg_batch_write(&b, &o);
        bad += (o.len != len || o.len != tg_batch_serialized_len(&b));

        is_int(bad, 0, "windows of 1..%zu bytes hash the body%s", len + 2,
               quoted ? " (quotes)" : "");
        free(b.scratch);
    }
}


static void
test_serialize(void)
{
    char            err[TG_BATCH_ERR_SIZE];
    size_t          len;
    tg_rc_t         rc;
    tg_batch_t      b;
    unsigned char   out[1024], *end;

    rc = parse(&b, items, MAX_ITEMS, EXAMPLE_BODY, strlen(EXAMPLE_BODY), err);
    is_rc(rc, TG_OK, "README example parses");
    if (rc != TG_OK) {
        return;
    }

    len = tg_batch_serialized_len(&b);
    end = tg_batch_serialize(&b, out);
    *end = '\0';
    is_str((char *) out, EXAMPLE_CANON, "README example: canonical bytes");
    is_int(len, strlen(EXAMPLE_CANON), "README example: serialized_len");

    b.delay_kind = TG_DELAY_BOOL;
    b.delay = 1;
    end = tg_batch_serialize(&b, out);
    *end = '\0';
    ok(strstr((char *) out, "],\"delay\":true}") != NULL
       && (size_t) (end - out) == tg_batch_serialized_len(&b),
       "bool delay serialized bare");
    free(b.scratch);

    /* '"' and '\\' are escaped again, UTF-8 kept raw */

    rc = parse(&b, items, MAX_ITEMS,
               BODY(ITEM("a\\\"b", "\\\\\\u00e9\\/"), "true"),
               strlen(BODY(ITEM("a\\\"b", "\\\\\\u00e9\\/"), "true")), err);
    is_rc(rc, TG_OK, "escapes parse");
    if (rc != TG_OK) {
        return;
    }

    end = tg_batch_serialize(&b, out);
    *end = '\0';
    is_str((char *) out,
           "{\"databases_instance_infos\":[{\"instance_id\":\"a\\\"b\","
           "\"current_version\":\"\\\\\xc3\xa9/\"}],\"delay\":true}",
           "escapes: canonical bytes");
    free(b.scratch);

    /*
     * No '"' or '\\' in any string: each is copied without a look, so
     * UTF-8 and '/' must come out as escaping would write them; one '"'
     * in the last item sends every string through the escaper.
     */

    rc = parse(&b, items, MAX_ITEMS,
               BODY(ITEM("\\u00e9/a", "1") "," ITEM("b\xe2\x82\xac", "2"),
                    "false"),
               strlen(BODY(ITEM("\\u00e9/a", "1") "," ITEM("b\xe2\x82\xac",
                                                           "2"), "false")),
               err);
    is_rc(rc, TG_OK, "no quotes parse");
    if (rc != TG_OK) {
        return;
    }

    len = tg_batch_serialized_len(&b);
    end = tg_batch_serialize(&b, out);
    *end = '\0';
    is_str((char *) out,
           "{\"databases_instance_infos\":[{\"instance_id\":\"\xc3\xa9/a\","
           "\"current_version\":\"1\"},{\"instance_id\":\"b\xe2\x82\xac\","
           "\"current_version\":\"2\"}],\"delay\":false}",
           "no quotes: strings copied, canonical bytes");
    is_int(len, end - out, "no quotes: serialized_len");
    free(b.scratch);

    rc = parse(&b, items, MAX_ITEMS,
               BODY(ITEM("\xc3\xa9/a", "1") "," ITEM("b", "2\\\""),
                    "false"),
               strlen(BODY(ITEM("\xc3\xa9/a", "1") "," ITEM("b", "2\\\""),
                           "false")),
               err);
    is_rc(rc, TG_OK, "one quote parses");
    if (rc != TG_OK) {
        return;
    }

    len = tg_batch_serialized_len(&b);
    end = tg_batch_serialize(&b, out);
    *end = '\0';
    is_str((char *) out,
           "{\"databases_instance_infos\":[{\"instance_id\":\"\xc3\xa9/a\","
           "\"current_version\":\"1\"},{\"instance_id\":\"b\","
           "\"current_version\":\"2\\\"\"}],\"delay\":false}",
           "one quote: every string escaped, canonical bytes");
    is_int(len, end - out, "one quote: serialized_len");
    free(b.scratch);
}


static void
test_args(void)
{
    char            err[TG_BATCH_ERR_SIZE], small[16];
    tg_rc_t         rc;
    tg_batch_t      b;
    unsigned char   scratch[512];
    const char     *body;

    body = EXAMPLE_BODY;

    batch_init(&b, items, MAX_ITEMS, scratch, strlen(body) - 1);
    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), err,
                        sizeof(err));
    is_rc(rc, TG_ERR_BUF_TOO_SMALL, "scratch smaller than the body");

    batch_init(&b, NULL, MAX_ITEMS, scratch, sizeof(scratch));
    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), err,
                        sizeof(err));
    is_rc(rc, TG_ERR_ARG, "no items array");

    batch_init(&b, items, 0, scratch, sizeof(scratch));
    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), err,
                        sizeof(err));
    is_rc(rc, TG_ERR_ARG, "max_items 0");

    batch_init(&b, items, TG_BATCH_MAX_ITEMS + 1, scratch, sizeof(scratch));
    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), err,
                        sizeof(err));
    is_rc(rc, TG_ERR_ARG, "max_items above TG_BATCH_MAX_ITEMS");

    batch_init(&b, items, MAX_ITEMS, scratch, sizeof(scratch));
    rc = tg_batch_parse(&b, NULL, 0, err, sizeof(err));
    is_rc(rc, TG_ERR_EMPTY_BODY, "NULL body of length 0");

    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), NULL,
                        0);
    is_rc(rc, TG_OK, "no err buffer is fine");

    /* a short err buffer never ends inside a UTF-8 sequence */

    body = "{\"\xc3\xa9\xc3\xa9\xc3\xa9\":1}";

    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), small,
                        15);
    is_rc(rc, TG_ERR_UNKNOWN_KEY, "unknown non-ASCII key");
    is_str(small, "unknown key \"", "cut before a split sequence");

    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), small,
                        16);
    is_rc(rc, TG_ERR_UNKNOWN_KEY, "unknown non-ASCII key, one more byte");
    is_str(small, "unknown key \"\xc3\xa9", "whole sequence kept");
}


/*
 * tg_batch_room(): the items array a body needs.  Bodies of nothing but
 * the smallest whole items (TG_BATCH_ITEM_MIN bytes each, as tight as
 * they come) fit an array of exactly the room given, on the heap, so a
 * write past it is seen; the room of a batch of one is a few entries;
 * and a room smaller than the body's whole items fails with
 * TG_ERR_BUF_TOO_SMALL, never written past, where the same body with
 * enough room is accepted.
 */

static void
test_room(void)
{
    char            err[TG_BATCH_ERR_SIZE];
    char           *body, *p;
    size_t          n, k, len, room;
    tg_rc_t         rc;
    tg_batch_t      b;
    tg_instance_t  *it;
    unsigned char  *scratch;

    static const char  item[] = ITEM("a", "1");
    static const char  head[] = "{\"databases_instance_infos\":[";
    static const char  tail[] = "],\"delay\":true}";

    is_int(sizeof(item) - 1, TG_BATCH_ITEM_MIN,
           "the smallest whole item is TG_BATCH_ITEM_MIN bytes");

    is_int(tg_batch_room(100, strlen(EXAMPLE_BODY)), 4,
           "a batch of one: room for 4 items, not 100");
    is_int(tg_batch_room(3, 100000), 3, "never more than max_items");
    is_int(tg_batch_room(100, 0), 1, "an empty body: room for one");

    for (n = 1; n <= 200; n++) {
        len = sizeof(head) - 1 + n * (sizeof(item) - 1) + (n - 1)
              + sizeof(tail) - 1;

        body = malloc(len);
        scratch = malloc(len);
        room = tg_batch_room(TG_BATCH_MAX_ITEMS, len);
        it = malloc(room * sizeof(tg_instance_t));

        if (body == NULL || scratch == NULL || it == NULL) {
            ok(0, "malloc");
            return;
        }

        p = body;
        memcpy(p, head, sizeof(head) - 1);
        p += sizeof(head) - 1;

        for (k = 0; k < n; k++) {
            if (k > 0) {
                *p++ = ',';
            }

            memcpy(p, item, sizeof(item) - 1);
            p += sizeof(item) - 1;
        }

        memcpy(p, tail, sizeof(tail) - 1);

        /* the items are all the same instance: refused, but only after
           every one of them was kept */

        batch_init(&b, it, TG_BATCH_MAX_ITEMS, scratch, len);
        b.room = room;

        rc = tg_batch_parse(&b, (const unsigned char *) body, len, err,
                            sizeof(err));

        if (n == 1) {
            is_rc(rc, TG_OK, "one smallest item in its room");

        } else if (!ok(rc == TG_ERR_DUP_INSTANCE && room >= n,
                       "%zu smallest items: kept in a room of %zu", n,
                       room))
        {
            printf("# %s\n", err);
        }

        if (n == 50) {
            batch_init(&b, it, TG_BATCH_MAX_ITEMS, scratch, len);
            b.room = n - 1;

            rc = tg_batch_parse(&b, (const unsigned char *) body, len, err,
                                sizeof(err));
            is_rc(rc, TG_ERR_BUF_TOO_SMALL,
                  "50 whole items, room for 49: refused, not overrun");
        }

        free(it);
        free(scratch);
        free(body);
    }
}


int
main(void)
{
    test_accepts();
    test_rejects();
    test_sizes();
    test_values();
    test_dups();
    test_serialize();
    test_write_windows();
    test_args();
    test_room();

    return done_testing();
}
