/*
 * The allow-list: a set of (project_id, instance_id) pairs, built once at
 * configuration time and looked up in constant time per instance.
 *
 * An open-addressing hash table over one string arena; adding a pair
 * that is there already is TG_ERR_DUP_ENTRY so the configuration parser
 * can point at the line.
 */

#ifndef TG_ALLOW_H
#define TG_ALLOW_H


#include "tg_core.h"


#define TG_PROJECT_ID_LEN       32
#define TG_INSTANCE_ID_MIN_LEN  32
#define TG_INSTANCE_ID_MAX_LEN  64


typedef struct tg_allow_s  tg_allow_t;


/* exactly 32 ASCII letters or digits */
tg_rc_t tg_project_id_check(const unsigned char *p, size_t len) TG_WUR;

/* 32..64 ASCII letters or digits */
tg_rc_t tg_instance_id_check(const unsigned char *p, size_t len) TG_WUR;

/* NULL when out of memory; hint is the expected number of pairs (0 ok) */
tg_allow_t *tg_allow_create(size_t hint);
void tg_allow_destroy(tg_allow_t *a);

/*
 * Room for that many more pairs and bytes of IDs, so that a big list
 * read at once is not rehashed as it grows.
 */
tg_rc_t tg_allow_reserve(tg_allow_t *a, size_t pairs, size_t bytes) TG_WUR;

/*
 * TG_ERR_BAD_PROJECT_ID, TG_ERR_BAD_INSTANCE_ID, TG_ERR_DUP_ENTRY,
 * TG_ERR_NOMEM or TG_OK.
 */
tg_rc_t tg_allow_add(tg_allow_t *a, const unsigned char *project,
    size_t plen, const unsigned char *instance, size_t ilen) TG_WUR;

/* 1 if the pair is allowed, 0 otherwise (a NULL list allows nothing) */
int tg_allow_contains(const tg_allow_t *a, const unsigned char *project,
    size_t plen, const unsigned char *instance, size_t ilen) TG_WUR;

/* 1 if the list names the project (with any instance), 0 otherwise */
int tg_allow_has_project(const tg_allow_t *a, const unsigned char *project,
    size_t plen) TG_WUR;

size_t tg_allow_count(const tg_allow_t *a);
size_t tg_allow_project_count(const tg_allow_t *a);

/*
 * An allow-list file's text, parsed straight into the table without
 * nginx's configuration parser (which keeps a copy of every word for the
 * life of the configuration: 40 MB for a million IDs): statements
 * "project_id instance_id ...;", '#' comments to the end of a line,
 * words optionally in quotes (no escapes), and "include PATH;".
 *
 * The caller sets text, len (and pos, line to 0) and calls until the
 * result is not TG_OK or pos reaches len.  TG_OK with include set: an
 * "include" statement, which the caller follows before calling again.
 * Otherwise the result is that of tg_allow_add() for token (in project's
 * statement), TG_ERR_BAD_INSTANCE_ID with an empty token for a project
 * without instances, or TG_ERR_SYNTAX with what saying why.  line is
 * where the statement's ';' is (or the offending byte): where nginx
 * would point.  TG_ERR_ARG for a NULL table.
 */
typedef struct {
    const unsigned char *text;
    size_t               len;
    size_t               pos;
    size_t               line;
    const void          *where;     /* the caller's, for tg_allow_note() */

    tg_str_t             include;
    tg_str_t             project;
    tg_str_t             token;
    const char          *what;
} tg_allow_parse_t;

tg_rc_t tg_allow_parse(tg_allow_t *a, tg_allow_parse_t *ps) TG_WUR;

/*
 * A missing ';' makes a project ID an instance of the project before it
 * ("P1 I1" on one line, "P2 I2;" on the next, reads as P1 allowing I1,
 * P2 and I2), and a project ID passes the instance ID check.  An
 * instance of a project ID's shape (32 letters or digits) is rare, so
 * each one is kept aside with where it was written (where, the caller's,
 * and line; tg_allow_parse() notes those it reads itself, with its
 * ps->where), and tg_allow_stray() looks them all up among the projects
 * once the whole list is read: the other entries cost nothing.
 *
 * tg_allow_note() keeps nothing for an instance of another length:
 * TG_OK, or TG_ERR_NOMEM, TG_ERR_ARG.
 */
tg_rc_t tg_allow_note(tg_allow_t *a, const unsigned char *project,
    const unsigned char *instance, size_t ilen, const void *where,
    size_t line) TG_WUR;

typedef struct {
    tg_str_t             project;
    tg_str_t             instance;
    const void          *where;
    size_t               line;
} tg_allow_stray_t;

/*
 * TG_ERR_INSTANCE_IS_PROJECT with *s telling the first instance noted
 * (in the order noted) that is a project of the list, wherever that
 * project's own lines are; TG_OK when there is none.  s points into the
 * table, valid while it is.
 */
tg_rc_t tg_allow_stray(const tg_allow_t *a, tg_allow_stray_t *s) TG_WUR;

/*
 * Asks for huge pages under a big buffer not yet touched (the table's
 * own, or the text of a list about to be read into it): a million
 * entries touch some 100 MB at random, and 4 KB pages cost a page fault
 * each and a TLB miss on most accesses.  A hint, where the system has
 * it (Linux's madvise(MADV_HUGEPAGE)); it covers the buffer's whole
 * 2 MB pages only.
 */
void tg_allow_huge_hint(void *p, size_t len);


/*
 * SHA-256 of the sorted list, one "project_id instance_id\n" line per
 * pair, as 64 hex digits and a NUL: `sort | sha256sum` of the same lines
 * gives the same digest, so a reviewer can tell which policy decided.
 */
tg_rc_t tg_allow_digest(const tg_allow_t *a, char hex[65]) TG_WUR;


#endif /* TG_ALLOW_H */
