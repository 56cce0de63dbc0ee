/* arena.h - per-call bump allocator.
 *
 * Every RPC call gets one arena; the decoded request, the handler's response
 * and any scratch strings come from it and are released together when the call
 * ends, so handlers never free. dbld_arena_allocator() lets protobuf-c unpack
 * into the arena. Not thread-safe: one arena belongs to one thread at a time.
 */
#ifndef DBLD_ARENA_H
#define DBLD_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct dbld_arena dbld_arena;

/* Caller frees with dbld_arena_destroy(). Aborts on out-of-memory. */
dbld_arena *dbld_arena_create(void);
void dbld_arena_destroy(dbld_arena *a);
/* Free everything allocated so far but keep the first block for reuse. */
void dbld_arena_reset(dbld_arena *a);

/* Zeroed, 16-byte aligned memory valid until the arena is reset/destroyed. */
void *dbld_arena_alloc(dbld_arena *a, size_t n);
char *dbld_arena_strdup(dbld_arena *a, const char *s);
char *dbld_arena_strndup(dbld_arena *a, const char *s, size_t n);
char *dbld_arena_printf(dbld_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Capacity of the blocks after the arena's first: *heap from malloc, *mapped
 * mapped on their own (given back to the system on reset/destroy; see arena.c). */
void dbld_arena_stats(const dbld_arena *a, size_t *heap, size_t *mapped);

/* Allocator whose free() is a no-op; borrowed, valid while the arena lives. */
ProtobufCAllocator *dbld_arena_allocator(dbld_arena *a);

/* Allocate a zeroed protobuf-c message of the given type and init it. */
void *dbld_arena_msg(dbld_arena *a, const ProtobufCMessageDescriptor *desc);

/* Grow a repeated field: *arr has *n elements of elem_size; returns the new
 * (zeroed) last element. Arrays are copied on growth (fine for small lists). */
void *dbld_arena_push(dbld_arena *a, void *arr_ptr, size_t *n, size_t elem_size);

#endif
