/* The worker's firewall tables (firewall.h). */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/prefix.h"
#include "worker/firewall.h"

/* Prefix set tags: which kind of rule matched decides the reason code. */
enum { TAG_IP = 1, TAG_CIDR = 2 };

struct firewall *firewall_new(void)
{
    struct firewall *fw = calloc(1, sizeof(*fw));
    if (fw != NULL)
        fw->refs = 1;
    return fw;
}

struct firewall *firewall_ref(struct firewall *fw)
{
    if (fw != NULL)
        fw->refs++;
    return fw;
}

void firewall_unref(struct firewall *fw)
{
    if (fw == NULL || --fw->refs > 0)
        return;
    prefix_set_free(fw->nets);
    free(fw);
}

static int country_bit(const char cc[2])
{
    if (cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z')
        return -1;
    return (cc[0] - 'A') * 26 + (cc[1] - 'A');
}

int firewall_add(struct firewall *fw, const struct msg_fw_rule *r)
{
    struct mc_cidr c;

    switch (r->type) {
    case FW_COUNTRY: {
        int bit = country_bit(r->country);
        if (bit < 0)
            return -1;
        fw->countries[bit / 8] |= (uint8_t)(1u << (bit % 8));
        fw->n_countries++;
        break;
    }
    case FW_IP:
    case FW_CIDR:
        if (msg_cidr_get(&r->net, &c) < 0)
            return -1;
        /* an ip rule is a full-length prefix, nothing else */
        if (r->type == FW_IP && c.prefix != (c.family == AF_INET ? 32 : 128))
            return -1;
        if (fw->nets == NULL && (fw->nets = prefix_set_new()) == NULL)
            return -1;
        /* the rules come sorted by type name, ip after cidr: an ip rule
         * and a cidr of the same length leave firewall_ip */
        if (prefix_set_add(fw->nets, &c, r->type == FW_IP ? TAG_IP : TAG_CIDR) < 0)
            return -1;
        break;
    default:
        return -1;
    }
    fw->n_rules++;
    return 0;
}

int firewall_seal(struct firewall *fw)
{
    return fw->nets != NULL ? prefix_set_seal(fw->nets) : 0;
}

enum reason firewall_check(const struct firewall *fw, const struct geoip *geo,
                           const struct mc_addr *a)
{
    const uint8_t *ip;
    int family = a->ss.ss_family;
    char cc[3];

    if (fw == NULL || fw->n_rules == 0)
        return REASON_NONE;
    if (family == AF_INET)
        ip = (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    else if (family == AF_INET6)
        ip = (const uint8_t *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    else
        return REASON_NONE;
    switch (prefix_set_lookup(fw->nets, family, ip)) {
    case TAG_IP:
        return REASON_FIREWALL_IP;
    case TAG_CIDR:
        return REASON_FIREWALL_CIDR;
    }
    if (fw->n_countries > 0 && geo != NULL && geoip_country(geo, a, cc)) {
        int bit = country_bit(cc);
        if (bit >= 0 && (fw->countries[bit / 8] & (1u << (bit % 8))))
            return REASON_FIREWALL_COUNTRY;
    }
    return REASON_NONE;
}
