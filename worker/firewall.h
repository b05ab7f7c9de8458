/*
 * The global firewall as a worker checks it (SPEC section 5): ip and cidr
 * rules in one prefix set (longest match, O(address bits) whatever the
 * number of rules), countries as a bitmap of ISO codes looked up through
 * GeoIP. Built from the binary rules of a generation, sealed, then only
 * read; shared by every generation until the rules change.
 */
#ifndef MC_FIREWALL_H
#define MC_FIREWALL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/config.h"
#include "common/geoip.h"
#include "common/msg.h"
#include "common/reason.h"

struct prefix_set;

struct firewall {
    unsigned refs;
    struct prefix_set *nets;            /* NULL until the first ip or cidr rule */
    uint8_t countries[26 * 26 / 8 + 1]; /* bit (A-Z)*26 + (A-Z) */
    unsigned n_countries;
    unsigned n_rules;
};

/* An empty firewall (allows everything) with one reference; NULL on ENOMEM. */
struct firewall *firewall_new(void);
struct firewall *firewall_ref(struct firewall *fw);
void firewall_unref(struct firewall *fw);

/* Adds one rule as it came over the channel; -1 when it is malformed or memory runs out. */
int firewall_add(struct firewall *fw, const struct msg_fw_rule *r);
/* After the last add. -1 on ENOMEM. */
int firewall_seal(struct firewall *fw);

/* Why fw refuses a client at a (an IPv4-mapped address counts as IPv4), or
 * REASON_NONE. Country rules need geo; without it they cannot match. */
enum reason firewall_check(const struct firewall *fw, const struct geoip *geo,
                           const struct mc_addr *a);

#endif
