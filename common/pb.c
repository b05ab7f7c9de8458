/*
 * protobuf-c <-> gRPC byte buffers. Unpacking goes through
 * protobuf_c_message_unpack(), which bounds every length by the buffer
 * it is given, so a peer's bytes never size an allocation beyond the
 * message itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "common/mc.h"
#include "common/pb.h"

#define PEM_MAX (1024 * 1024)

grpc_byte_buffer *pb_bb_from_bytes(const void *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer(data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

    grpc_slice_unref(s);
    return bb;
}

grpc_byte_buffer *pb_bb_pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    /* malloc(0) may return NULL: an empty message still gets a buffer */
    uint8_t *buf = malloc(len > 0 ? len : 1);

    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(msg, buf);
    /* the slice takes ownership of buf and frees it with the last ref */
    grpc_slice s = grpc_slice_new(buf, len, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

int pb_bb_slice(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader rd;

    if (bb == NULL || !grpc_byte_buffer_reader_init(&rd, bb))
        return -1;
    *out = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return 0;
}

ProtobufCMessage *pb_bb_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    grpc_slice s;

    if (pb_bb_slice(bb, &s) < 0)
        return NULL;
    ProtobufCMessage *msg =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return msg;
}

const char *pb_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };

    if ((unsigned)code < MC_ARRAY_LEN(names))
        return names[code];
    return "UNKNOWN";
}

char *pb_read_pem(const char *path, char *err, size_t err_size)
{
    struct stat sb;
    char *buf = NULL;
    size_t len = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &sb) < 0) {
        snprintf(err, err_size, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 || sb.st_size > PEM_MAX) {
        snprintf(err, err_size, "%s: not a regular file of 1 byte to %d KiB", path, PEM_MAX / 1024);
        goto fail;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        snprintf(err, err_size, "%s: out of memory", path);
        goto fail;
    }
    while (len < (size_t)sb.st_size) {
        n = read(fd, buf + len, (size_t)sb.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, err_size, "cannot read %s: %s", path,
                     n < 0 ? strerror(errno) : "file shrank while reading");
            goto fail;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}
