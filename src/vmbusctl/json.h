/* SPDX-License-Identifier: MIT */
/*
 * A small JSON reader for vmbusctl: parses one document into a tree.
 *
 * It accepts RFC 8259 JSON only (no comments, no trailing commas), limits
 * nesting depth, decodes \uXXXX escapes (surrogate pairs included) to UTF-8
 * and refuses strings that would contain NUL.  The input need not be
 * NUL-terminated; nothing is read beyond len bytes.
 */
#ifndef VMBUSCTL_JSON_H
#define VMBUSCTL_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
    enum json_type type;
    bool b;            /* JSON_BOOL */
    double num;        /* JSON_NUMBER */
    char *str;         /* JSON_STRING (UTF-8, NUL-terminated); JSON_NUMBER: source text */
    size_t n;          /* JSON_ARRAY / JSON_OBJECT: number of members */
    char **keys;       /* JSON_OBJECT: member names, in document order */
    struct json **items; /* JSON_ARRAY / JSON_OBJECT: member values */
};

#define JSON_MAX_DEPTH 64

/* Parse text[0..len).  Returns the tree, or NULL with a reason (and the
 * byte offset) in err. */
struct json *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(struct json *j);

/* Member of an object by name (the first one), or NULL (also if j is not an
 * object, so lookups can be chained without checks). */
const struct json *json_get(const struct json *j, const char *key);
/* Element i of an array, or NULL. */
const struct json *json_at(const struct json *j, size_t i);
/* Typed accessors with a fallback for a missing or differently typed value. */
const char *json_str(const struct json *j, const char *fallback);
double json_num(const struct json *j, double fallback);
bool json_bool(const struct json *j, bool fallback);

#endif
