/* SPDX-License-Identifier: MIT */
/*
 * GPADLs: guest page lists handed to the host in a GPADL_HEADER and zero or
 * more GPADL_BODY messages.  Linux sends msgnumber 0 in every body, so the
 * pieces are joined in arrival order per handle; the GPADL is complete when
 * the announced page count has arrived, and only then is every page checked
 * against the VM's memory map and GPADL_CREATED sent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "xpartition/internal.h"

#define STATUS_UNSUCCESSFUL 0xC0000001u

struct xp_gpadl *xp_gpadl_find(struct xpartition *xp, uint32_t id)
{
    struct xp_gpadl *g;
    LIST_FOREACH(g, &xp->gpadls, link)
        if (g->id == id)
            return g;
    return NULL;
}

static void gpadl_unlink_free(struct xpartition *xp, struct xp_gpadl *g)
{
    LIST_REMOVE(g, link);
    if (!g->complete)
        xp->npending_gpadls--;
    xp->ngpadls--;
    if (g->vsp_map) {
        /* The VSP may still be reading it: swap the guest pages for
         * anonymous memory instead of unmapping under its feet. */
        struct xp_orphan_map *o = malloc(sizeof(*o));
        if (o && mmap(g->vsp_map, g->vsp_map_len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            o->addr = g->vsp_map;
            o->len = g->vsp_map_len;
            SLIST_INSERT_HEAD(&xp->orphans, o, link);
        } else {
            free(o);
            munmap(g->vsp_map, g->vsp_map_len);
        }
    }
    free(g->pfns);
    free(g);
}

static void send_created(struct xpartition *xp, uint32_t relid, uint32_t id, uint32_t status)
{
    struct vmbus_channel_gpadl_created r = {
        .header.msgtype = CHANNELMSG_GPADL_CREATED,
        .child_relid = relid,
        .gpadl = id,
        .creation_status = status,
    };
    if (xp_queue_msg(xp, &r, sizeof(r)) < 0)
        xp_guest_warn(xp, "GPADL_CREATED for 0x%x dropped: message queue full", id);
}

/* All PFNs are in: check each page against guest memory. */
static void gpadl_complete(struct xpartition *xp, struct xp_gpadl *g)
{
    for (uint32_t i = 0; i < g->npages; i++) {
        uint64_t pfn = g->pfns[i];
        if (pfn > (UINT64_MAX >> HV_PAGE_SHIFT) ||
            !xp_gpa_to_hva(xp, pfn << HV_PAGE_SHIFT, HV_PAGE_SIZE)) {
            xp_guest_warn(xp, "relid %u: GPADL 0x%x page %u (pfn 0x%llx) is outside guest memory",
                          g->relid, g->id, i, (unsigned long long)pfn);
            uint32_t relid = g->relid, id = g->id;
            gpadl_unlink_free(xp, g);
            send_created(xp, relid, id, STATUS_UNSUCCESSFUL);
            return;
        }
    }
    g->complete = true;
    xp->npending_gpadls--;
    log_debug("partition %s: relid %u: GPADL 0x%x created (%u pages, %u bytes)", xp->name,
              g->relid, g->id, g->npages, g->byte_count);
    send_created(xp, g->relid, g->id, 0);
}

