/* The worker's firewall tables: which rule kind decides the reason, and what a malformed rule does.
 */
#include <arpa/inet.h>
#include <string.h>

#include "tap.h"
#include "worker/firewall.h"

static struct msg_fw_rule rule(enum fw_type type, const char *text)
{
    struct msg_fw_rule r = {.type = (uint8_t)type};
    struct mc_cidr c;
    const char *err;

    if (type == FW_COUNTRY)
        memcpy(r.country, text, 2);
    else if (addr_parse_cidr(text, type == FW_IP, &c, &err) == 0)
        msg_cidr_set(&r.net, &c);
    return r;
}

static struct mc_addr client(const char *ip)
{
    struct mc_addr a = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;

    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        a.len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        a.len = sizeof(*sin6);
    }
    return a;
}

static enum reason check(const struct firewall *fw, const char *ip)
{
    struct mc_addr a = client(ip);
    return firewall_check(fw, NULL, &a);
}

static int add(struct firewall *fw, enum fw_type type, const char *text)
{
    struct msg_fw_rule r = rule(type, text);
    return firewall_add(fw, &r);
}

int main(void)
{
    struct firewall *fw = firewall_new();

    T_OK(fw != NULL && check(fw, "10.0.0.1") == REASON_NONE, "empty firewall allows");
    /* in store order: cidr, country, ip */
    T_OK(add(fw, FW_CIDR, "10.0.0.0/8") == 0 && add(fw, FW_CIDR, "10.1.2.3/32") == 0 &&
             add(fw, FW_CIDR, "2001:db8::/32") == 0 && add(fw, FW_COUNTRY, "DE") == 0 &&
             add(fw, FW_IP, "10.1.2.3") == 0 && add(fw, FW_IP, "192.0.2.7") == 0 &&
             add(fw, FW_IP, "2001:db8:1::9") == 0 && firewall_seal(fw) == 0,
         "rules of every kind added");
    T_OK(fw->n_rules == 7 && fw->n_countries == 1, "counted: %u rules", fw->n_rules);
    T_OK(check(fw, "10.9.9.9") == REASON_FIREWALL_CIDR, "inside a cidr: firewall_cidr");
    T_OK(check(fw, "10.1.2.3") == REASON_FIREWALL_IP,
         "an ip rule and a /32 cidr on one address: firewall_ip");
    T_OK(check(fw, "192.0.2.7") == REASON_FIREWALL_IP, "ip rule: firewall_ip");
    T_OK(check(fw, "192.0.2.8") == REASON_NONE, "the ip rule's neighbour: allowed");
    T_OK(check(fw, "::ffff:192.0.2.7") == REASON_FIREWALL_IP,
         "an IPv4-mapped client matches the IPv4 rule");
    T_OK(check(fw, "2001:db8:ffff::1") == REASON_FIREWALL_CIDR, "v6 cidr");
    T_OK(check(fw, "2001:db8:1::9") == REASON_FIREWALL_IP, "v6 ip inside a v6 cidr: firewall_ip");
    T_OK(check(fw, "2001:db9::1") == REASON_NONE, "outside every v6 rule: allowed");
    T_OK(check(fw, "11.0.0.1") == REASON_NONE, "a country rule without GeoIP cannot match");

    struct firewall *bad = firewall_new();
    struct msg_fw_rule r = rule(FW_IP, "10.0.0.1");
    r.net.prefix = 24;
    T_OK(firewall_add(bad, &r) < 0, "an ip rule that is not a full-length prefix is refused");
    r = rule(FW_CIDR, "10.0.0.0/8");
    r.net.prefix = 33;
    T_OK(firewall_add(bad, &r) < 0, "an IPv4 prefix past /32 is refused");
    r.net.family = 99;
    T_OK(firewall_add(bad, &r) < 0, "an unknown family is refused");
    r = rule(FW_COUNTRY, "de");
    T_OK(firewall_add(bad, &r) < 0, "a country code not in upper case is refused");
    r.type = 7;
    T_OK(firewall_add(bad, &r) < 0, "an unknown rule type is refused");
    T_OK(bad->n_rules == 0 && check(bad, "10.0.0.1") == REASON_NONE,
         "refused rules leave nothing behind");

    struct firewall *shared = firewall_ref(fw);
    firewall_unref(fw);
    T_OK(check(shared, "10.9.9.9") == REASON_FIREWALL_CIDR, "a reference keeps the tables alive");
    firewall_unref(shared);
    firewall_unref(bad);
    T_OK(firewall_check(NULL, NULL, &(struct mc_addr){0}) == REASON_NONE, "no firewall allows");
    return tap_done();
}
