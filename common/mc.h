/* Definitions every mc-proxy module shares. */
#ifndef MC_H
#define MC_H

#include <stddef.h>
#include <stdint.h>

/* Return codes: 0 / -1 for most functions; parsers and I/O helpers add AGAIN. */
enum {
    MC_OK = 0,
    MC_ERROR = -1,
    MC_AGAIN = -2,
};

#define MC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MC_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MC_MAX(a, b)    ((a) > (b) ? (a) : (b))
#define MC_UNUSED       __attribute__((unused))
#define MC_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Hard limits shared by the config, the master and the workers. */
#define MC_MAX_LISTENERS 256
#define MC_MAX_WORKERS   256
#define MC_HOSTNAME_MAX  253 /* RFC 1035 presentation form, no trailing dot */

/* A child that exits with this status hit an error a restart cannot fix. */
#define MC_EXIT_FATAL 2

/* Frees *p and clears the pointer, so no reachable pointer dangles. */
#define mc_free(p)                                                                                 \
    do {                                                                                           \
        free(*(p));                                                                                \
        *(p) = NULL;                                                                               \
    } while (0)

#endif
