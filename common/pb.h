/*
 * Helpers for the two programs that link gRPC core (mc-proxy-admin and
 * mcproxyctl): protobuf-c messages <-> gRPC byte buffers, status names,
 * and the PEM files TLS credentials take. The master links protobuf-c
 * only and never includes this header.
 */
#ifndef MC_PB_H
#define MC_PB_H

#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

/* A byte buffer holding a copy of data[0..len). NULL when out of memory. */
grpc_byte_buffer *pb_bb_from_bytes(const void *data, size_t len);

/* A byte buffer holding the packed message. NULL when out of memory. */
grpc_byte_buffer *pb_bb_pack(const ProtobufCMessage *msg);

/*
 * The whole content of bb as one slice (decompressed if the peer
 * compressed it); the caller unrefs it. Sizes are already capped by the
 * channel's maximum message length. Returns -1 when bb is unreadable.
 */
int pb_bb_slice(grpc_byte_buffer *bb, grpc_slice *out);

/* Unpacks bb as a message of type desc; NULL when bb is NULL or malformed.
 * Free with protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *pb_bb_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

/* "OK", "NOT_FOUND", ... as the gRPC documentation spells the code. */
const char *pb_status_name(grpc_status_code code);

/*
 * Reads a PEM file (at most 1 MiB) into a NUL-terminated buffer for
 * gRPC's credentials. NULL with a message naming the file in err on
 * failure.
 */
char *pb_read_pem(const char *path, char *err, size_t err_size);

#endif
