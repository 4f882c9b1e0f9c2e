/* SPDX-License-Identifier: MIT */
#include "ic_guest.h"

#include "vmbusd/hv_guids.h"

const struct icg_svc icg_svcs[ICG_NSVC] = {
    [ICG_HB] = {"heartbeat", HV_CLASS_HEARTBEAT, ICG_T_HEARTBEAT,
                {{3, 0}, {1, 0}}, {{3, 0}, {1, 0}}, 2, ICG_BUF_UTIL},
    [ICG_SD] = {"shutdown", HV_CLASS_SHUTDOWN, ICG_T_SHUTDOWN,
                {{3, 0}, {1, 0}}, {{3, 2}, {3, 1}, {3, 0}, {1, 0}}, 4, ICG_BUF_UTIL},
    [ICG_TS] = {"timesync", HV_CLASS_TIMESYNC, ICG_T_TIMESYNC,
                {{3, 0}, {1, 0}}, {{4, 0}, {3, 0}, {1, 0}}, 3, ICG_BUF_UTIL},
    [ICG_KV] = {"kvp", HV_CLASS_KVP, ICG_T_KVP,
                {{3, 0}, {1, 0}}, {{4, 0}, {3, 0}, {1, 0}}, 3, ICG_BUF_KVP},
};

const char *const icg_kvp_auto_keys[ICG_KVP_AUTO_N] = {
    "FullyQualifiedDomainName", "IntegrationServicesVersion", "NetworkAddressIPv4",
    "NetworkAddressIPv6", "OSBuildNumber", "OSName", "OSMajorVersion", "OSMinorVersion",
    "OSVersion", "ProcessorArchitecture",
};
const char *const icg_kvp_auto_values[ICG_KVP_AUTO_N] = {
    "simguest.example", "3.1", "192.0.2.7", "2001:db8::7", "6.1.0-sim", "Debian GNU/Linux",
    "6", "1", "6.1.0-sim", "x86_64",
};

struct icg_hdr icg_hdr_get(const uint8_t *pkt)
{
    struct icg_hdr h;
    memcpy(&h, pkt + 8, sizeof(h));
    return h;
}

void icg_hdr_put(uint8_t *pkt, const struct icg_hdr *h)
{
    memcpy(pkt + 8, h, sizeof(*h));
}

void icg_set_status(uint8_t *pkt, uint32_t status)
{
    struct icg_hdr h = icg_hdr_get(pkt);
    h.status = status;
    icg_hdr_put(pkt, &h);
}

void icg_make_response(uint8_t *pkt)
{
    struct icg_hdr h = icg_hdr_get(pkt);
    h.flags = ICG_TRANSACTION | ICG_RESPONSE;
    icg_hdr_put(pkt, &h);
}

/* The first of mine (preference order) that the host offered. */
static bool pick(const struct icg_ver *mine, unsigned n_mine, const uint8_t *offered,
                 unsigned n_off, struct icg_ver *out)
{
    for (unsigned i = 0; i < n_mine; i++)
        for (unsigned j = 0; j < n_off; j++) {
            struct icg_ver v = {icg_rd16(offered + 4 * j), icg_rd16(offered + 4 * j + 2)};
            if (icg_ver_eq(v, mine[i])) {
                *out = v;
                return true;
            }
        }
    return false;
}

