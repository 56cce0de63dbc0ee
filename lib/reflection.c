/* reflection.c - gRPC server reflection (grpc.reflection.v1 and v1alpha
 * ServerReflection/ServerReflectionInfo) on every dbld_server, so that
 * grpcurl and other generic clients work without the .proto files:
 *
 *   grpcurl -plaintext 127.0.0.1:7100 list
 *   grpcurl -plaintext 127.0.0.1:7100 describe databuild.v1.DataBuildService
 *   grpcurl -plaintext -d '{"ref":{"str":"x"}}' 127.0.0.1:7100 \
 *       databuild.v1.DataBuildService/GetPartitionsSummary
 *
 * What is described is the FileDescriptorSet the build embeds
 * (dbld__descriptor_set: proto/databuild.proto, databuild_ext.proto, health
 * and reflection), indexed once: file names, and the fully-qualified names
 * of messages (nested too), enums, services and methods, each to its file.
 * A file answer carries the file and every file it imports, transitively,
 * as the stored serialized FileDescriptorProtos. list_services names the
 * services registered on this server plus health and reflection. Both
 * versions are served by one handler: their messages are identical on the
 * wire, so v1alpha's path is registered with v1's descriptors.
 */
#include "rpc_internal.h"

#include "dbld/util.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "internal/descriptor_index.pb-c.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const unsigned char dbld__descriptor_set[];
extern const size_t dbld__descriptor_set_len;

#define REQ(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x
#define GRPC_NOT_FOUND 5
#define GRPC_INVALID_ARGUMENT 3
#define GRPC_UNIMPLEMENTED 12

typedef struct sym {
    char *name; /* fully qualified, no leading dot */
    size_t file;
    int is_message;
} sym;

static struct {
    Dbld__Internal__FileSetIndex *set;
    Dbld__Internal__FileIndex **files; /* set->n_file of them */
    sym *syms;
    size_t n_syms, cap_syms;
} g_index;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void add_sym(char *name, size_t file, int is_message)
{
    if (g_index.n_syms == g_index.cap_syms) {
        g_index.cap_syms = g_index.cap_syms ? 2 * g_index.cap_syms : 256;
        g_index.syms = dbld_xrealloc(g_index.syms, g_index.cap_syms * sizeof *g_index.syms);
    }
    g_index.syms[g_index.n_syms++] = (sym){name, file, is_message};
}

static char *qualify(const char *scope, const char *name)
{
    size_t n = strlen(scope) + strlen(name) + 2;
    char *s = dbld_xmalloc(n);
    if (*scope)
        snprintf(s, n, "%s.%s", scope, name);
    else
        snprintf(s, n, "%s", name);
    return s;
}

static void index_enums(Dbld__Internal__EnumIndex **e, size_t n, const char *scope, size_t file)
{
    for (size_t i = 0; i < n; i++)
        add_sym(qualify(scope, e[i]->name), file, 0);
}

static void index_messages(Dbld__Internal__MessageIndex **m, size_t n, const char *scope,
                           size_t file)
{
    for (size_t i = 0; i < n; i++) {
        char *name = qualify(scope, m[i]->name);
        add_sym(name, file, 1);
        index_messages(m[i]->nested_type, m[i]->n_nested_type, name, file);
        index_enums(m[i]->enum_type, m[i]->n_enum_type, name, file);
    }
}

static void build_index(void)
{
    g_index.set = dbld__internal__file_set_index__unpack(NULL, dbld__descriptor_set_len,
                                                         dbld__descriptor_set);
    if (!g_index.set) return; /* reflection then answers UNIMPLEMENTED-ish errors */
    size_t n = g_index.set->n_file;
    g_index.files = dbld_xcalloc(n + 1, sizeof *g_index.files);
    for (size_t f = 0; f < n; f++) {
        ProtobufCBinaryData b = g_index.set->file[f];
        Dbld__Internal__FileIndex *fi = dbld__internal__file_index__unpack(NULL, b.len, b.data);
        g_index.files[f] = fi;
        if (!fi) continue;
        index_messages(fi->message_type, fi->n_message_type, fi->package, f);
        index_enums(fi->enum_type, fi->n_enum_type, fi->package, f);
        for (size_t s = 0; s < fi->n_service; s++) {
            char *svc = qualify(fi->package, fi->service[s]->name);
            add_sym(svc, f, 0);
            for (size_t m = 0; m < fi->service[s]->n_method; m++)
                add_sym(qualify(svc, fi->service[s]->method[m]->name), f, 0);
        }
    }
}

