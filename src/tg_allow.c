/*
 * The allow-list: open addressing with linear probing over power-of-two
 * tables of 8-byte slots, at most half full; the ID bytes live once in
 * one growable arena addressed by 32-bit offsets, so growing it
 * (realloc) never invalidates a slot.
 *
 * Two tables share the arena.  A project record is the 32-byte ID and a
 * 32-bit rank (its place among the projects, for the digest); a pair
 * record is its project record's offset, a length byte and the instance
 * ID.  A slot holds 32 bits of the entry's hash, which also picks its
 * place, and the record's offset (0: empty).  One million pairs of
 * 36-byte instance IDs take 16 MB of slots and 41 MB of arena.
 *
 * A lookup hashes the project and instance IDs together and probes the
 * pair table alone; the project table serves the parser, which looks a
 * project up once per statement, and tg_allow_has_project().  The hash
 * is keyed with random bytes drawn when the table is made: the entries
 * come from trusted configuration, but the IDs looked up come from
 * clients, and without the key they cannot pick IDs that all land in
 * one long run of the table.  Lookups compare the full bytes after a
 * hash match.
 */

/* madvise()'s MADV_HUGEPAGE, where there is one, is no POSIX name */
#define _DEFAULT_SOURCE

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "tg_allow.h"
#include "tg_sha256.h"


#define TG_ALLOW_MIN_SLOTS  16

#define TG_ALLOW_PROJECT    (TG_PROJECT_ID_LEN + 4)     /* ID, rank */
#define TG_ALLOW_PAIR_HEAD  5                           /* project, len */

/* the digest's lines are hashed a buffer at a time */
#define TG_ALLOW_DIGEST_BUF  8192

/*
 * The digest reads the records in an order unrelated to where they lie:
 * asking for one some lines ahead keeps the memory busy meanwhile.
 */
#define TG_ALLOW_AHEAD  16

#if defined(__GNUC__) || defined(__clang__)
#define tg_allow_prefetch(p)  __builtin_prefetch(p)
#else
#define tg_allow_prefetch(p)
#endif

/*
 * A huge page (tg_allow_huge_hint()) on x86-64 and on arm64 with 4 KB
 * pages; where huge pages are bigger, the hint covers less, or nothing.
 */
#define TG_ALLOW_HUGE  ((uintptr_t) 2 * 1024 * 1024)

#define TG_ALLOW_K1  0x9e3779b97f4a7c15ULL
#define TG_ALLOW_K2  0xbf58476d1ce4e5b9ULL

/* the byte classes of an allow-list's text */
#define TG_ALLOW_ID     1       /* a letter or a digit: an ID's byte */
#define TG_ALLOW_SPACE  2       /* white space, skipped between words */
#define TG_ALLOW_STOP   4       /* ends a word: white space, ';', braces */


typedef struct {
    uint32_t             hash;
    uint32_t             off;       /* the record; 0: empty slot */
} tg_allow_slot_t;


typedef struct {
    tg_allow_slot_t     *slots;
    size_t               mask;      /* number of slots - 1 */
    size_t               used;
} tg_allow_table_t;


/* an instance of a project ID's shape, and where it was written */
typedef struct {
    unsigned char        project[TG_PROJECT_ID_LEN];
    unsigned char        instance[TG_PROJECT_ID_LEN];
    const void          *where;
    size_t               line;
} tg_allow_note_t;


struct tg_allow_s {
    tg_allow_table_t     pairs;
    tg_allow_table_t     projects;
    unsigned char       *arena;
    size_t               arena_len;     /* offset 0 is never used */
    size_t               arena_size;
    uint64_t             key[2];        /* the hash's, random */
    tg_allow_note_t     *notes;
    size_t               nnotes;
    size_t               notes_size;
};


/*
 * A statement's instances on their way into the table: each is hashed
 * and its slot asked for (prefetched) some words before it is put in,
 * so that the slot's cache miss, the cost of an insert into a big
 * table, overlaps with reading the words that follow.
 */
#define TG_ALLOW_QUEUE  8

typedef struct {
    const unsigned char  *project;
    uint32_t              ph;
    uint32_t              poff;     /* 0 until the project has a record */
    size_t                head;
    size_t                n;
    tg_str_t              word[TG_ALLOW_QUEUE];
    uint32_t              hash[TG_ALLOW_QUEUE];
} tg_allow_queue_t;


/* a digest line: its sort key, then its pair record */
typedef struct {
    uint64_t             key;       /* project rank, 4 instance bytes */
    uint32_t             off;
    uint32_t             pad;
} tg_allow_line_t;


static int tg_id_chars_ok(const unsigned char *p, size_t len);
static void tg_allow_key(tg_allow_t *a);
static tg_allow_slot_t *tg_allow_slots(size_t n);
static uint64_t tg_allow_hash(const tg_allow_t *a,
    const unsigned char *project, const unsigned char *instance,
    size_t ilen);
static int tg_allow_eq(const unsigned char *x, const unsigned char *y,
    size_t len);
static tg_rc_t tg_allow_insert(tg_allow_t *a, const unsigned char *project,
    uint32_t ph, uint32_t *poffp, const unsigned char *instance, size_t ilen,
    uint32_t h);
