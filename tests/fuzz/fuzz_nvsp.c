/* SPDX-License-Identifier: MIT */
/*
 * netvsp's NVSP side: nvsp_parse on guest payloads of any length, and the
 * receive-buffer sub-allocation pool driven by a guest that completes
 * whatever transaction ids it likes (never handed out, twice, huge) while
 * the host takes and sends sub-allocations.  Invariants: a parsed message
 * held its whole body; the pool never loses or duplicates a
 * sub-allocation, never lets data take the control reserve, and refuses
 * every completion of a packet the guest does not hold.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "vsp/netvsp/nvsp_msg.h"
#include "vsp/netvsp/rxpool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_pool(const struct rx_pool *pl, uint32_t taken)
{
    FUZZ_CHECK(pl->nfree <= pl->count);
    FUZZ_CHECK(pl->nfree + rx_pool_in_flight(pl) + taken == pl->count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    /* 1: one NVSP message, the length first */
    uint16_t mlen = fuzz_u16(&in) % 512;
    uint8_t msg[512];
    size_t got = fuzz_take(&in, msg, mlen);
    struct nvsp_msg m;
    const char *why = NULL;
    if (nvsp_parse(msg, got, &m, &why) == 0)
        FUZZ_CHECK(got >= 6); /* every guest message has a body (REVOKE: 2 bytes) */
    else
        FUZZ_CHECK(why != NULL);

    /* 2: the pool */
    uint32_t count = RX_POOL_CONTROL_RESERVE + 1 + fuzz_u8(&in);
    struct rx_pool pl;
    FUZZ_CHECK(rx_pool_init(&pl, count) == 0);
    uint32_t taken[64], ntaken = 0;
    uint64_t sent[256];
    int nsent = 0;
    while (in.left) {
        uint8_t op = fuzz_u8(&in);
        switch (op % 4) {
        case 0: { /* take, data or control */
            uint32_t idx;
            bool control = op & 0x10;
            uint32_t before = pl.nfree;
            if (ntaken < 64 && rx_pool_get(&pl, control, &idx)) {
                FUZZ_CHECK(idx < count);
                FUZZ_CHECK(control || before > RX_POOL_CONTROL_RESERVE);
                for (uint32_t i = 0; i < ntaken; i++)
                    FUZZ_CHECK(taken[i] != idx);
                taken[ntaken++] = idx;
            }
            break;
        }
        case 1: /* send what was taken as one packet */
            if (ntaken && nsent < 256) {
                sent[nsent++] = rx_pool_send(&pl, taken, ntaken, 0);
                ntaken = 0;
            }
            break;
        case 2: /* give back (send failed) */
            rx_pool_put(&pl, taken, ntaken);
            ntaken = 0;
            break;
        case 3: { /* the guest completes a transaction id of its choosing */
            uint64_t tid;
            bool legit = (op & 0x10) && nsent;
            int k = 0;
            if (legit) {
                k = fuzz_u8(&in) % nsent;
                tid = sent[k];
            } else {
                tid = fuzz_u64(&in);
                if (op & 0x20)
                    tid %= count;
            }
            bool held = false;
            for (int i = 0; i < nsent; i++)
                if (sent[i] == tid) {
                    held = true;
                    k = i;
                }
            int r = rx_pool_complete(&pl, tid, 0);
            FUZZ_CHECK(held ? r >= 1 : r == -EINVAL);
            if (held)
                sent[k] = sent[--nsent];
            break;
        }
        }
        check_pool(&pl, ntaken);
    }
    rx_pool_fini(&pl);
    return 0;
}
