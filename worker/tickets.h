/*
 * TLS session ticket keys, the same in every worker so that a session
 * resumes whichever worker the client reaches, and rotated by the master
 * (MSG_TICKET_KEYS): tickets are issued under the current key and
 * accepted under the current or the previous one (then reissued under
 * the current), so a ticket outlives one rotation and not two. One key
 * ring per process, shared by every route's SSL_CTX.
 */
#ifndef MC_TICKETS_H
#define MC_TICKETS_H

#include <openssl/ssl.h>

#include "common/msg.h"

/* The keys from now on; previous ones no longer in k are forgotten (wiped). */
void tickets_set(const struct msg_ticket_keys *k);
/* ctx issues and accepts tickets with the ring's keys. */
void tickets_use(SSL_CTX *ctx);

#endif