static tg_rc_t tg_allow_flush(tg_allow_t *a, tg_allow_queue_t *q,
    size_t keep, tg_allow_parse_t *ps);
static tg_rc_t tg_allow_table_init(tg_allow_table_t *t, size_t hint);
static tg_rc_t tg_allow_table_fit(tg_allow_t *a, tg_allow_table_t *t,
    size_t more);
static void tg_allow_table_put(tg_allow_table_t *t, uint32_t hash,
    uint32_t off);
static uint32_t tg_allow_rehash(const tg_allow_t *a,
    const tg_allow_table_t *t, uint32_t off);
static uint32_t tg_allow_find_project(const tg_allow_t *a,
    const unsigned char *project, uint32_t hash);
static uint32_t tg_allow_find_pair(const tg_allow_t *a,
    const unsigned char *project, const unsigned char *instance,
    size_t ilen, uint32_t hash);
static tg_rc_t tg_allow_arena_reserve(tg_allow_t *a, size_t need);
static void tg_allow_rank(tg_allow_t *a);
static int tg_allow_project_cmp(const void *x, const void *y);
static int tg_allow_line_cmp(const void *x, const void *y);
static tg_rc_t tg_allow_radix(tg_allow_line_t *lines, tg_allow_line_t *tmp,
    size_t n);
static int tg_allow_is_include(const tg_str_t *w);
static size_t tg_allow_word(const unsigned char *p, const unsigned char *end,
    tg_allow_parse_t *ps, tg_str_t *word, int *id);


/*
 * The arena the comparators look into: qsort() passes no context.  Set
 * around each call, at configuration time only.
 */
static const unsigned char  *tg_allow_sort_arena;


/*
 * The class of every byte: an ID's letters and digits, and what ends a
 * word.  A byte of no class is part of a word that is no ID.
 */
#define TG_ALLOW_WS  (TG_ALLOW_SPACE | TG_ALLOW_STOP)

static const unsigned char  tg_id_char[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
    [' '] = TG_ALLOW_WS, ['\t'] = TG_ALLOW_WS, ['\r'] = TG_ALLOW_WS,
    ['\n'] = TG_ALLOW_WS,
    [';'] = TG_ALLOW_STOP, ['{'] = TG_ALLOW_STOP, ['}'] = TG_ALLOW_STOP,
};


tg_rc_t
tg_project_id_check(const unsigned char *p, size_t len)
{
    if (p == NULL || len != TG_PROJECT_ID_LEN || !tg_id_chars_ok(p, len)) {
        return TG_ERR_BAD_PROJECT_ID;
    }

    return TG_OK;
}


tg_rc_t
tg_instance_id_check(const unsigned char *p, size_t len)
{
    if (p == NULL
        || len < TG_INSTANCE_ID_MIN_LEN
        || len > TG_INSTANCE_ID_MAX_LEN
        || !tg_id_chars_ok(p, len))
    {
        return TG_ERR_BAD_INSTANCE_ID;
    }

    return TG_OK;
}


/* the other classes leave bit 0 clear */

static int
tg_id_chars_ok(const unsigned char *p, size_t len)
{
    size_t    i;
    unsigned  all;

    all = TG_ALLOW_ID;

    for (i = 0; i < len; i++) {
        all &= tg_id_char[p[i]];
    }

    return all;
}


tg_allow_t *
tg_allow_create(size_t hint)
{
    tg_allow_t  *a;

    a = calloc(1, sizeof(tg_allow_t));
    if (a == NULL) {
        return NULL;
    }

    if (hint > SIZE_MAX / 4 / sizeof(tg_allow_slot_t)) {
        goto failed;
    }

    if (tg_allow_table_init(&a->pairs, hint) != TG_OK
        || tg_allow_table_init(&a->projects, 0) != TG_OK)
    {
        goto failed;
    }

    tg_allow_key(a);

    a->arena_size = 4096;
    a->arena = malloc(a->arena_size);
    if (a->arena == NULL) {
        goto failed;
    }

    /* offset 0 marks an empty slot */
    a->arena[0] = 0;
    a->arena_len = 1;

    return a;

failed:

    tg_allow_destroy(a);
    return NULL;
}


/*
 * The hash's key: OpenSSL's generator, else the kernel's.  An OpenSSL
 * without a working generator must not stop nginx from starting (the
 * requests are refused later, for want of an audit id, with an alert
 * that says why); the table is as right with a weaker key, and the
 * table's own address still varies from run to run.
 */
static void
tg_allow_key(tg_allow_t *a)
{
    int      fd;
    ssize_t  n;

    if (RAND_bytes((unsigned char *) a->key, sizeof(a->key)) == 1) {
        return;
    }

    ERR_clear_error();

    n = -1;
    fd = open("/dev/urandom", O_RDONLY);

    if (fd != -1) {
        n = read(fd, a->key, sizeof(a->key));
        (void) close(fd);
    }

    if (n != (ssize_t) sizeof(a->key)) {
        a->key[0] = (uint64_t) (uintptr_t) a ^ TG_ALLOW_K2;
        a->key[1] = (uint64_t) (uintptr_t) a->pairs.slots ^ TG_ALLOW_K1;
    }
}


