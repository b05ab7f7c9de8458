/*
 * What an L7 request or response head becomes when it is passed on, and
 * the checks a request meets first (l7.h): the route's name in Host, its
 * policies. The fields a head keeps are http1_must_drop()'s call.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/hostname.h"
#include "worker/gen.h"
#include "worker/l7.h"
#include "worker/route_l7.h"

const char *l7_head_reason(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 421:
        return "Misdirected Request";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Error";
}

/* Whether the request's Host (or absolute-form authority) is a name of the SNI-chosen route. */
bool l7_head_host_ok(struct conn *c, const uint8_t *buf, struct http1_span hs)
{
    char name[MC_HOSTNAME_MAX + 1];
    const char *pattern = c->route->hostname;
    const char *h = (const char *)buf + hs.off;
    size_t len = hs.len;

    if (len == 0 || h[0] == '[')
        return false; /* an IP literal names no route */
    const char *colon = memchr(h, ':', len);
    if (colon != NULL)
        len = (size_t)(colon - h);
    int n = hostname_normalize(h, len, name);
    if (n < 0)
        return false;
    if (pattern[0] == '*') {
        const char *dot = strchr(name, '.');
        if (dot == NULL || dot == name || strcmp(dot + 1, pattern + 2) != 0)
            return false;
    } else if (strcmp(name, pattern) != 0) {
        return false;
    }
    /* a name the table routes elsewhere (an exact route inside this wildcard) is not ours */
    const struct route_table *t = c->w->cur->listeners[c->l->id].routes;
    const struct route *r = t ? route_table_lookup(t, name, (size_t)n) : NULL;
    return r == NULL || strcmp(r->hostname, pattern) == 0;
}

static bool l7_head_field_is(const uint8_t *buf, const struct http1_field *f, const char *name)
{
    return f->name.len == strlen(name) &&
           strncasecmp((const char *)buf + f->name.off, name, f->name.len) == 0;
}

/* The route's policies, in order: true when one refuses the request. */
bool l7_head_refused(const struct conn *c, const struct http1_head *h, const uint8_t *buf)
{
    const struct route_l7 *rl = c->route->l7;

    for (unsigned i = 0; i < rl->n_policies; i++) {
        const struct route_policy *p = &rl->policies[i];
        bool found = false;
        for (size_t j = 0; j < h->nfields && !found; j++) {
            const struct http1_field *f = &h->fields[j];
            if (p->type == POLICY_REQUIRE_HEADER)
                found = l7_head_field_is(buf, f, p->value);
            else if (l7_head_field_is(buf, f, "User-Agent"))
                found = memmem(buf + f->value.off, f->value.len, p->value, p->len) != NULL;
        }
        if (p->type == POLICY_REQUIRE_HEADER ? !found : found)
            return true;
    }
    return false;
}

unsigned l7_head_check(struct conn *c, const struct http1_head *h, const uint8_t *buf)
{
    /* HTTP/1.0 without Host: the SNI named the route */
    if (!(h->host.len == 0 ? c->sni != NULL : l7_head_host_ok(c, buf, h->host)))
        return 421;
    if (c->route->l7->n_policies > 0 && l7_head_refused(c, h, buf))
        return 403;
    return 0;
}

/* The fields of h over buf that are forwarded, as "name: value" lines into
 * out; with skip_host, not Host (written from the target's authority). */
static bool l7_head_put_fields(struct l7_buf *out, const struct http1_head *h, const uint8_t *buf,
                               bool skip_host)
{
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http1_field *f = &h->fields[i];
        if (http1_must_drop(h, buf, i) || (skip_host && l7_head_field_is(buf, f, "Host")))
            continue;
        if (!l7_buf_put(out, buf + f->name.off, f->name.len) || !l7_buf_put(out, ": ", 2) ||
            !l7_buf_put(out, buf + f->value.off, f->value.len) || !l7_buf_put(out, "\r\n", 2))
            return false;
    }
    return true;
}

static bool l7_head_put_framing(struct l7_buf *out, const struct http1_head *h)
{
    if (h->body == HTTP1_BODY_CHUNKED)
        return l7_buf_printf(out, "Transfer-Encoding: chunked\r\n");
    if (h->has_content_length)
        return l7_buf_printf(out, "Content-Length: %llu\r\n",
                             (unsigned long long)h->content_length);
    return true;
}

/* The request head as the backend gets it, into out. */
bool l7_head_request(struct conn *c, const struct http1_head *h, const uint8_t *buf,
                     struct l7_buf *out)
{
    char ip[ADDR_STRLEN];

    addr_format_ip(&c->client, ip, sizeof(ip));
    if (!l7_buf_put(out, buf + h->method.off, h->method.len) || !l7_buf_put(out, " ", 1))
        return false;
    if (h->target_form == HTTP1_TARGET_ASTERISK) {
        if (!l7_buf_put(out, "*", 1))
            return false;
    } else if (h->path.len == 0 || buf[h->path.off] != '/') {
        /* absolute-form without a path, or only "?query": origin-form needs the '/' */
        if (!l7_buf_put(out, "/", 1) || !l7_buf_put(out, buf + h->path.off, h->path.len))
            return false;
    } else if (!l7_buf_put(out, buf + h->path.off, h->path.len)) {
        return false;
    }
    if (!l7_buf_printf(out, " HTTP/1.1\r\n"))
        return false;
    /* an absolute-form target's authority is the Host the backend must see */
    if (h->target_form == HTTP1_TARGET_ABSOLUTE || h->host.len == 0) {
        const char *host = h->host.len ? NULL : c->sni;
        if (!l7_buf_put(out, "Host: ", 6) ||
            !(host ? l7_buf_put(out, host, strlen(host))
                   : l7_buf_put(out, buf + h->host.off, h->host.len)) ||
            !l7_buf_put(out, "\r\n", 2))
            return false;
    }
    return l7_head_put_fields(out, h, buf, h->target_form == HTTP1_TARGET_ABSOLUTE) &&
           l7_head_put_framing(out, h) &&
           l7_buf_printf(out,
                         "X-Forwarded-For: %s\r\nX-Real-IP: %s\r\nX-Forwarded-Proto: https\r\n", ip,
                         ip) &&
           l7_buf_printf(out, "Connection: %s\r\n\r\n",
                         h->upgrade_websocket ? "upgrade" : "keep-alive");
}

/* The response's head, rewritten for the client, into cout. */
bool l7_head_response(struct conn *c)
{
    struct l7 *l = c->l7;
    const struct http1_head *h = &l->resp;
    const uint8_t *buf = l->be.in.p;

    if (!l7_buf_printf(&l->cout, "HTTP/1.1 %u ", h->code) ||
        !l7_buf_put(&l->cout, buf + h->reason.off, h->reason.len) ||
        !l7_buf_put(&l->cout, "\r\n", 2) || !l7_head_put_fields(&l->cout, h, buf, false))
        return false;
    if (h->code == 101)
        return l7_buf_printf(&l->cout, "Connection: upgrade\r\n\r\n");
    if (h->code < 200)
        return l7_buf_put(&l->cout, "\r\n", 2);
    return l7_head_put_framing(&l->cout, h) &&
           l7_buf_printf(&l->cout, "%s\r\n",
                         l->keep ? (l->req.version == 10 ? "Connection: keep-alive\r\n" : "")
                                 : "Connection: close\r\n");
}
