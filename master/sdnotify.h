/* systemd's notify protocol, spoken directly on $NOTIFY_SOCKET (no libsystemd). */
#ifndef MC_SDNOTIFY_H
#define MC_SDNOTIFY_H

#include <stdint.h>

#include "common/mc.h"

/* Reads and unsets NOTIFY_SOCKET (children must not inherit it). */
void sdnotify_init(void);
/* Sends one datagram; a no-op when not started by systemd. */
void sdnotify(const char *fmt, ...) MC_PRINTF(1, 2);
/* Watchdog interval in ms (WATCHDOG_USEC, for this pid), 0 when off. */
uint64_t sdnotify_watchdog_ms(void);

#endif