enum icg_neg icg_negotiate_lists(const struct icg_ver *fw_list, unsigned nfw_list,
                                 const struct icg_ver *msg_list, unsigned nmsg_list,
                                 uint8_t *pkt, uint32_t len, struct icg_ver *fw_out,
                                 struct icg_ver *ver_out)
{
    if (len < ICG_HDRS + 4)
        return ICG_NEG_SHORT;
    struct icg_hdr h = icg_hdr_get(pkt);
    h.size = 16;
    icg_hdr_put(pkt, &h);
    uint8_t *body = pkt + ICG_HDRS;
    unsigned nfw = icg_rd16(body), nmsg = icg_rd16(body + 2);
    /* Without a match Linux still writes entries 0 and 1, starting from
     * the counts it read. */
    struct icg_ver fw = {(uint16_t)nfw, 0}, mv = {(uint16_t)nmsg, 0};
    enum icg_neg r;
    if (nfw > ICG_MAX_VERCNT || nmsg > ICG_MAX_VERCNT || ICG_HDRS + 8 + 4 * (nfw + nmsg) > len)
        r = ICG_NEG_BAD_COUNTS;
    else if (pick(fw_list, nfw_list, body + 8, nfw, &fw) &&
             pick(msg_list, nmsg_list, body + 8 + 4 * nfw, nmsg, &mv))
        r = ICG_NEG_OK;
    else
        r = ICG_NEG_NO_MATCH;
    icg_wr16(body, r == ICG_NEG_OK ? 1 : 0);
    icg_wr16(body + 2, r == ICG_NEG_OK ? 1 : 0);
    memcpy(body + 8, &fw, 4);
    memcpy(body + 12, &mv, 4);
    if (fw_out)
        *fw_out = fw;
    if (ver_out)
        *ver_out = mv;
    return r;
}

enum icg_neg icg_negotiate(const struct icg_svc *s, uint8_t *pkt, uint32_t len,
                           struct icg_ver *fw, struct icg_ver *ver)
{
    return icg_negotiate_lists(s->fw, 2, s->msg, s->nmsg, pkt, len, fw, ver);
}

uint64_t icg_heartbeat_seq(const uint8_t *pkt) { return icg_rd64(pkt + ICG_HDRS); }

void icg_heartbeat_answer(uint8_t *pkt)
{
    icg_wr64(pkt + ICG_HDRS, icg_rd64(pkt + ICG_HDRS) + 1);
}

uint32_t icg_timesync_len(struct icg_ver ver) { return ICG_HDRS + (ver.major >= 4 ? 22u : 25u); }

uint64_t icg_timesync_host_time(const uint8_t *pkt) { return icg_rd64(pkt + ICG_HDRS); }

uint8_t icg_timesync_flags(const uint8_t *pkt, struct icg_ver ver)
{
    return pkt[ICG_HDRS + (ver.major >= 4 ? 16 : 24)];
}

uint32_t icg_shutdown_reason(const uint8_t *pkt) { return icg_rd32(pkt + ICG_HDRS); }
uint32_t icg_shutdown_timeout(const uint8_t *pkt) { return icg_rd32(pkt + ICG_HDRS + 4); }
uint32_t icg_shutdown_flags(const uint8_t *pkt) { return icg_rd32(pkt + ICG_HDRS + 8); }

uint32_t icg_shutdown_status(uint32_t flags)
{
    /* 0/1 power off, 2/3 reboot (bit 0: forced), 4/5 hibernate */
    return flags <= 3 ? ICG_S_OK : ICG_E_FAIL;
}

uint32_t icg_u16_put(uint8_t *dst, const char *s)
{
    uint32_t n = 0;
    for (; *s; s++, n += 2)
        icg_wr16(dst + n, (uint8_t)*s);
    icg_wr16(dst + n, 0);
    return n + 2;
}

bool icg_u16_is(const uint8_t *src, uint32_t size, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    if (size != 2 * (n + 1))
        return false;
    for (uint32_t i = 0; i <= n; i++)
        if (icg_rd16(src + 2 * i) != (uint8_t)s[i])
            return false;
    return true;
}

void icg_kvp_rec_put(uint8_t *rec, const char *key, const char *value)
{
    icg_wr32(rec, 1); /* REG_SZ: hv_kvp_daemon's values are all strings */
    if (key) {
        memset(rec + 12, 0, ICG_KVP_KEY);
        icg_wr32(rec + 4, icg_u16_put(rec + 12, key));
    }
    memset(rec + 12 + ICG_KVP_KEY, 0, ICG_KVP_VAL);
    icg_wr32(rec + 8, icg_u16_put(rec + 12 + ICG_KVP_KEY, value));
}
