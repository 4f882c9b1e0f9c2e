/* SPDX-License-Identifier: MIT */
/* GUIDs in the mixed-endian memory order Windows and Linux use. */
#ifndef VMBUSD_GUID_H
#define VMBUSD_GUID_H

#include <stdbool.h>
#include "vmbusd/hv_wire.h"

#define GUID_STR_LEN 37 /* 36 characters + NUL */

/* "57164f39-9115-4e78-ab55-382f3bd5422d" -> memory order; 0 or -EINVAL. */
int guid_parse(const char *s, struct hv_guid *g);
/* Memory order -> canonical text. */
void guid_format(const struct hv_guid *g, char out[GUID_STR_LEN]);
bool guid_equal(const struct hv_guid *a, const struct hv_guid *b);

#endif