void xp_handle_gpadl_header(struct xpartition *xp, const uint8_t *msg, size_t len)
{
    struct vmbus_channel_gpadl_header h;
    struct vmbus_gpa_range r;
    memcpy(&h, msg, sizeof(h));
    memcpy(&r, msg + sizeof(h), sizeof(r));
    const char *why = NULL;

    if (!xp_channel_by_relid(xp, h.child_relid))
        why = "names a relid that was never offered";
    else if (xp_gpadl_find(xp, h.gpadl))
        why = "reuses a handle that is in use";
    else if (h.rangecount != 1)
        why = "has more than one range (not supported)";
    else if (h.range_buflen < 16 || (h.range_buflen & 7))
        why = "has a malformed range_buflen";
    else if (r.byte_offset >= HV_PAGE_SIZE || r.byte_count == 0)
        why = "has a bad byte offset or count";
    else if (xp->ngpadls >= XP_MAX_GPADLS)
        why = "exceeds the partition's GPADL limit";
    else if (xp->npending_gpadls >= XP_MAX_PENDING_GPADLS)
        why = "exceeds the limit of incomplete GPADLs";
    if (!why) {
        uint32_t npages = (h.range_buflen - 8u) / 8u;
        uint64_t need = ((uint64_t)r.byte_offset + r.byte_count + HV_PAGE_SIZE - 1) / HV_PAGE_SIZE;
        if (npages == 0 || npages > XP_MAX_GPADL_PAGES || npages != need)
            why = "page count does not match its byte count";
    }
    if (why) {
        xp_guest_warn(xp, "relid %u: GPADL_HEADER 0x%x %s", h.child_relid, h.gpadl, why);
        send_created(xp, h.child_relid, h.gpadl, STATUS_UNSUCCESSFUL);
        return;
    }

    uint32_t npages = (h.range_buflen - 8u) / 8u;
    size_t inmsg = (len - sizeof(h) - sizeof(r)) / 8;
    if (inmsg > npages) {
        xp_guest_warn(xp, "relid %u: GPADL_HEADER 0x%x carries %zu PFNs for %u pages",
                      h.child_relid, h.gpadl, inmsg, npages);
        send_created(xp, h.child_relid, h.gpadl, STATUS_UNSUCCESSFUL);
        return;
    }
    struct xp_gpadl *g = calloc(1, sizeof(*g));
    uint64_t *pfns = calloc(npages, sizeof(uint64_t));
    if (!g || !pfns) {
        free(g);
        free(pfns);
        send_created(xp, h.child_relid, h.gpadl, STATUS_UNSUCCESSFUL);
        return;
    }
    g->id = h.gpadl;
    g->relid = h.child_relid;
    g->npages = npages;
    g->byte_offset = r.byte_offset;
    g->byte_count = r.byte_count;
    g->pfns = pfns;
    memcpy(pfns, msg + sizeof(h) + sizeof(r), inmsg * 8);
    g->filled = (uint32_t)inmsg;
    LIST_INSERT_HEAD(&xp->gpadls, g, link);
    xp->ngpadls++;
    xp->npending_gpadls++;
    if (g->filled == g->npages)
        gpadl_complete(xp, g);
}

void xp_handle_gpadl_body(struct xpartition *xp, const uint8_t *msg, size_t len)
{
    struct vmbus_channel_gpadl_body b;
    memcpy(&b, msg, sizeof(b));
    struct xp_gpadl *g = xp_gpadl_find(xp, b.gpadl);
    if (!g || g->complete) {
        xp_guest_warn(xp, "GPADL_BODY for 0x%x, which is not being created", b.gpadl);
        return;
    }
    size_t n = (len - sizeof(b)) / 8;
    if (n == 0 || n > g->npages - g->filled) {
        uint32_t relid = g->relid, id = g->id;
        xp_guest_warn(xp, "relid %u: GPADL_BODY 0x%x carries %zu PFNs, %u expected", relid, id, n,
                      g->npages - g->filled);
        gpadl_unlink_free(xp, g);
        send_created(xp, relid, id, STATUS_UNSUCCESSFUL);
        return;
    }
    memcpy(g->pfns + g->filled, msg + sizeof(b), n * 8);
    g->filled += (uint32_t)n;
    if (g->filled == g->npages)
        gpadl_complete(xp, g);
}

static void send_torndown(struct xpartition *xp, uint32_t id)
{
    struct vmbus_channel_gpadl_torndown r = {.header.msgtype = CHANNELMSG_GPADL_TORNDOWN,
                                             .gpadl = id};
    if (xp_queue_msg(xp, &r, sizeof(r)) < 0)
        xp_guest_warn(xp, "GPADL_TORNDOWN for 0x%x dropped: message queue full", id);
}

