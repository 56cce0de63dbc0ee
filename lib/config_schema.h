/* config_schema.h - private: the table-driven YAML-to-struct engine behind config.c.
 *
 * A schema is a static array of dbld__cfg_key, ended by an entry whose name is
 * NULL. Each entry names a YAML key, its type, and where the value lives: an
 * offset into the struct the table describes. Nested sections point at their
 * own table, so the same engine fills the root struct, a section, or each
 * element of a list of mappings (DBLD__CFG_LIST, e.g. a future graph.jobs).
 * Defaults live in the table too, and the table drives freeing, so adding a key
 * is one line here and one field in the struct.
 *
 * Every error is "name:line:col: key.path: problem" with 1-based positions of
 * the offending node (the value for type errors, the key for unknown and
 * duplicate keys). Not part of the public API (include/dbld/config.h is).
 */
#ifndef DBLD_CONFIG_SCHEMA_H
#define DBLD_CONFIG_SCHEMA_H

#include "dbld/status.h"
#include <stddef.h>

typedef enum {
    DBLD__CFG_STRING,  /* char * at .offset; .def_str; .check validates the value */
    DBLD__CFG_INT,     /* int at .offset, in [.min, .max]; .def_int */
    DBLD__CFG_BOOL,    /* int (0/1) at .offset; YAML true/false; .def_int */
    DBLD__CFG_STRLIST, /* char ** at .offset, size_t count at .count_offset; a lone scalar is a
                          one-item list; at least .min items; .def_str = one-item default or NULL;
                          .check validates each item */
    DBLD__CFG_SECTION, /* struct at .offset described by .sub; null/empty = all defaults */
    DBLD__CFG_LIST,    /* sequence of mappings: array (void *) at .offset of .elem_size-byte
                          elements, each described by .sub and defaulted from it; size_t count
                          at .count_offset; at least .min items */
} dbld__cfg_type;

/* Validate a string value: return 0, or non-zero with a problem such as
 * `invalid address "x" (expected host:port)` written to why. */
typedef int (*dbld__cfg_check_fn)(const char *value, char *why, size_t why_len);

#define DBLD__CFG_REQUIRED 1u /* flag: the key must appear in its mapping */

typedef struct dbld__cfg_key {
    const char *name; /* YAML key; NULL ends the table */
    dbld__cfg_type type;
    size_t offset;       /* of the field, from the start of the struct this table describes */
    size_t count_offset; /* STRLIST, LIST: the size_t item count */
    long long min, max;  /* INT: allowed range; STRLIST, LIST: min = fewest items */
    long long def_int;   /* INT, BOOL default */
    const char *def_str; /* STRING default (NULL = none), STRLIST one-item default */
    dbld__cfg_check_fn check;
    const struct dbld__cfg_key *sub; /* SECTION, LIST: table of the nested struct */
    size_t elem_size;                /* LIST: sizeof one element */
    unsigned flags;                  /* DBLD__CFG_REQUIRED */
} dbld__cfg_key;

/* Write every default of `schema` into base (which must hold no owned memory:
 * zeroed, or freed with dbld__cfg_free()). Nested sections are defaulted too. */
void dbld__cfg_defaults(const dbld__cfg_key *schema, void *base);

/* The parsed document, as seen by a dbld__cfg_check_all_fn: only good for
 * placing errors with dbld__cfg_error_at(). Borrowed for the call. */
typedef struct dbld__cfg_doc dbld__cfg_doc;

/* A rule across keys (unique labels, ...), run once the whole document has
 * been applied to base. Returns 0, or the dbld__cfg_error_at() result. */
typedef int (*dbld__cfg_check_all_fn)(const void *base, const dbld__cfg_doc *doc, dbld_status *st);

/* An error at key path `path` (e.g. "graph.jobs[3].outputs[0]", as in other
 * errors): "name:line:col: path: problem" with the position of that value, or
 * "name: path: problem" if the path names nothing in the document (a default).
 * Returns DBLD_INVALID_ARGUMENT. */
int dbld__cfg_error_at(const dbld__cfg_doc *doc, dbld_status *st, const char *path, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

/* Parse YAML text and apply it to a defaulted base, then run check_all (may be
 * NULL). An empty stream or a null document changes nothing. On error returns
 * DBLD_INVALID_ARGUMENT (or DBLD_RESOURCE_EXHAUSTED when libyaml runs out of
 * memory) with st->msg set; base may then be partly updated and still needs
 * dbld__cfg_free(). */
int dbld__cfg_parse(const char *text, size_t len, const char *name, const dbld__cfg_key *schema,
                    void *base, dbld__cfg_check_all_fn check_all, dbld_status *st);

/* Free everything the table says base owns and zero those fields. */
void dbld__cfg_free(const dbld__cfg_key *schema, void *base);

#endif
