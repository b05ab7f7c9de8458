/*
 * Minimal test reporting for the C unit tests: one line per check,
 * "ok - NAME" or "not ok - NAME (file:line)", read by t/run. main()
 * returns tap_done(), non-zero when any check failed.
 */
#ifndef MC_TAP_H
#define MC_TAP_H

#include <stdio.h>

static int tap_failed;

#define T_OK(cond, ...)                                                                            \
    do {                                                                                           \
        int tap_ok_ = !!(cond);                                                                    \
        if (!tap_ok_)                                                                              \
            tap_failed++;                                                                          \
        printf("%s - ", tap_ok_ ? "ok" : "not ok");                                                \
        printf(__VA_ARGS__);                                                                       \
        if (!tap_ok_)                                                                              \
            printf(" (%s:%d)", __FILE__, __LINE__);                                                \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static inline int tap_done(void)
{
    return tap_failed ? 1 : 0;
}

#endif
