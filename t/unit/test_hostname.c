#include <string.h>

#include "common/hostname.h"
#include "tap.h"

struct hcase {
    const char *name; /* test name */
    const char *in;
    size_t len;       /* 0: strlen(in) */
    const char *want; /* NULL: rejected */
};

/* n bytes of "a.a.a...a" into buf: one-letter labels; n is odd */
static char *dotted(char *buf, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        buf[i] = (i % 2) ? '.' : 'a';
    buf[n] = '\0';
    return buf;
}

/* a label of n bytes, then ".com" */
static char *label(char *buf, size_t n)
{
    memset(buf, 'x', n);
    strcpy(buf + n, ".com");
    return buf;
}

static void check(int (*fn)(const char *, size_t, char *), const struct hcase *c)
{
    char out[MC_HOSTNAME_MAX + 1];
    size_t len = c->len ? c->len : strlen(c->in);
    int n = fn(c->in, len, out);

    if (c->want == NULL)
        T_OK(n == -1, "%s: rejected", c->name);
    else
        T_OK(n == (int)strlen(c->want) && strcmp(out, c->want) == 0, "%s: accepted", c->name);
}

int main(void)
{
    char name253[260], name254[260], name253dot[260], label63[80], label64[80];
    char wild253[260], wild254[260], cve[400];
    static char huge[65536];
    size_t i;

    dotted(name253, 253);
    strcat(dotted(name254, 253), "a"); /* last label "aa" */
    strcat(dotted(name253dot, 253), ".");
    label(label63, 63);
    label(label64, 64);
    strcpy(wild253, "*.");
    dotted(wild253 + 2, 251);
    strcpy(wild254, "*.");
    strcat(dotted(wild254 + 2, 251), "a");
    dotted(huge, 65535);
    strcpy(cve, "[");
    for (i = 0; i < 60; i++)
        strcat(cve, "long.");
    strcat(cve, "example.com]");

    const struct hcase names[] = {
        {"lower-case", "EXAMPLE.com", 0, "example.com"},
        {"trailing dot", "example.com.", 0, "example.com"},
        {"single label", "localhost", 0, "localhost"},
        {"underscore", "_acme-challenge.Example.com", 0, "_acme-challenge.example.com"},
        {"digits in labels", "123.a1.com", 0, "123.a1.com"},
        {"two trailing dots", "example.com..", 0, NULL},
        {"leading dot", ".example.com", 0, NULL},
        {"empty label", "a..b", 0, NULL},
        {"empty", "", 0, NULL},
        {"lone dot", ".", 0, NULL},
        {"253 bytes", name253, 0, name253},
        {"254 bytes", name254, 0, NULL},
        {"65535 bytes", huge, 0, NULL},
        {"253 bytes and a trailing dot", name253dot, 0, name253},
        {"63-byte label", label63, 0, label63},
        {"64-byte label", label64, 0, NULL},
        {"label starts with -", "-a.com", 0, NULL},
        {"label ends with -", "a-.com", 0, NULL},
        {"embedded NUL", "exa\0mple.com", 12, NULL},
        {"ANSI escape", "\x1b[31m.com", 0, NULL},
        {"control byte", "a\tb.com", 0, NULL},
        {"DEL", "a\x7f.com", 0, NULL},
        {"UTF-8", "b\xc3\xbcro.de", 0, NULL},
        {"IPv4 literal", "192.0.2.1", 0, NULL},
        {"short dotted digits", "1.2.3", 0, NULL},
        {"IPv6 literal", "[::1]", 0, NULL},
        {"space", "a b", 0, NULL},
        {"slash", "a/b", 0, NULL},
        {"backslash", "a\\b", 0, NULL},
        {"percent", "a%2e.com", 0, NULL},
        {"colon", "a.com:443", 0, NULL},
        {"star", "*", 0, NULL},
        {"wildcard is not a name", "*.example.com", 0, NULL},
        {"CVE-2023-25076 string", cve, 0, NULL},
    };
    for (i = 0; i < MC_ARRAY_LEN(names); i++)
        check(hostname_normalize, &names[i]);

    const struct hcase patterns[] = {
        {"pattern: plain name", "Example.COM.", 0, "example.com"},
        {"pattern: wildcard", "*.Example.com", 0, "*.example.com"},
        {"pattern: wildcard over a TLD", "*.com", 0, "*.com"},
        {"pattern: wildcard trailing dot", "*.example.com.", 0, "*.example.com"},
        {"pattern: 253 bytes", wild253, 0, wild253},
        {"pattern: 254 bytes", wild254, 0, NULL},
        {"pattern: star alone", "*", 0, NULL},
        {"pattern: star dot", "*.", 0, NULL},
        {"pattern: inner star", "a.*.com", 0, NULL},
        {"pattern: double star", "**.com", 0, NULL},
        {"pattern: star prefix", "*a.com", 0, NULL},
        {"pattern: two wildcards", "*.*.com", 0, NULL},
        {"pattern: wildcard IP", "*.2.1", 0, NULL},
    };
    for (i = 0; i < MC_ARRAY_LEN(patterns); i++)
        check(hostname_normalize_pattern, &patterns[i]);

    return tap_done();
}