void
tg_allow_destroy(tg_allow_t *a)
{
    if (a == NULL) {
        return;
    }

    free(a->pairs.slots);
    free(a->projects.slots);
    free(a->arena);
    free(a->notes);
    free(a);
}


tg_rc_t
tg_allow_reserve(tg_allow_t *a, size_t pairs, size_t bytes)
{
    tg_rc_t  rc;

    if (a == NULL) {
        return TG_ERR_ARG;
    }

    rc = tg_allow_table_fit(a, &a->pairs, pairs);
    if (rc != TG_OK) {
        return rc;
    }

    return tg_allow_arena_reserve(a, bytes);
}


tg_rc_t
tg_allow_add(tg_allow_t *a, const unsigned char *project, size_t plen,
    const unsigned char *instance, size_t ilen)
{
    uint32_t  ph, poff;
    tg_rc_t   rc;

    if (a == NULL) {
        return TG_ERR_ARG;
    }

    rc = tg_project_id_check(project, plen);
    if (rc != TG_OK) {
        return rc;
    }

    rc = tg_instance_id_check(instance, ilen);
    if (rc != TG_OK) {
        return rc;
    }

    ph = (uint32_t) tg_allow_hash(a, project, NULL, 0);
    poff = tg_allow_find_project(a, project, ph);

    return tg_allow_insert(a, project, ph, &poff, instance, ilen,
                           (uint32_t) tg_allow_hash(a, project, instance,
                                                    ilen));
}


/*
 * A checked pair and its hash h, its project looked up already (*poffp,
 * 0 when the table has no record of it yet: one is made, and *poffp
 * told where).
 */
static tg_rc_t
tg_allow_insert(tg_allow_t *a, const unsigned char *project, uint32_t ph,
    uint32_t *poffp, const unsigned char *instance, size_t ilen, uint32_t h)
{
    uint32_t  poff, off;
    tg_rc_t   rc;

    poff = *poffp;

    if (poff != 0 && tg_allow_find_pair(a, project, instance, ilen, h) != 0)
    {
        return TG_ERR_DUP_ENTRY;
    }

    /* make room first: no partial entry is left behind on TG_ERR_NOMEM */

    rc = tg_allow_table_fit(a, &a->pairs, 1);
    if (rc != TG_OK) {
        return rc;
    }

    rc = tg_allow_arena_reserve(a, TG_ALLOW_PROJECT + TG_ALLOW_PAIR_HEAD
                                   + ilen);
    if (rc != TG_OK) {
        return rc;
    }

    if (poff == 0) {
        rc = tg_allow_table_fit(a, &a->projects, 1);
        if (rc != TG_OK) {
            return rc;
        }

        poff = (uint32_t) a->arena_len;
        memcpy(a->arena + poff, project, TG_PROJECT_ID_LEN);
        memset(a->arena + poff + TG_PROJECT_ID_LEN, 0, 4);
        a->arena_len += TG_ALLOW_PROJECT;

        tg_allow_table_put(&a->projects, ph, poff);
        *poffp = poff;
    }

    off = (uint32_t) a->arena_len;
    memcpy(a->arena + off, &poff, 4);
    a->arena[off + 4] = (unsigned char) ilen;
    memcpy(a->arena + off + TG_ALLOW_PAIR_HEAD, instance, ilen);
    a->arena_len += TG_ALLOW_PAIR_HEAD + ilen;

    tg_allow_table_put(&a->pairs, h, off);

    return TG_OK;
}


int
tg_allow_contains(const tg_allow_t *a, const unsigned char *project,
    size_t plen, const unsigned char *instance, size_t ilen)
{
    if (a == NULL
        || project == NULL
        || instance == NULL
        || plen != TG_PROJECT_ID_LEN
        || ilen < TG_INSTANCE_ID_MIN_LEN
        || ilen > TG_INSTANCE_ID_MAX_LEN)
    {
        return 0;
    }

    return tg_allow_find_pair(a, project, instance, ilen,
                              (uint32_t) tg_allow_hash(a, project, instance,
                                                       ilen))
           != 0;
}


int
tg_allow_has_project(const tg_allow_t *a, const unsigned char *project,
    size_t plen)
{
    if (a == NULL || project == NULL || plen != TG_PROJECT_ID_LEN) {
        return 0;
    }

    /* an offset into the arena, 0 when the project is not there */

    return tg_allow_find_project(a, project,
                                 (uint32_t) tg_allow_hash(a, project,
                                                          NULL, 0))
           != 0;
}


tg_rc_t
tg_allow_note(tg_allow_t *a, const unsigned char *project,
    const unsigned char *instance, size_t ilen, const void *where,
    size_t line)
{
    size_t            n;
    tg_allow_note_t  *note;

    if (a == NULL || project == NULL || instance == NULL) {
        return TG_ERR_ARG;
    }

    if (ilen != TG_PROJECT_ID_LEN) {
        return TG_OK;
    }

    if (a->nnotes == a->notes_size) {
        n = a->notes_size ? a->notes_size * 2 : 8;

        if (n > SIZE_MAX / sizeof(tg_allow_note_t)) {
            return TG_ERR_NOMEM;
        }

        note = realloc(a->notes, n * sizeof(tg_allow_note_t));
        if (note == NULL) {
            return TG_ERR_NOMEM;
        }

        a->notes = note;
        a->notes_size = n;
    }

    note = &a->notes[a->nnotes++];

    memcpy(note->project, project, TG_PROJECT_ID_LEN);
    memcpy(note->instance, instance, TG_PROJECT_ID_LEN);
    note->where = where;
    note->line = line;

    return TG_OK;
}


