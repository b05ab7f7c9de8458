/*
 * Unit tests for worker/l7_h2_req.c: an HTTP/2 request's fields, given as
 * nghttp2 hands them over, and the HTTP/1.1 head they become (or the
 * status they are refused with). Each row is a list of "name\tvalue"
 * fields and the head expected, or the status.
 */
#include <stdlib.h>
#include <string.h>

#include "worker/l7.h"
#include "tap.h"

struct row {
    const char *name;
    const char *fields[8]; /* "name\tvalue", NULL-terminated */
    bool body;             /* a body follows the header block */
    const char *head;      /* NULL: refused */
    unsigned refuse;
};

static const struct row rows[] = {
    {"GET with authority",
     {":method\tGET", ":scheme\thttps", ":authority\ta.test", ":path\t/x?q", "accept\t*/*"},
     false,
     "GET /x?q HTTP/1.1\r\nHost: a.test\r\naccept: */*\r\n\r\n",
     0},
    {"cookies joined, in order",
     {":method\tGET", ":path\t/", ":authority\ta", "cookie\ta=1", "x\ty", "cookie\tb=2"},
     false,
     "GET / HTTP/1.1\r\nHost: a\r\nx: y\r\ncookie: a=1; b=2\r\n\r\n",
     0},
    {"a body without length goes chunked",
     {":method\tPOST", ":path\t/", ":authority\ta"},
     true,
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
     0},
    {"a body with length keeps it",
     {":method\tPOST", ":path\t/", ":authority\ta", "content-length\t3"},
     true,
     "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\n",
     0},
    {"host equal to authority is dropped",
     {":method\tGET", ":path\t/", ":authority\ta.test", "host\tA.test"},
     false,
     "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
     0},
    {"host without authority is kept",
     {":method\tGET", ":path\t/", "host\ta.test"},
     false,
     "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n",
     0},
    {"host differing from authority",
     {":method\tGET", ":path\t/", ":authority\ta", "host\tb"},
     false,
     NULL,
     400},
    {"CR in a value", {":method\tGET", ":path\t/", "x\ta\rb"}, false, NULL, 400},
    {"LF in a value",
     {":method\tGET", ":path\t/", "x\ta\nTransfer-Encoding: chunked"},
     false,
     NULL,
     400},
    {"colon in a name", {":method\tGET", ":path\t/", "x:y\tz"}, false, NULL, 400},
    {"connection-specific field",
     {":method\tGET", ":path\t/", "connection\tclose"},
     false,
     NULL,
     400},
    {"transfer-encoding",
     {":method\tPOST", ":path\t/", "transfer-encoding\tchunked"},
     true,
     NULL,
     400},
    {"repeated pseudo-header", {":method\tGET", ":method\tGET", ":path\t/"}, false, NULL, 400},
    {":protocol", {":method\tCONNECT", ":protocol\twebsocket", ":path\t/"}, false, NULL, 400},
};

static void run_row(const struct row *r)
{
    struct l7_h2_req q;
    uint8_t out[L7_H2_REQ_MAX + 512];

    l7_h2_req_init(&q);
    for (size_t i = 0; i < 8 && r->fields[i] != NULL; i++) {
        const char *f = r->fields[i], *tab = strchr(f, '\t');
        l7_h2_req_field(&q, (const uint8_t *)f, (size_t)(tab - f), (const uint8_t *)tab + 1,
                        strlen(tab + 1));
    }
    if (r->head == NULL) {
        T_OK(q.refuse == r->refuse, "%s: refused %u (got %u)", r->name, r->refuse, q.refuse);
    } else {
        size_t n = q.refuse ? 0 : l7_h2_req_head(&q, r->body, out, sizeof(out));
        bool same = n == strlen(r->head) && memcmp(out, r->head, n) == 0;
        T_OK(same, "%s: the head expected", r->name);
        if (!same)
            printf("# got %zu bytes (refused %u)\n", n, q.refuse);
    }
    l7_h2_req_free(&q);
}

/* 64 KiB of fields: 431, and nothing kept past the cap. */
static void test_limit(void)
{
    struct l7_h2_req q;
    static uint8_t v[1000];

    memset(v, 'a', sizeof(v));
    l7_h2_req_init(&q);
    l7_h2_req_field(&q, (const uint8_t *)":method", 7, (const uint8_t *)"GET", 3);
    for (int i = 0; i < 200; i++)
        l7_h2_req_field(&q, (const uint8_t *)"x-a", 3, v, sizeof(v));
    T_OK(q.refuse == 431, "64 KiB of fields: 431 (got %u)", q.refuse);
    T_OK(q.lines.len <= HTTP1_HEAD_MAX, "kept %zu bytes, at most 64 KiB", q.lines.len);
    l7_h2_req_free(&q);

    /* just under the cap: a head that fits */
    uint8_t out[L7_H2_REQ_MAX + 512];
    l7_h2_req_init(&q);
    l7_h2_req_field(&q, (const uint8_t *)":method", 7, (const uint8_t *)"GET", 3);
    l7_h2_req_field(&q, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1);
    for (int i = 0; i < 60; i++)
        l7_h2_req_field(&q, (const uint8_t *)"x-a", 3, v, sizeof(v));
    size_t n = l7_h2_req_head(&q, false, out, sizeof(out));
    T_OK(q.refuse == 0 && n > 60000, "60 KB of fields make a head of %zu bytes", n);
    T_OK(l7_h2_req_head(&q, false, out, 100) == 0, "a head that does not fit is 0");
    l7_h2_req_free(&q);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        run_row(&rows[i]);
    test_limit();
    return tap_done();
}
