/* SPDX-License-Identifier: MIT */
#include "common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level cur_level = LOG_INFO;
static log_sink_fn sink;
static void *sink_arg;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level lvl) { cur_level = lvl; }
enum log_level log_get_level(void) { return cur_level; }

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return LOG_WARN;
    return -1;
}

void log_set_sink(log_sink_fn fn, void *arg)
{
    pthread_mutex_lock(&log_lock);
    sink = fn;
    sink_arg = arg;
    pthread_mutex_unlock(&log_lock);
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl > cur_level)
        return;
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "[%5ld.%03ld] %-5s %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000L,
            level_names[lvl], line);
    if (sink)
        sink(lvl, line, sink_arg);
    pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lvl, fmt, ap);
    va_end(ap);
}