tg_rc_t
tg_allow_stray(const tg_allow_t *a, tg_allow_stray_t *s)
{
    size_t                  i;
    const tg_allow_note_t  *note;

    if (a == NULL || s == NULL) {
        return TG_ERR_ARG;
    }

    for (i = 0; i < a->nnotes; i++) {
        note = &a->notes[i];

        if (!tg_allow_has_project(a, note->instance, TG_PROJECT_ID_LEN)) {
            continue;
        }

        s->project.data = note->project;
        s->project.len = TG_PROJECT_ID_LEN;
        s->instance.data = note->instance;
        s->instance.len = TG_PROJECT_ID_LEN;
        s->where = note->where;
        s->line = note->line;

        return TG_ERR_INSTANCE_IS_PROJECT;
    }

    return TG_OK;
}


size_t
tg_allow_count(const tg_allow_t *a)
{
    return (a == NULL) ? 0 : a->pairs.used;
}


size_t
tg_allow_project_count(const tg_allow_t *a)
{
    return (a == NULL) ? 0 : a->projects.used;
}


/*
 * The lines in `LC_ALL=C sort` order: projects are ranked first (there
 * are few), then every pair gets a 64-bit key of its project's rank and
 * the first four bytes of its instance ID, radix-sorted; pairs whose keys
 * tie are few, and sorted by their full bytes.  The lines go to SHA-256
 * a buffer at a time: a call per line costs more than the line.
 */

tg_rc_t
tg_allow_digest(const tg_allow_t *a, char hex[65])
{
    size_t            i, j, n, len, blen;
    uint32_t          rank, off, poff;
    tg_sha256_t       sha;
    unsigned char     md[TG_SHA256_LEN];
    unsigned char    *buf;
    const unsigned char *rec, *pid;
    tg_allow_line_t  *lines, *tmp;

    if (a == NULL || hex == NULL) {
        return TG_ERR_ARG;
    }

    n = a->pairs.used;

    lines = malloc((n ? n : 1) * 2 * sizeof(tg_allow_line_t)
                   + TG_ALLOW_DIGEST_BUF);
    if (lines == NULL) {
        return TG_ERR_NOMEM;
    }

    tg_allow_huge_hint(lines, (n ? n : 1) * 2 * sizeof(tg_allow_line_t));

    tmp = lines + (n ? n : 1);
    buf = (unsigned char *) (tmp + (n ? n : 1));

    tg_allow_rank((tg_allow_t *) a);

    for (i = 0, j = 0; i <= a->pairs.mask; i++) {
        off = a->pairs.slots[i].off;

        tg_allow_prefetch(a->arena
                          + a->pairs.slots[(i + TG_ALLOW_AHEAD)
                                           & a->pairs.mask].off);

        if (off == 0) {
            continue;
        }

        rec = a->arena + off;
        memcpy(&poff, rec, 4);
        memcpy(&rank, a->arena + poff + TG_PROJECT_ID_LEN, 4);

        lines[j].key = ((uint64_t) rank << 32)
                       | ((uint64_t) rec[5] << 24) | ((uint64_t) rec[6] << 16)
                       | ((uint64_t) rec[7] << 8) | rec[8];
        lines[j].off = off;
        lines[j].pad = 0;
        j++;
    }

    if (tg_allow_radix(lines, tmp, n) != TG_OK) {
        free(lines);
        return TG_ERR_NOMEM;
    }

    tg_allow_sort_arena = a->arena;

    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && lines[j].key == lines[i].key; j++) {
            /* void */
        }

        if (j - i > 1) {
            qsort(&lines[i], j - i, sizeof(tg_allow_line_t),
                  tg_allow_line_cmp);
        }
    }

    tg_allow_sort_arena = NULL;

    /* "project_id instance_id\n" */

    tg_sha256_init(&sha);
    blen = 0;

    for (i = 0; i < n; i++) {
        if (i + TG_ALLOW_AHEAD < n) {
            tg_allow_prefetch(a->arena + lines[i + TG_ALLOW_AHEAD].off);
        }

        rec = a->arena + lines[i].off;
        memcpy(&off, rec, 4);
        pid = a->arena + off;
        len = TG_PROJECT_ID_LEN + rec[4] + 2;

        if (blen + len > TG_ALLOW_DIGEST_BUF) {
            tg_sha256_update(&sha, buf, blen);
            blen = 0;
        }

        memcpy(buf + blen, pid, TG_PROJECT_ID_LEN);
        buf[blen + TG_PROJECT_ID_LEN] = ' ';
        memcpy(buf + blen + TG_PROJECT_ID_LEN + 1, rec + TG_ALLOW_PAIR_HEAD,
               rec[4]);
        buf[blen + len - 1] = '\n';
        blen += len;
    }

    if (blen > 0) {
        tg_sha256_update(&sha, buf, blen);
    }

    free(lines);

    if (tg_sha256_final(&sha, md) != TG_OK) {
        return TG_ERR_CRYPTO;
    }

    tg_sha256_hex_of(md, hex);

    return TG_OK;
}