void xp_handle_gpadl_teardown(struct xpartition *xp, const struct vmbus_channel_gpadl_teardown *m)
{
    struct xp_gpadl *g = xp_gpadl_find(xp, m->gpadl);
    if (!g) {
        xp_guest_warn(xp, "relid %u: GPADL_TEARDOWN of unknown GPADL 0x%x", m->child_relid,
                      m->gpadl);
        return;
    }
    if (g->relid != m->child_relid) {
        /* Linux tears a GPADL down through the channel it created it for;
         * anything else must not touch (or defer) another channel's GPADL. */
        xp_guest_warn(xp, "relid %u: GPADL_TEARDOWN of 0x%x, which belongs to relid %u; ignored",
                      m->child_relid, m->gpadl, g->relid);
        return;
    }
    if (g->teardown_requested) {
        xp_guest_warn(xp, "relid %u: GPADL_TEARDOWN of 0x%x repeated", g->relid, g->id);
        return;
    }
    if (g->users > 0) {
        /* Still mapped as a ring of a channel whose close has not finished,
         * or by a VSP: the guest keeps waiting until the last user goes. */
        g->teardown_requested = true;
        log_debug("partition %s: GPADL 0x%x teardown deferred (%d users)", xp->name, g->id,
                  g->users);
        return;
    }
    uint32_t id = g->id;
    gpadl_unlink_free(xp, g);
    send_torndown(xp, id);
}

void xp_gpadl_put(struct xpartition *xp, struct xp_gpadl *g)
{
    if (--g->users > 0 || !g->teardown_requested)
        return;
    uint32_t id = g->id;
    gpadl_unlink_free(xp, g);
    send_torndown(xp, id);
}

void xp_gpadl_forget(struct xpartition *xp, uint32_t relid)
{
    struct xp_gpadl *n;
    for (struct xp_gpadl *g = LIST_FIRST(&xp->gpadls); g; g = n) {
        n = LIST_NEXT(g, link); /* g may be freed */
        if (relid == 0 || g->relid == relid)
            gpadl_unlink_free(xp, g);
    }
}

/* Map a whole GPADL contiguously for a VSP (data buffers, e.g. netvsc's). */
void *xp_gpadl_map(struct xp_channel *ch, uint32_t id, size_t *len)
{
    struct xpartition *xp = ch->xp;
    void *ret = NULL;
    pthread_mutex_lock(&xp->lock);
    struct xp_gpadl *g = xp_gpadl_find(xp, id);
    if (!g || !g->complete || g->relid != ch->relid || g->teardown_requested)
        goto out;
    if (!g->vsp_map) {
        size_t sz = (size_t)g->npages * HV_PAGE_SIZE;
        uint8_t *base = mmap(NULL, sz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            goto out;
        for (uint32_t i = 0; i < g->npages; i++) {
            int fd;
            uint64_t off;
            if (xp_gpa_to_fd(xp, g->pfns[i] << HV_PAGE_SHIFT, &fd, &off) < 0 ||
                mmap(base + (size_t)i * HV_PAGE_SIZE, HV_PAGE_SIZE, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED, fd, (off_t)off) == MAP_FAILED) {
                munmap(base, sz);
                goto out;
            }
        }
        g->vsp_map = base;
        g->vsp_map_len = sz;
    }
    /* Every map is a user: the mapping (and the guest's teardown) waits
     * for the matching number of unmaps. */
    g->vsp_maps++;
    g->users++;
    ret = (uint8_t *)g->vsp_map + g->byte_offset;
    *len = g->byte_count;
out:
    pthread_mutex_unlock(&xp->lock);
    return ret;
}

void xp_gpadl_unmap(struct xp_channel *ch, uint32_t id)
{
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    struct xp_gpadl *g = xp_gpadl_find(xp, id);
    /* Only the channel the GPADL was created for (the one that could map
     * it) may unmap it. */
    if (g && g->relid == ch->relid && g->vsp_maps > 0) {
        if (--g->vsp_maps == 0) {
            munmap(g->vsp_map, g->vsp_map_len);
            g->vsp_map = NULL;
        }
        xp_gpadl_put(xp, g);
    }
    pthread_mutex_unlock(&xp->lock);
}
