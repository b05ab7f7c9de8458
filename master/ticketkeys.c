/*
 * The L7 session ticket keys (msg.h, MSG_TICKET_KEYS): drawn at start,
 * rotated every MSG_TICKET_ROTATE_MS, the current and previous key sent
 * to every worker then and to each worker that starts. A constant
 * period, not a setting: SPEC has none and there is no good reason to
 * keep a key longer; a restart draws new keys (tickets do not survive
 * it, as sessions of a restarted server need not).
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "master/master.h"

static int ticketkeys_draw(uint8_t key[MSG_TICKET_KEY_LEN])
{
    return getrandom(key, MSG_TICKET_KEY_LEN, 0) == MSG_TICKET_KEY_LEN ? 0 : -1;
}

void ticketkeys_send(struct master *m, struct worker_proc *w)
{
    if (w->pid != 0 && w->chan.fd >= 0)
        chan_send(&w->chan, MSG_TICKET_KEYS, 0, &m->ticket_keys, sizeof(m->ticket_keys), -1);
}

/* The previous key goes, the current becomes the previous, next the current. */
static void ticketkeys_rotate(struct msg_ticket_keys *k, const uint8_t next[MSG_TICKET_KEY_LEN])
{
    memcpy(k->previous, k->current, sizeof(k->previous));
    k->has_previous = 1;
    memcpy(k->current, next, sizeof(k->current));
}

static void ticketkeys_rotate_cb(struct timer *t)
{
    struct master *m = t->data;
    uint8_t next[MSG_TICKET_KEY_LEN];

    loop_timer_set(m->loop, t, MSG_TICKET_ROTATE_MS);
    if (ticketkeys_draw(next) < 0) {
        log_errno(LOGL_ERROR, errno,
                  "getrandom() for a new session ticket key; keeping the "
                  "current one until the next rotation");
        return;
    }
    ticketkeys_rotate(&m->ticket_keys, next);
    OPENSSL_cleanse(next, sizeof(next));
    for (unsigned i = 0; i < m->n_slots; i++) {
        struct worker_proc *w = &m->workers[i];
        ticketkeys_send(m, w);
        child_chan_flush(&w->chan, "worker", w->pid);
    }
    log_info("session ticket key rotated: tickets issued before the previous rotation no "
             "longer resume");
}

int ticketkeys_start(struct master *m)
{
    m->ticket_keys = (struct msg_ticket_keys){0};
    if (ticketkeys_draw(m->ticket_keys.current) < 0) {
        log_errno(LOGL_ERROR, errno, "getrandom() for the session ticket key");
        return -1;
    }
    m->ticket_rotate = (struct timer){.cb = ticketkeys_rotate_cb, .data = m};
    loop_timer_set(m->loop, &m->ticket_rotate, MSG_TICKET_ROTATE_MS);
    return 0;
}
