/* arena.c - bump allocator in a chain of blocks; big requests get their own block.
 *
 * The arena's own first block is small (FIRST_SIZE, allocated with the arena
 * in one malloc): a server holds one arena per call in flight, most of them
 * waiting with nothing but a decoded request in it, so 1,000 waiting calls
 * cost 1,000 small blocks, not 1,000 x BLOCK_SIZE.
 *
 * Later blocks grow with the arena (each as large as all before it, from
 * BLOCK_SIZE up to MAX_BLOCK), and a block of MAP_MIN bytes or more is mapped
 * on its own (mmap) instead of coming from malloc: an arena that holds
 * megabytes (an Append of thousands of events, the event log writer's batch,
 * the partition index) gives them back to the system when it is reset or
 * destroyed. From malloc's heap they stayed: glibc returns free heap memory
 * only from the top of the heap (and the services' trim threshold is high,
 * see lib/rpc_server.c), so under a load of large requests the event log's
 * heap held as much free memory as live data. Per-call arenas of ordinary
 * calls stay below MAP_MIN and never map. A mapped block's pages that are
 * never written are never resident, so the last block's spare room costs
 * address space, not memory. */
#include "dbld/arena.h"
#include "dbld/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define BLOCK_SIZE (16 * 1024)
#define MAX_BLOCK (1024 * 1024)
#define MAP_MIN (128 * 1024) /* blocks this large (with their header) are mapped */
#define FIRST_SIZE 2048
#define ALIGN 16

typedef struct block {
    struct block *next;
    size_t cap, used;
    size_t mapped; /* bytes mapped for this block; 0: from malloc */
    _Alignas(ALIGN) unsigned char data[];
} block;

struct dbld_arena {
    block *head;
    block *first;  /* the arena's own block (FIRST_SIZE, behind the arena), kept across resets */
    size_t grown;  /* capacity of the blocks after the first (the next block's size) */
    size_t n_heap; /* of which from malloc */
    ProtobufCAllocator pb;
};
#define FIRST_OFFSET ((sizeof(dbld_arena) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

static void *pb_alloc(void *ud, size_t n)
{
    return dbld_arena_alloc(ud, n);
}
static void pb_free(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

static block *block_new(dbld_arena *a, size_t cap)
{
    size_t bytes = sizeof(block) + cap;
    block *b = NULL;
    size_t mapped = 0;
    if (bytes >= MAP_MIN) {
        size_t page = 4096;
        mapped = (bytes + page - 1) & ~(page - 1);
        void *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            mapped = 0; /* malloc's turn (it aborts when it fails too) */
        } else {
            b = m;
            cap = mapped - sizeof(block);
        }
    }
    if (!b) {
        b = dbld_xmalloc(bytes);
        a->n_heap += cap;
    }
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    b->mapped = mapped;
    a->grown += cap;
    return b;
}

static void block_free(block *b)
{
    if (b->mapped)
        munmap(b, b->mapped);
    else
        free(b);
}

dbld_arena *dbld_arena_create(void)
{
    dbld_arena *a = dbld_xmalloc(FIRST_OFFSET + sizeof(block) + FIRST_SIZE);
    a->first = (block *)((unsigned char *)a + FIRST_OFFSET);
    a->first->next = NULL;
    a->first->cap = FIRST_SIZE;
    a->first->used = 0;
    a->first->mapped = 0;
    a->head = a->first;
    a->grown = 0;
    a->n_heap = 0;
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
    return a;
}

void dbld_arena_reset(dbld_arena *a)
{
    for (block *b = a->head; b;) {
        block *n = b->next;
        if (b != a->first) block_free(b);
        b = n;
    }
    a->first->used = 0;
    a->first->next = NULL;
    a->head = a->first;
    a->grown = 0;
    a->n_heap = 0;
}

void dbld_arena_destroy(dbld_arena *a)
{
    if (!a) return;
    for (block *b = a->head; b;) {
        block *n = b->next;
        if (b != a->first) block_free(b);
        b = n;
    }
    free(a);
}

void *dbld_arena_alloc(dbld_arena *a, size_t n)
{
    if (n > SIZE_MAX / 2) {
        fputs("databuild: arena allocation too large\n", stderr);
        abort();
    }
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (n == 0) n = ALIGN;
    block *b = a->head;
    if (b->cap - b->used < n) {
        size_t next = a->grown < BLOCK_SIZE  ? BLOCK_SIZE
                      : a->grown < MAX_BLOCK ? a->grown
                                             : MAX_BLOCK;
        if (n > next / 4) {
            /* Large: own block, linked behind head so head keeps its free space. */
            block *big = block_new(a, n);
            big->used = n;
            big->next = b->next;
            b->next = big;
            if (!big->mapped) memset(big->data, 0, n); /* mapped pages come zeroed */
            return big->data;
        }
        block *nb = block_new(a, next - sizeof(block));
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *dbld_arena_strndup(dbld_arena *a, const char *s, size_t n)
{
    char *p = dbld_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *dbld_arena_strdup(dbld_arena *a, const char *s)
{
    return dbld_arena_strndup(a, s ? s : "", s ? strlen(s) : 0);
}

char *dbld_arena_printf(dbld_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = dbld_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    if (n > 0) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void dbld_arena_stats(const dbld_arena *a, size_t *heap, size_t *mapped)
{
    *heap = a->n_heap;
    *mapped = a->grown - a->n_heap;
}

ProtobufCAllocator *dbld_arena_allocator(dbld_arena *a)
{
    return &a->pb;
}

void *dbld_arena_msg(dbld_arena *a, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = dbld_arena_alloc(a, desc->sizeof_message);
    protobuf_c_message_init(desc, m);
    return m;
}

void *dbld_arena_push(dbld_arena *a, void *arr_ptr, size_t *n, size_t elem_size)
{
    void **arr = arr_ptr;
    if (elem_size && *n + 1 > SIZE_MAX / 2 / elem_size) {
        fputs("databuild: arena array too large\n", stderr);
        abort();
    }
    unsigned char *grown = dbld_arena_alloc(a, (*n + 1) * elem_size);
    if (*n) memcpy(grown, *arr, *n * elem_size);
    *arr = grown;
    (*n)++;
    return grown + (*n - 1) * elem_size;
}
