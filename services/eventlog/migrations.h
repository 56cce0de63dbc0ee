/* migrations.h - SQL migrations embedded at build time (see embed_migrations.cmake). */
#ifndef DBLD_MIGRATIONS_H
#define DBLD_MIGRATIONS_H
#include <stddef.h>
typedef struct dbld_migration {
    int version;
    const char *name;
    const char *sql;
} dbld_migration;
extern const dbld_migration dbld_migrations[];
extern const size_t dbld_n_migrations;
#endif