static long find_file(const char *name)
{
    for (size_t f = 0; g_index.set && f < g_index.set->n_file; f++)
        if (g_index.files[f] && strcmp(g_index.files[f]->name, name) == 0) return (long)f;
    return -1;
}

static const sym *find_sym(const char *name)
{
    if (*name == '.') name++;
    for (size_t i = 0; i < g_index.n_syms; i++)
        if (strcmp(g_index.syms[i].name, name) == 0) return &g_index.syms[i];
    return NULL;
}

/* f and everything it imports, each once, f first. */
static void collect(size_t f, unsigned char *seen, size_t *order, size_t *n)
{
    if (seen[f]) return;
    seen[f] = 1;
    order[(*n)++] = f;
    const Dbld__Internal__FileIndex *fi = g_index.files[f];
    for (size_t d = 0; fi && d < fi->n_dependency; d++) {
        long dep = find_file(fi->dependency[d]);
        if (dep >= 0) collect((size_t)dep, seen, order, n);
    }
}

static void file_response(dbld_arena *a, Grpc__Reflection__V1__ServerReflectionResponse *r,
                          size_t f)
{
    size_t total = g_index.set->n_file;
    unsigned char *seen = dbld_arena_alloc(a, total + 1);
    memset(seen, 0, total + 1);
    size_t *order = dbld_arena_alloc(a, (total + 1) * sizeof *order);
    size_t n = 0;
    collect(f, seen, order, &n);
    Grpc__Reflection__V1__FileDescriptorResponse *fr =
        dbld_arena_msg(a, &grpc__reflection__v1__file_descriptor_response__descriptor);
    fr->file_descriptor_proto = dbld_arena_alloc(a, n * sizeof *fr->file_descriptor_proto);
    for (size_t i = 0; i < n; i++)
        fr->file_descriptor_proto[i] = g_index.set->file[order[i]];
    fr->n_file_descriptor_proto = n;
    r->message_response_case = RESP(FILE_DESCRIPTOR_RESPONSE);
    r->file_descriptor_response = fr;
}

static void error_response(dbld_arena *a, Grpc__Reflection__V1__ServerReflectionResponse *r,
                           int code, const char *msg)
{
    Grpc__Reflection__V1__ErrorResponse *e =
        dbld_arena_msg(a, &grpc__reflection__v1__error_response__descriptor);
    e->error_code = code;
    e->error_message = dbld_arena_strdup(a, msg);
    r->message_response_case = RESP(ERROR_RESPONSE);
    r->error_response = e;
}