/*
 * The allow-list's own text: "project instance ...;" statements, '#'
 * comments to the end of the line, words in quotes, and "include PATH;"
 * handed back to the caller, who resumes the parse after it.
 *
 * The scanner tells of each word whether it is all letters and digits,
 * so an ID is checked as it is read; a statement's project is looked up
 * once, and its instances go into the table under that record.
 */

tg_rc_t
tg_allow_parse(tg_allow_t *a, tg_allow_parse_t *ps)
{
    int                   id;
    size_t                n, words, i;
    tg_rc_t               rc;
    tg_str_t              w, project;
    tg_allow_queue_t      q;
    const unsigned char  *p, *end;

    if (a == NULL || ps == NULL) {
        return TG_ERR_ARG;
    }

    p = ps->text + ps->pos;
    end = ps->text + ps->len;

    ps->include.data = NULL;
    ps->include.len = 0;
    ps->what = NULL;
    ps->token.data = NULL;
    ps->token.len = 0;

    if (ps->line == 0) {
        ps->line = 1;
    }

    words = 0;
    project.data = NULL;
    project.len = 0;
    q.project = NULL;
    q.ph = 0;
    q.poff = 0;
    q.head = 0;
    q.n = 0;
    rc = TG_OK;

    for ( ;; ) {
        n = tg_allow_word(p, end, ps, &w, &id);
        p += n;

        /*
         * Anything but an instance: the instances read so far go in
         * first, in their order, as if each had gone in when read.
         */
        if ((ps->what != NULL || w.data == NULL) && rc == TG_OK) {
            rc = tg_allow_flush(a, &q, 0, ps);
        }

        if (ps->what != NULL) {
            ps->token = w;
            ps->pos = (size_t) (p - ps->text);
            return TG_ERR_SYNTAX;
        }

        if (w.data == NULL) {
            /* the end of the text, or of a statement */

            if (p == end) {
                if (words > 0) {
                    ps->what = "unexpected end of file, expecting \";\"";
                    ps->pos = ps->len;
                    return TG_ERR_SYNTAX;
                }

                ps->pos = ps->len;
                return TG_OK;
            }

            /* ';' */
            p++;

            if (rc != TG_OK) {
                ps->pos = (size_t) (p - ps->text);
                return rc;
            }

            if (words == 0) {
                ps->what = "unexpected \";\"";
                ps->pos = (size_t) (p - ps->text);
                return TG_ERR_SYNTAX;
            }

            ps->pos = (size_t) (p - ps->text);

            if (tg_allow_is_include(&project)) {
                if (words != 2) {
                    ps->what = "invalid number of arguments in \"include\"";
                    ps->include.data = NULL;
                    return TG_ERR_SYNTAX;
                }

                return TG_OK;
            }

            if (words == 1) {
                /* a project line without instances */
                ps->project = project;
                ps->token.data = NULL;
                ps->token.len = 0;
                return TG_ERR_BAD_INSTANCE_ID;
            }

            words = 0;
            continue;
        }

        words++;

        if (rc != TG_OK) {
            /* the statement's error is reported at its ';', as nginx does */
            continue;
        }

        if (words == 1) {
            project = w;
            ps->project = w;

            if (tg_allow_is_include(&w)) {
                continue;
            }

            if (!id || w.len != TG_PROJECT_ID_LEN) {
                ps->token = w;
                rc = TG_ERR_BAD_PROJECT_ID;
                continue;
            }

            /* 0: the project's record is made with its first instance */
            q.project = w.data;
            q.ph = (uint32_t) tg_allow_hash(a, w.data, NULL, 0);
            q.poff = tg_allow_find_project(a, w.data, q.ph);
            q.head = 0;
            q.n = 0;

            continue;
        }

        if (tg_allow_is_include(&project)) {
            ps->include = w;
            continue;
        }

        if (!id
            || w.len < TG_INSTANCE_ID_MIN_LEN
            || w.len > TG_INSTANCE_ID_MAX_LEN)
        {
            rc = tg_allow_flush(a, &q, 0, ps);

            if (rc == TG_OK) {
                rc = TG_ERR_BAD_INSTANCE_ID;
                ps->token = w;
            }

            continue;
        }

        rc = tg_allow_flush(a, &q, TG_ALLOW_QUEUE - 1, ps);
        if (rc != TG_OK) {
            continue;
        }

        /* ps->line is the word's own: the scanner stopped at its end */

        if (w.len == TG_PROJECT_ID_LEN) {
            rc = tg_allow_note(a, q.project, w.data, w.len, ps->where,
                               ps->line);
            if (rc != TG_OK) {
                ps->token = w;
                continue;
            }
        }

        i = (q.head + q.n) % TG_ALLOW_QUEUE;
        q.word[i] = w;
        q.hash[i] = (uint32_t) tg_allow_hash(a, q.project, w.data, w.len);
        q.n++;

        tg_allow_prefetch(&a->pairs.slots[q.hash[i] & a->pairs.mask]);
    }
}


