/*
 * Hostname validation and normalisation. The input is untrusted and may
 * hold any bytes; nothing is read past in[len) and nothing past
 * out[max] is written.
 */
#include <stdbool.h>

#include "common/hostname.h"

#define HOSTNAME_LABEL_MAX 63

static bool hostname_label_byte(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/* A label out[start..end) is 1..63 bytes and neither starts nor ends with '-'. */
static bool hostname_label_ok(const char *out, size_t start, size_t end)
{
    size_t n = end - start;

    return n >= 1 && n <= HOSTNAME_LABEL_MAX && out[start] != '-' && out[end - 1] != '-';
}

/* Normalises in[0..len) into out, a name of at most max bytes plus a NUL. */
static int hostname_normalize_max(const char *in, size_t len, char *out, size_t max)
{
    size_t i, label = 0;
    bool digits = true; /* the current label is all digits */
    unsigned char ch;

    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > max)
        return -1;

    for (i = 0; i < len; i++) {
        ch = (unsigned char)in[i];
        if (ch == '.') {
            if (!hostname_label_ok(out, label, i))
                return -1;
            label = i + 1;
            digits = true;
        } else if (hostname_label_byte(ch)) {
            digits = digits && ch >= '0' && ch <= '9';
        } else {
            return -1;
        }
        out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : (char)ch;
    }
    /* an all-digit last label means an IP literal such as 192.0.2.1 */
    if (!hostname_label_ok(out, label, len) || digits)
        return -1;
    out[len] = '\0';
    return (int)len;
}

int hostname_normalize(const char *in, size_t len, char *out)
{
    return hostname_normalize_max(in, len, out, MC_HOSTNAME_MAX);
}

int hostname_normalize_pattern(const char *in, size_t len, char *out)
{
    int n;

    if (len < 2 || in[0] != '*' || in[1] != '.')
        return hostname_normalize(in, len, out);
    /* "*." counts toward the 253-byte limit like any other label */
    n = hostname_normalize_max(in + 2, len - 2, out + 2, MC_HOSTNAME_MAX - 2);
    if (n < 0)
        return -1;
    out[0] = '*';
    out[1] = '.';
    return n + 2;
}
