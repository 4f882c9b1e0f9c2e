/* SPDX-License-Identifier: MIT */
/*
 * One disk as the configuration ("storvsp.disk = ...") and vmbusctl
 * ("disk add VM ...") name it:  PATH [lun=N] [controller=N] [readonly]
 */
#ifndef VMBUSD_STORVSP_DISK_SPEC_H
#define VMBUSD_STORVSP_DISK_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#define SV_MAX_CONTROLLERS 4 /* Hyper-V's SCSI controllers per VM */
#define SV_MAX_LUNS 64       /* Hyper-V's disks per SCSI controller */
#define SV_PATH_MAX 512

struct disk_spec {
    char path[SV_PATH_MAX];
    int lun;        /* -1: not given (the lowest free one is taken) */
    int controller; /* 0 when not given */
    bool readonly;
};

/* Parse text; 0, or -1 with the reason in err. */
int disk_spec_parse(const char *text, struct disk_spec *out, char *err, size_t errlen);
/* "[controller=N] lun=N" of disk remove: 0 or -1 with the reason. */
int disk_spec_parse_where(const char *text, int *controller, int *lun, char *err, size_t errlen);

#endif
