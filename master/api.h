/*
 * The admin API's handlers (api.c), run in the master. They are given
 * only what they use: the state and configuration they read, the store
 * they change, and two calls back into the master, publish and reply.
 * t/unit/test_api.c drives them that way, without a master.
 */
#ifndef MC_API_H
#define MC_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/msg.h"

struct config;
struct shm;
struct state;
struct store;

/* How long a publish waits for every live worker's ack before it is
 * answered as committed but not yet applied everywhere. */
#define PUBLISH_DEADLINE_MS (MSG_ADMIN_TIMEOUT_MS - MSG_ADMIN_TIMEOUT_MS / 5)

/* A publish's end: applied is false when PUBLISH_DEADLINE_MS passed first. */
typedef void api_done_fn(void *arg, bool applied);

struct api {
    struct state *const *state; /* what the workers route by; each publish replaces it */
    struct config *const *cfg;  /* the running configuration; a reload replaces it */
    struct store *store;
    const struct shm *shm; /* the counters the status calls report */
    char *const *bound;    /* the bound listeners, in shm index order */
    unsigned n_bound;
    /* After a committed store change: loads and pushes the new state
     * (master_publish); -1 when it cannot be loaded, done then never runs. */
    int (*publish)(void *ctx, api_done_fn *done, void *arg);
    /* Sends the answer to request id of the admin process admin. */
    void (*reply)(void *ctx, pid_t admin, uint32_t id, int32_t status, const char *message,
                  const void *body, size_t len);
    void *ctx;
};

/* Handles one MSG_ADMIN_REQ of the admin process admin. Every path ends in
 * exactly one reply for the request's id, now or after a publish. */
void api_handle(const struct api *a, pid_t admin, const struct chan_msg *msg);

#endif