/*
 * Puts the queue's oldest instances into the table until keep are left.
 * The first that fails is the statement's error, with its token; those
 * after it are dropped, as a statement's words after its error are.
 */
static tg_rc_t
tg_allow_flush(tg_allow_t *a, tg_allow_queue_t *q, size_t keep,
    tg_allow_parse_t *ps)
{
    tg_rc_t    rc;
    tg_str_t  *w;

    while (q->n > keep) {
        w = &q->word[q->head];

        rc = tg_allow_insert(a, q->project, q->ph, &q->poff, w->data, w->len,
                             q->hash[q->head]);

        q->head = (q->head + 1) % TG_ALLOW_QUEUE;
        q->n--;

        if (rc != TG_OK) {
            ps->token = *w;
            q->n = 0;
            return rc;
        }
    }

    return TG_OK;
}


/*
 * The word at p: whitespace and comments skipped, lines counted.  An
 * empty word (data NULL) at ';' or at the end; ps->what is set for a
 * byte no allow-list has a use for.  *id tells whether the word is all
 * letters and digits, as an ID must be.
 */

static size_t
tg_allow_word(const unsigned char *p, const unsigned char *end,
    tg_allow_parse_t *ps, tg_str_t *word, int *id)
{
    unsigned char         q;
    const unsigned char  *start;

    start = p;
    word->data = NULL;
    word->len = 0;
    *id = 0;

    for ( ;; ) {
        while (p < end && (tg_id_char[*p] & TG_ALLOW_SPACE)) {
            ps->line += (*p == '\n');
            p++;
        }

        if (p < end && *p == '#') {
            while (p < end && *p != '\n') {
                p++;
            }

            continue;
        }

        break;
    }

    if (p == end || *p == ';') {
        return (size_t) (p - start);
    }

    if (*p == '"' || *p == '\'') {
        q = *p++;
        word->data = p;

        while (p < end && *p != q && *p != '\\') {
            ps->line += (*p == '\n');
            p++;
        }

        if (p == end || *p == '\\') {
            ps->what = (p == end) ? "unexpected end of file in a quoted word"
                                  : "unexpected \"\\\" in a quoted word";
            return (size_t) (p - start);
        }

        word->len = (size_t) (p - word->data);
        *id = tg_id_chars_ok(word->data, word->len);
        p++;

        return (size_t) (p - start);
    }

    if (*p == '{' || *p == '}') {
        ps->what = (*p == '{') ? "unexpected \"{\"" : "unexpected \"}\"";
        word->data = p;
        word->len = 1;
        return (size_t) (p - start);
    }

    /*
     * Letters and digits, the common case, eight bytes a step while they
     * last (the classes of eight ID bytes and'ed are TG_ALLOW_ID, and any
     * other byte's class clears that bit), then anything up to a stop.
     */

    word->data = p;

    while (end - p >= 8
           && (tg_id_char[p[0]] & tg_id_char[p[1]] & tg_id_char[p[2]]
               & tg_id_char[p[3]] & tg_id_char[p[4]] & tg_id_char[p[5]]
               & tg_id_char[p[6]] & tg_id_char[p[7]]) == TG_ALLOW_ID)
    {
        p += 8;
    }

    while (p < end && tg_id_char[*p] == TG_ALLOW_ID) {
        p++;
    }

    *id = 1;

    if (p < end && !(tg_id_char[*p] & TG_ALLOW_STOP)) {
        *id = 0;

        while (p < end && !(tg_id_char[*p] & TG_ALLOW_STOP)) {
            p++;
        }
    }

    word->len = (size_t) (p - word->data);

    return (size_t) (p - start);
}


static int
tg_allow_is_include(const tg_str_t *w)
{
    return w->len == sizeof("include") - 1
           && memcmp(w->data, "include", w->len) == 0;
}


/* projects in byte order, each told its rank */

static void
tg_allow_rank(tg_allow_t *a)
{
    size_t     i, n;
    uint32_t  *offs, rank;

    n = a->projects.used;

    offs = malloc((n ? n : 1) * sizeof(uint32_t));

    if (offs == NULL) {
        /* ranks stay 0: the tie sort orders them, only slower */
        return;
    }

    for (i = 0, n = 0; i <= a->projects.mask; i++) {
        if (a->projects.slots[i].off != 0) {
            offs[n++] = a->projects.slots[i].off;
        }
    }

    tg_allow_sort_arena = a->arena;
    qsort(offs, n, sizeof(uint32_t), tg_allow_project_cmp);
    tg_allow_sort_arena = NULL;

    for (i = 0; i < n; i++) {
        rank = (uint32_t) i;
        memcpy(a->arena + offs[i] + TG_PROJECT_ID_LEN, &rank, 4);
    }

    free(offs);
}


static int
tg_allow_project_cmp(const void *x, const void *y)
{
    uint32_t  a, b;

    memcpy(&a, x, 4);
    memcpy(&b, y, 4);

    return memcmp(tg_allow_sort_arena + a, tg_allow_sort_arena + b,
                  TG_PROJECT_ID_LEN);
}


/*
 * Lines whose keys tie: the project, then the instance IDs bytewise, a
 * shorter one first when it is a prefix (`LC_ALL=C sort`).
 */