static void answer(dbld_call *call, dbld_arena *a,
                   const Grpc__Reflection__V1__ServerReflectionRequest *q,
                   Grpc__Reflection__V1__ServerReflectionResponse *r)
{
    r->valid_host = q->host;
    r->original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)q;
    if (!g_index.set) {
        error_response(a, r, GRPC_UNIMPLEMENTED, "no descriptors are embedded in this server");
        return;
    }
    switch (q->message_request_case) {
    case REQ(LIST_SERVICES): {
        const char *names[256];
        size_t n = dbld__server_service_names(dbld_call_user(call), names, 256);
        Grpc__Reflection__V1__ListServiceResponse *ls =
            dbld_arena_msg(a, &grpc__reflection__v1__list_service_response__descriptor);
        ls->service = dbld_arena_alloc(a, (n + 1) * sizeof *ls->service);
        for (size_t i = 0; i < n; i++) {
            Grpc__Reflection__V1__ServiceResponse *s =
                dbld_arena_msg(a, &grpc__reflection__v1__service_response__descriptor);
            s->name = (char *)names[i];
            ls->service[ls->n_service++] = s;
        }
        r->message_response_case = RESP(LIST_SERVICES_RESPONSE);
        r->list_services_response = ls;
        return;
    }
    case REQ(FILE_BY_FILENAME): {
        long f = find_file(q->file_by_filename);
        if (f < 0)
            error_response(a, r, GRPC_NOT_FOUND,
                           dbld_arena_printf(a, "no file named \"%.200s\"", q->file_by_filename));
        else
            file_response(a, r, (size_t)f);
        return;
    }
    case REQ(FILE_CONTAINING_SYMBOL): {
        const sym *s = find_sym(q->file_containing_symbol);
        if (!s)
            error_response(
                a, r, GRPC_NOT_FOUND,
                dbld_arena_printf(a, "no symbol named \"%.200s\"", q->file_containing_symbol));
        else
            file_response(a, r, s->file);
        return;
    }
    case REQ(FILE_CONTAINING_EXTENSION):
        error_response(
            a, r, GRPC_NOT_FOUND,
            dbld_arena_printf(
                a,
                "no extension %d of \"%.200s\" (these protos declare "
                "no extensions)",
                q->file_containing_extension ? q->file_containing_extension->extension_number : 0,
                q->file_containing_extension ? q->file_containing_extension->containing_type : ""));
        return;
    case REQ(ALL_EXTENSION_NUMBERS_OF_TYPE): {
        const sym *s = find_sym(q->all_extension_numbers_of_type);
        if (!s || !s->is_message) {
            error_response(a, r, GRPC_NOT_FOUND,
                           dbld_arena_printf(a, "no message type named \"%.200s\"",
                                             q->all_extension_numbers_of_type));
            return;
        }
        Grpc__Reflection__V1__ExtensionNumberResponse *en =
            dbld_arena_msg(a, &grpc__reflection__v1__extension_number_response__descriptor);
        en->base_type_name = s->name;
        r->message_response_case = RESP(ALL_EXTENSION_NUMBERS_RESPONSE);
        r->all_extension_numbers_response = en;
        return;
    }
    default:
        error_response(a, r, GRPC_INVALID_ARGUMENT,
                       "reflection request has no message_request set");
        return;
    }
}

/* Bidirectional: one response per request until the client closes its side. */
static int reflection_info(dbld_call *call, const ProtobufCMessage *first, dbld_status *st)
{
    pthread_once(&g_once, build_index);
    const ProtobufCMessage *req = first;
    dbld_arena *a = dbld_arena_create(); /* per answer, so a long session does not grow */
    int rc = 0;
    while (req) {
        dbld_arena_reset(a);
        Grpc__Reflection__V1__ServerReflectionResponse *r =
            dbld_arena_msg(a, &grpc__reflection__v1__server_reflection_response__descriptor);
        answer(call, a, (const Grpc__Reflection__V1__ServerReflectionRequest *)req, r);
        rc = dbld_call_send(call, &r->base, st);
        if (rc) break;
        ProtobufCMessage *next = NULL;
        rc = dbld_call_recv(call, &next, st);
        if (rc) break;
        req = next;
    }
    dbld_arena_destroy(a);
    return rc;
}

static const dbld_method reflection_methods[] = {
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
     &grpc__reflection__v1__server_reflection_request__descriptor,
     &grpc__reflection__v1__server_reflection_response__descriptor, NULL, reflection_info,
     DBLD_METHOD_BIDI},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     &grpc__reflection__v1__server_reflection_request__descriptor,
     &grpc__reflection__v1__server_reflection_response__descriptor, NULL, reflection_info,
     DBLD_METHOD_BIDI},
};

const dbld_service dbld__reflection_service = {
    "grpc.reflection.v1.ServerReflection", reflection_methods,
    sizeof reflection_methods / sizeof reflection_methods[0]};
