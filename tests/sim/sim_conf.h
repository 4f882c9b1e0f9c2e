/* SPDX-License-Identifier: MIT */
/*
 * What the sim tests of vmbusd's configuration errors share: a private
 * directory with one vmbusd.conf, rewritten for every case, and the check
 * that an error names that file and line (FILE:LINE: reason).
 */
#ifndef VMBUSD_TESTS_SIM_SIM_CONF_H
#define VMBUSD_TESTS_SIM_SIM_CONF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sim_conf {
    char dir[32];
    char path[64];
};

/* Makes the directory; false if it cannot. */
static inline bool sim_conf_open(struct sim_conf *c)
{
    snprintf(c->dir, sizeof(c->dir), "/tmp/vmbusd-conf.XXXXXX");
    if (!mkdtemp(c->dir))
        return false;
    snprintf(c->path, sizeof(c->path), "%s/vmbusd.conf", c->dir);
    return true;
}

/* Writes the file's whole text; false if it cannot. */
__attribute__((format(printf, 2, 3))) static inline bool sim_conf_write(const struct sim_conf *c,
                                                                          const char *fmt, ...)
{
    FILE *fp = fopen(c->path, "w");
    if (!fp)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(fp, fmt, ap);
    va_end(ap);
    return fclose(fp) == 0;
}

/* Whether err begins "PATH:LINE: " and says why further on. */
static inline bool sim_conf_error_is(const struct sim_conf *c, const char *err, int line,
                                     const char *why)
{
    char where[96];
    snprintf(where, sizeof(where), "%s:%d: ", c->path, line);
    return strncmp(err, where, strlen(where)) == 0 && strstr(err, why) != NULL;
}

static inline void sim_conf_close(const struct sim_conf *c)
{
    unlink(c->path);
    rmdir(c->dir);
}

#endif
