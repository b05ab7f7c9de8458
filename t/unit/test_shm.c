/*
 * The L7 route table of a worker's shared memory slot (common/shm.c):
 * a (listener, route) pair keeps its entry, the table is bounded, and a
 * pair that finds it full counts in its listener's overflow bucket.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/shm.h"
#include "tap.h"

static uint64_t responses(const struct shm_http_counts *c, unsigned k)
{
    return atomic_load(&c->responses[k]);
}

int main(void)
{
    struct shm_worker *w = calloc(1, sizeof(*w));
    char name[32];

    if (w == NULL)
        return 1;
    struct shm_http_counts *a = shm_http_route(w, 0, "a.test");
    T_OK(a != NULL && a == shm_http_route(w, 0, "a.test"), "a pair keeps its entry");
    T_OK(shm_http_route(w, 1, "a.test") != a, "the same route on another listener is another pair");
    shm_http_count(a, 200, false);
    shm_http_count(a, 204, false);
    shm_http_count(a, 403, true);
    shm_http_count(a, 502, false);
    shm_http_count(a, 99, false);
    shm_http_count(a, 600, false);
    T_OK(responses(a, 1) == 2 && responses(a, 3) == 1 && responses(a, 4) == 1 &&
             responses(a, 0) == 0 && responses(a, 2) == 0,
         "responses counted by status class");
    T_OK(atomic_load(&a->policy_blocks) == 1, "a policy block counted");

    for (unsigned i = atomic_load(&w->http_routes_used); i < SHM_HTTP_ROUTES; i++) {
        snprintf(name, sizeof(name), "r%u.test", i);
        shm_http_route(w, 2, name);
    }
    T_OK(atomic_load(&w->http_routes_used) == SHM_HTTP_ROUTES, "the table fills to its bound");
    T_OK(shm_http_route(w, 2, "late.test") == &w->http_other[2] &&
             shm_http_route(w, 3, "later.test") == &w->http_other[3],
         "a pair past the bound counts in its listener's overflow bucket");
    T_OK(atomic_load(&w->http_routes_used) == SHM_HTTP_ROUTES &&
             shm_http_route(w, 0, "a.test") == a,
         "a full table still finds the pairs it holds");
    free(w);
    return tap_done();
}