static int
tg_allow_line_cmp(const void *x, const void *y)
{
    int                   r;
    uint32_t              pa, pb;
    const unsigned char  *ra, *rb;

    ra = tg_allow_sort_arena + ((const tg_allow_line_t *) x)->off;
    rb = tg_allow_sort_arena + ((const tg_allow_line_t *) y)->off;

    memcpy(&pa, ra, 4);
    memcpy(&pb, rb, 4);

    if (pa != pb) {
        r = memcmp(tg_allow_sort_arena + pa, tg_allow_sort_arena + pb,
                   TG_PROJECT_ID_LEN);
        if (r != 0) {
            return r;
        }
    }

    r = memcmp(ra + TG_ALLOW_PAIR_HEAD, rb + TG_ALLOW_PAIR_HEAD,
               ra[4] < rb[4] ? ra[4] : rb[4]);
    if (r != 0) {
        return r;
    }

    return (ra[4] > rb[4]) - (ra[4] < rb[4]);
}


/*
 * LSD radix sort on the 64-bit keys, 16 bits a pass, stable.  A pass
 * whose 16 bits are the same in every key is skipped: the ranks' high
 * bits are 0 unless there are more than 65536 projects.
 */

static tg_rc_t
tg_allow_radix(tg_allow_line_t *lines, tg_allow_line_t *tmp, size_t n)
{
    size_t            i, sum, c, pass, *count;
    unsigned          shift;
    tg_allow_line_t  *src, *dst, *t;

    if (n < 2) {
        return TG_OK;
    }

    count = malloc(65536 * sizeof(size_t));
    if (count == NULL) {
        return TG_ERR_NOMEM;
    }

    src = lines;
    dst = tmp;

    for (pass = 0; pass < 4; pass++) {
        shift = (unsigned) pass * 16;

        memset(count, 0, 65536 * sizeof(size_t));

        for (i = 0; i < n; i++) {
            count[(src[i].key >> shift) & 0xffff]++;
        }

        if (count[(src[0].key >> shift) & 0xffff] == n) {
            continue;
        }

        for (i = 0, sum = 0; i < 65536; i++) {
            c = count[i];
            count[i] = sum;
            sum += c;
        }

        for (i = 0; i < n; i++) {
            dst[count[(src[i].key >> shift) & 0xffff]++] = src[i];
        }

        t = src;
        src = dst;
        dst = t;
    }

    if (src != lines) {
        memcpy(lines, src, n * sizeof(tg_allow_line_t));
    }

    free(count);

    return TG_OK;
}


/*
 * Eight bytes at a time, each word folded in with a multiply and a
 * rotation, from a state that starts as the key and the instance's
 * length (0 for a project alone): the project's four words, then the
 * instance's, the last of them its last eight bytes, overlapping the
 * one before when the length is no multiple of 8 (every ID has 32 bytes
 * or more).  The finalizer spreads the bits, since the table index is
 * taken from the low ones.
 */
static uint64_t
tg_allow_hash(const tg_allow_t *a, const unsigned char *project,
    const unsigned char *instance, size_t ilen)
{
    size_t                i;
    uint64_t              h, w;
    const unsigned char  *last;

    h = a->key[0] ^ ilen;

    for (i = 0; i < TG_PROJECT_ID_LEN; i += 8) {
        memcpy(&w, project + i, 8);
        h = (h ^ w) * TG_ALLOW_K1;
        h = (h << 27) | (h >> 37);
    }

    if (instance != NULL) {
        last = instance + ilen - 8;

        while (instance < last) {
            memcpy(&w, instance, 8);
            h = (h ^ w) * TG_ALLOW_K1;
            h = (h << 27) | (h >> 37);
            instance += 8;
        }

        memcpy(&w, last, 8);
        h = (h ^ w) * TG_ALLOW_K1;
    }

    h ^= a->key[1];
    h ^= h >> 29;
    h *= TG_ALLOW_K2;
    h ^= h >> 32;

    return h;
}


/* equal bytes, len 8 or more: eight at a time, the last ones overlapping */

static int
tg_allow_eq(const unsigned char *x, const unsigned char *y, size_t len)
{
    size_t    i;
    uint64_t  u, v, d;

    d = 0;

    for (i = 0; i + 8 < len; i += 8) {
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        d |= u ^ v;
    }

    memcpy(&u, x + len - 8, 8);
    memcpy(&v, y + len - 8, 8);
    d |= u ^ v;

    return d == 0;
}


static tg_rc_t
tg_allow_table_init(tg_allow_table_t *t, size_t hint)
{
    size_t  n;

    n = TG_ALLOW_MIN_SLOTS;

    while (n < hint * 2) {
        n *= 2;
    }

    t->slots = tg_allow_slots(n);
    if (t->slots == NULL) {
        return TG_ERR_NOMEM;
    }

    t->mask = n - 1;
    t->used = 0;

    return TG_OK;
}


/* room for more entries at most half full: a bigger table, rehashed */

