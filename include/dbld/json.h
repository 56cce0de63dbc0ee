/* json.h - proto3 JSON mapping for protobuf-c messages, via jansson.
 *
 * Driven by the protobuf-c descriptors, so it covers every message in the
 * project: lowerCamelCase names on output, both json_name and the original
 * field name accepted on input, enums as names (numbers accepted), 64-bit
 * integers as strings (numbers accepted), bytes as base64, maps as objects,
 * oneofs, repeated fields, nested messages. Unknown fields on input are an
 * INVALID_ARGUMENT naming the field path.
 */
#ifndef DBLD_JSON_H
#define DBLD_JSON_H

#include "dbld/status.h"
#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#define DBLD_JSON_PRETTY 0x1         /* indent 2 */
#define DBLD_JSON_ORIGINAL_NAMES 0x2 /* emit proto field names instead of lowerCamelCase */
#define DBLD_JSON_EMIT_DEFAULTS 0x4  /* emit fields holding default values */

/* New reference to a JSON object for msg; caller json_decref()s. */
json_t *dbld_json_from_message(const ProtobufCMessage *msg, int flags);
/* malloc'd NUL-terminated text; caller free()s. */
char *dbld_json_encode(const ProtobufCMessage *msg, int flags);

/* Build a message of type desc from a JSON value. Memory comes from alloc
 * (NULL = protobuf-c's default allocator; free with protobuf_c_message_free_unpacked). */
int dbld_json_to_message(const json_t *json, const ProtobufCMessageDescriptor *desc,
                         ProtobufCAllocator *alloc, ProtobufCMessage **out, dbld_status *st);
int dbld_json_decode(const char *text, size_t len, const ProtobufCMessageDescriptor *desc,
                     ProtobufCAllocator *alloc, ProtobufCMessage **out, dbld_status *st);

#endif
