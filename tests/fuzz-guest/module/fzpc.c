// SPDX-License-Identifier: GPL-2.0-only
/*
 * fzpc: the positive control of vmbusd's guest-driver fuzzer (vmbus-fuzz).
 *
 * A VMBus driver for a test device class that vmbusd's fzpc test VSP offers
 * (protocol in fzpc_proto.h).  It is deliberately written with three bugs a
 * malicious host can trigger, the kinds the hardening of the real hv drivers
 * fixed; each one is reached only after a valid version handshake:
 *
 *   1. length: DATA_RESP's `len` is trusted for the copy into a slot buffer;
 *   2. index:  DATA_RESP's `slot` is trusted as an index into the slot table;
 *   3. state:  a VERSION_RESP after the handshake re-runs the setup on live
 *              state (the handler never checks that a handshake is pending).
 *
 * The stock Debian kernel has no KASAN, so the corrupted condition itself is
 * asserted with BUG_ON right before the damage would be done: each bug then
 * crashes deterministically with a title of its own ("kernel BUG at
 * fzpc.c:LINE" in fzpc_on_data or fzpc_on_version), which the fuzzer must
 * find from a fixed seed and replay.  Test code: never load it elsewhere.
 *
 * Each load sends one VERSION_REQ, then `requests` DATA_REQs (module
 * parameter, default 32) over the slots, so a reload loop in the guest
 * drives it.
 */
#include <linux/completion.h>
#include <linux/hyperv.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/types.h>

#include "fzpc_proto.h"

static unsigned int requests = 32;
module_param(requests, uint, 0444);
MODULE_PARM_DESC(requests, "DATA_REQs sent after the handshake on each probe");

#define FZPC_RING_BYTES (16 * PAGE_SIZE)
#define FZPC_MAX_PKT 256

enum fzpc_state { FZPC_NEGOTIATING, FZPC_READY, FZPC_FAILED };

struct fzpc_slot {
	u8 buf[FZPC_SLOT_BYTES];
	u16 len;
	u32 seq;
};

struct fzpc_dev {
	struct hv_device *hdev;
	enum fzpc_state state;
	struct completion version_done;
	struct fzpc_slot *slots; /* FZPC_NSLOTS entries, set up by the handshake */
	unsigned int replies;
	u8 pkt[FZPC_MAX_PKT];
};

static void fzpc_setup_slots(struct fzpc_dev *fd)
{
	memset(fd->slots, 0, FZPC_NSLOTS * sizeof(*fd->slots));
	fd->replies = 0;
}

static noinline void fzpc_on_version(struct fzpc_dev *fd, const struct fzpc_version_resp *r, u32 len)
{
	/*
	 * Bug 3 (state the host can re-enter): nothing checks that a handshake
	 * is pending, so a second VERSION_RESP re-runs the setup below on the
	 * slot table the data path is using.  Assert the corrupted condition.
	 */
	BUG_ON(fd->state == FZPC_READY);
	if (len < sizeof(*r) || r->status != 0 || r->version != FZPC_VERSION) {
		fd->state = FZPC_FAILED;
		complete(&fd->version_done);
		return;
	}
	fzpc_setup_slots(fd);
	fd->state = FZPC_READY;
	complete(&fd->version_done);
}

static noinline void fzpc_on_data(struct fzpc_dev *fd, const struct fzpc_data_resp *r, u32 len)
{
	struct fzpc_slot *s;

	if (len < sizeof(*r))
		return;
	/* Bug 2 (index): the host's slot number indexes the table unchecked. */
	BUG_ON(r->slot >= FZPC_NSLOTS);
	s = &fd->slots[r->slot];
	/*
	 * Bug 1 (length): the host's len is trusted for the copy (checked
	 * neither against the slot buffer nor against the packet).
	 */
	BUG_ON(r->len > sizeof(s->buf));
	memcpy(s->buf, r->data, r->len);
	s->len = r->len;
	s->seq = r->seq;
	fd->replies++;
}