static tg_rc_t
tg_allow_table_fit(tg_allow_t *a, tg_allow_table_t *t, size_t more)
{
    size_t            i, n;
    tg_allow_table_t  nt;

    if (more > SIZE_MAX / 4 - t->used) {
        return TG_ERR_NOMEM;
    }

    n = t->mask + 1;

    while ((t->used + more) * 2 > n) {
        n *= 2;
    }

    if (n == t->mask + 1) {
        return TG_OK;
    }

    /* 32-bit hashes pick the slot */
    if (n > ((size_t) 1 << 32) || n > SIZE_MAX / sizeof(tg_allow_slot_t)) {
        return TG_ERR_NOMEM;
    }

    nt.slots = tg_allow_slots(n);
    if (nt.slots == NULL) {
        return TG_ERR_NOMEM;
    }

    nt.mask = n - 1;
    nt.used = 0;

    for (i = 0; i <= t->mask; i++) {
        if (t->slots[i].off != 0) {
            tg_allow_table_put(&nt, tg_allow_rehash(a, t, t->slots[i].off),
                               t->slots[i].off);
        }
    }

    free(t->slots);
    *t = nt;

    return TG_OK;
}


/* the hash of a record, for a table growing */

static uint32_t
tg_allow_rehash(const tg_allow_t *a, const tg_allow_table_t *t, uint32_t off)
{
    uint32_t              poff;
    const unsigned char  *rec;

    rec = a->arena + off;

    if (t == &a->projects) {
        return (uint32_t) tg_allow_hash(a, rec, NULL, 0);
    }

    memcpy(&poff, rec, 4);

    return (uint32_t) tg_allow_hash(a, a->arena + poff,
                                    rec + TG_ALLOW_PAIR_HEAD, rec[4]);
}


/* the caller has made sure there is a free slot */
static void
tg_allow_table_put(tg_allow_table_t *t, uint32_t hash, uint32_t off)
{
    size_t  i;

    i = (size_t) hash & t->mask;

    while (t->slots[i].off != 0) {
        i = (i + 1) & t->mask;
    }

    t->slots[i].hash = hash;
    t->slots[i].off = off;
    t->used++;
}


static uint32_t
tg_allow_find_project(const tg_allow_t *a, const unsigned char *project,
    uint32_t hash)
{
    size_t                  i;
    const tg_allow_slot_t  *s;

    i = (size_t) hash & a->projects.mask;

    for ( ;; ) {
        s = &a->projects.slots[i];

        if (s->off == 0) {
            return 0;
        }

        if (s->hash == hash
            && tg_allow_eq(a->arena + s->off, project, TG_PROJECT_ID_LEN))
        {
            return s->off;
        }

        i = (i + 1) & a->projects.mask;
    }
}


static uint32_t
tg_allow_find_pair(const tg_allow_t *a, const unsigned char *project,
    const unsigned char *instance, size_t ilen, uint32_t hash)
{
    size_t                  i;
    uint32_t                poff;
    const unsigned char    *rec;
    const tg_allow_slot_t  *s;

    i = (size_t) hash & a->pairs.mask;

    for ( ;; ) {
        s = &a->pairs.slots[i];

        if (s->off == 0) {
            return 0;
        }

        if (s->hash == hash) {
            rec = a->arena + s->off;

            memcpy(&poff, rec, 4);

            if (rec[4] == ilen
                && tg_allow_eq(rec + TG_ALLOW_PAIR_HEAD, instance, ilen)
                && tg_allow_eq(a->arena + poff, project, TG_PROJECT_ID_LEN))
            {
                return s->off;
            }
        }

        i = (i + 1) & a->pairs.mask;
    }
}


static tg_rc_t
tg_allow_arena_reserve(tg_allow_t *a, size_t need)
{
    size_t          size;
    unsigned char  *arena;

    /* offsets are 32-bit: 4 GB of IDs is far beyond any allow-list */
    if (need > UINT32_MAX - a->arena_len) {
        return TG_ERR_NOMEM;
    }

    if (a->arena_len + need <= a->arena_size) {
        return TG_OK;
    }

    size = a->arena_size;

    while (size < a->arena_len + need) {
        size *= 2;
    }

    if (size > UINT32_MAX) {
        size = UINT32_MAX;
    }

    arena = realloc(a->arena, size);
    if (arena == NULL) {
        return TG_ERR_NOMEM;
    }

    tg_allow_huge_hint(arena + a->arena_len, size - a->arena_len);

    a->arena = arena;
    a->arena_size = size;

    return TG_OK;
}


/* empty slots, n of them: the caller has checked that n * 8 fits */

static tg_allow_slot_t *
tg_allow_slots(size_t n)
{
    tg_allow_slot_t  *slots;

    slots = malloc(n * sizeof(tg_allow_slot_t));
    if (slots == NULL) {
        return NULL;
    }

    /* before the first touch: the hint applies to the pages faulted in */

    tg_allow_huge_hint(slots, n * sizeof(tg_allow_slot_t));
    memset(slots, 0, n * sizeof(tg_allow_slot_t));

    return slots;
}


void
tg_allow_huge_hint(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    uintptr_t  start, end;

    start = ((uintptr_t) p + TG_ALLOW_HUGE - 1) & ~(TG_ALLOW_HUGE - 1);
    end = ((uintptr_t) p + len) & ~(TG_ALLOW_HUGE - 1);

    if (end > start) {
        (void) madvise((void *) start, end - start, MADV_HUGEPAGE);
    }
#else
    (void) p;
    (void) len;
#endif
}
