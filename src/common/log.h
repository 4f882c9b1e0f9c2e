/* SPDX-License-Identifier: MIT */
/* Process-wide logging: one line per event, to stderr, with a level tag. */
#ifndef VMBUSD_LOG_H
#define VMBUSD_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info", "debug"; -1 if unknown. */
int log_parse_level(const char *s);
/* Optional hook that sees every line (tests capture logs with it). */
typedef void (*log_sink_fn)(enum log_level lvl, const char *line, void *arg);
void log_set_sink(log_sink_fn fn, void *arg);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap);

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_get_level() >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