static void fzpc_on_channel_callback(void *context)
{
	struct fzpc_dev *fd = context;
	struct vmbus_channel *chan = fd->hdev->channel;
	u32 len;
	u64 req_id;
	u32 type;

	for (;;) {
		if (vmbus_recvpacket(chan, fd->pkt, sizeof(fd->pkt), &len, &req_id) || len == 0)
			break;
		if (len < sizeof(type))
			continue;
		memcpy(&type, fd->pkt, sizeof(type));
		if (type == FZPC_VERSION_RESP) {
			fzpc_on_version(fd, (const struct fzpc_version_resp *)fd->pkt, len);
		} else if (type == FZPC_DATA_RESP) {
			/* Only after a valid handshake. */
			if (fd->state == FZPC_READY)
				fzpc_on_data(fd, (const struct fzpc_data_resp *)fd->pkt, len);
		} else {
			dev_warn_ratelimited(&fd->hdev->device, "unknown message type %u\n", type);
		}
	}
}

static int fzpc_send(struct fzpc_dev *fd, void *msg, u32 len, u64 id)
{
	return vmbus_sendpacket(fd->hdev->channel, msg, len, id, VM_PKT_DATA_INBAND, 0);
}

static int fzpc_probe(struct hv_device *hdev, const struct hv_vmbus_device_id *id)
{
	struct fzpc_version_req vreq = { .type = FZPC_VERSION_REQ, .version = FZPC_VERSION };
	struct fzpc_dev *fd;
	unsigned int i;
	int ret;

	fd = kzalloc(sizeof(*fd), GFP_KERNEL);
	if (!fd)
		return -ENOMEM;
	fd->slots = kcalloc(FZPC_NSLOTS, sizeof(*fd->slots), GFP_KERNEL);
	if (!fd->slots) {
		kfree(fd);
		return -ENOMEM;
	}
	fd->hdev = hdev;
	fd->state = FZPC_NEGOTIATING;
	init_completion(&fd->version_done);
	hv_set_drvdata(hdev, fd);

	ret = vmbus_open(hdev->channel, FZPC_RING_BYTES, FZPC_RING_BYTES, NULL, 0,
			 fzpc_on_channel_callback, fd);
	if (ret)
		goto free;
	ret = fzpc_send(fd, &vreq, sizeof(vreq), 1);
	if (ret)
		goto close;
	/* A host that never answers must not hang the probe. */
	if (!wait_for_completion_timeout(&fd->version_done, 5 * HZ)) {
		ret = -ETIMEDOUT;
		goto close;
	}
	if (READ_ONCE(fd->state) != FZPC_READY) {
		ret = -EPROTO;
		goto close;
	}
	for (i = 0; i < requests; i++) {
		struct fzpc_data_req dreq = {
			.type = FZPC_DATA_REQ,
			.slot = i % FZPC_NSLOTS,
			.want = 16 + (i * 8) % (FZPC_SLOT_BYTES - 8),
			.seq = i,
		};

		if (fzpc_send(fd, &dreq, sizeof(dreq), 2 + i))
			break;
	}
	dev_info(&hdev->device, "fzpc: handshake done, %u requests sent\n", i);
	return 0;
close:
	vmbus_close(hdev->channel);
free:
	hv_set_drvdata(hdev, NULL);
	kfree(fd->slots);
	kfree(fd);
	dev_info(&hdev->device, "fzpc: probe failed (%d)\n", ret);
	return ret;
}

static int fzpc_remove(struct hv_device *hdev)
{
	struct fzpc_dev *fd = hv_get_drvdata(hdev);

	vmbus_close(hdev->channel);
	dev_info(&hdev->device, "fzpc: removed after %u replies\n", fd->replies);
	kfree(fd->slots);
	kfree(fd);
	return 0;
}

static const struct hv_vmbus_device_id fzpc_id_table[] = {
	{ .guid = GUID_INIT(0x3a7e5c91, 0x6f0d, 0x4b2a, 0x9c, 0x84,
			    0x1d, 0x2e, 0x7f, 0x60, 0xb5, 0xa3) },
	{ },
};
MODULE_DEVICE_TABLE(vmbus, fzpc_id_table);

static struct hv_driver fzpc_driver = {
	.name = "fzpc",
	.id_table = fzpc_id_table,
	.probe = fzpc_probe,
	.remove = fzpc_remove,
};

static int __init fzpc_init(void)
{
	return vmbus_driver_register(&fzpc_driver);
}

static void __exit fzpc_exit(void)
{
	vmbus_driver_unregister(&fzpc_driver);
}

module_init(fzpc_init);
module_exit(fzpc_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vmbusd fuzzer positive control: a test VMBus driver with host-triggerable bugs");
