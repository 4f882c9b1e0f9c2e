/* SPDX-License-Identifier: MIT */
#include "disk_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "name=N" with N in 0..max; 1 matched (value in *v), 0 not this name, -1 bad value. */
static int num_opt(const char *tok, const char *name, int max, int *v)
{
    size_t n = strlen(name);
    if (strncmp(tok, name, n) != 0 || tok[n] != '=')
        return 0;
    const char *s = tok + n + 1;
    char *end;
    long x = strtol(s, &end, 10);
    if (!*s || *end || x < 0 || x > max)
        return -1;
    *v = (int)x;
    return 1;
}

/* The options in s (modified): after the path, or all of remove's text. */
static int parse_opts(char *s, struct disk_spec *out, bool allow_ro, char *err, size_t errlen)
{
    char *save = NULL;
    char empty[1] = "";
    for (char *tok = strtok_r(s ? s : empty, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        int r;
        if ((r = num_opt(tok, "lun", SV_MAX_LUNS - 1, &out->lun)) != 0) {
            if (r < 0) {
                snprintf(err, errlen, "'%s': lun must be 0..%d", tok, SV_MAX_LUNS - 1);
                return -1;
            }
        } else if ((r = num_opt(tok, "controller", SV_MAX_CONTROLLERS - 1, &out->controller))) {
            if (r < 0) {
                snprintf(err, errlen, "'%s': controller must be 0..%d", tok,
                         SV_MAX_CONTROLLERS - 1);
                return -1;
            }
        } else if (allow_ro && strcmp(tok, "readonly") == 0) {
            out->readonly = true;
        } else {
            snprintf(err, errlen, "unknown disk option '%s' (expected %s)", tok,
                     allow_ro ? "lun=N, controller=N or readonly" : "lun=N or controller=N");
            return -1;
        }
    }
    return 0;
}

int disk_spec_parse(const char *text, struct disk_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->lun = -1;
    char buf[1024];
    if (strlen(text) >= sizeof(buf)) {
        snprintf(err, errlen, "disk line too long");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", text);
    char *save = NULL;
    char *path = strtok_r(buf, " \t", &save);
    if (!path) {
        snprintf(err, errlen, "expected PATH [lun=N] [controller=N] [readonly]");
        return -1;
    }
    if (strlen(path) >= sizeof(out->path)) {
        snprintf(err, errlen, "disk path longer than %zu bytes", sizeof(out->path) - 1);
        return -1;
    }
    if (path[0] != '/') {
        /* vmbusd runs from / under systemd: a relative path would mean
         * something else there than where it was written. */
        snprintf(err, errlen, "disk path '%s' is not absolute", path);
        return -1;
    }
    snprintf(out->path, sizeof(out->path), "%s", path);
    return parse_opts(save, out, true, err, errlen);
}

int disk_spec_parse_where(const char *text, int *controller, int *lun, char *err, size_t errlen)
{
    struct disk_spec s = {.lun = -1};
    char buf[256];
    if (strlen(text) >= sizeof(buf)) {
        snprintf(err, errlen, "arguments too long");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", text);
    if (parse_opts(buf, &s, false, err, errlen) < 0)
        return -1;
    if (s.lun < 0) {
        snprintf(err, errlen, "which disk? expected [controller=N] lun=N");
        return -1;
    }
    *controller = s.controller;
    *lun = s.lun;
    return 0;
}
