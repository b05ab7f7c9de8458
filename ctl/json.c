/*
 * Any protobuf-c message as JSON, driven by its descriptor: field names
 * as in the .proto, every field present (defaults included, so scripts
 * need no knowledge of proto3 defaults), 64-bit integers as numbers,
 * enums by name, bytes as base64, an unset sub-message as null.
 */
#include <inttypes.h>
#include <string.h>

#include "ctl/ctl.h"

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_base64(FILE *f, const ProtobufCBinaryData *b)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    fputc('"', f);
    for (size_t i = 0; i < b->len; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        size_t n = b->len - i < 3 ? b->len - i : 3;
        if (n > 1)
            v |= (uint32_t)b->data[i + 1] << 8;
        if (n > 2)
            v |= b->data[i + 2];
        for (size_t k = 0; k < 4; k++)
            fputc(k <= n ? tab[(v >> (18 - 6 * k)) & 63] : '=', f);
    }
    fputc('"', f);
}

static void json_message(FILE *f, const ProtobufCMessage *msg);

/* One value of field fd, stored at p. */
static void json_value(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(f, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(f, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(f, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(f, "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        fprintf(f, "%.9g", (double)*(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        fprintf(f, "%.17g", *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(fd->descriptor, *(const int *)p);
        if (ev != NULL)
            json_string(f, ev->name);
        else
            fprintf(f, "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        json_string(f, s != NULL ? s : "");
        break;
    }
    case PROTOBUF_C_TYPE_BYTES:
        json_base64(f, p);
        break;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (sub != NULL)
            json_message(f, sub);
        else
            fputs("null", f);
        break;
    }
    }
}

/* Bytes one element of a repeated field takes in its array. */
static size_t json_elem_size(const ProtobufCFieldDescriptor *fd)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static void json_message(FILE *f, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    bool first = true;

    fputc('{', f);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const void *p = base + fd->offset;

        /* a oneof member is present only when the case says so */
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
            continue;
        fprintf(f, "%s\"%s\":", first ? "" : ",", fd->name);
        first = false;
        if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
            json_value(f, fd, p);
            continue;
        }
        size_t n = *(const size_t *)(base + fd->quantifier_offset);
        const char *arr = *(char *const *)p;
        fputc('[', f);
        for (size_t k = 0; k < n; k++) {
            if (k > 0)
                fputc(',', f);
            json_value(f, fd, arr + k * json_elem_size(fd));
        }
        fputc(']', f);
    }
    fputc('}', f);
}

void json_print(FILE *f, const ProtobufCMessage *msg)
{
    json_message(f, msg);
    fputc('\n', f);
}
