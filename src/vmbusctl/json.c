/* SPDX-License-Identifier: MIT */
/* vmbusctl's JSON reader: recursive descent over a bounded buffer. */
#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *s;
    size_t len, pos;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
};

static void fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    if (!p->err || !p->errlen)
        return;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s at byte %zu", what, p->pos);
}

static int peek(const struct parser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static bool literal(struct parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

static struct json *node(struct parser *p, enum json_type t)
{
    struct json *j = calloc(1, sizeof(*j));
    if (!j)
        fail(p, "out of memory");
    else
        j->type = t;
    return j;
}

/* ---- strings ---------------------------------------------------------- */

struct buf {
    char *s;
    size_t len, cap;
};

static bool buf_put(struct parser *p, struct buf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            fail(p, "out of memory");
            return false;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = 0;
    return true;
}

static bool put_utf8(struct parser *p, struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return buf_put(p, b, u, n);
}

static int hex4(struct parser *p, uint32_t *out)
{
    if (p->len - p->pos < 4) {
        fail(p, "truncated \\u escape");
        return -1;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else {
            fail(p, "bad hex digit in \\u escape");
            return -1;
        }
    }
    p->pos += 4;
    *out = v;
    return 0;
}

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

static char *parse_string_raw(struct parser *p)
{
    struct buf b = {0};
    if (!buf_put(p, &b, "", 0))
        return NULL;
    p->pos++; /* opening quote */
    for (;;) {
        if (p->pos >= p->len) {
            fail(p, "unterminated string");
            goto bad;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            return b.s;
        }
        if (c < 0x20) {
            fail(p, "control character in string");
            goto bad;
        }
        if (c != '\\') {
            size_t n = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (!n) {
                fail(p, "invalid UTF-8 in string");
                goto bad;
            }
            if (!buf_put(p, &b, p->s + p->pos, n))
                goto bad;
            p->pos += n;
            continue;
        }
        p->pos++;
        if (p->pos >= p->len) {
            fail(p, "unterminated escape");
            goto bad;
        }
        char e = p->s[p->pos++];
        const char *lit = NULL;
        switch (e) {
        case '"': lit = "\""; break;
        case '\\': lit = "\\"; break;
        case '/': lit = "/"; break;
        case 'b': lit = "\b"; break;
        case 'f': lit = "\f"; break;
        case 'n': lit = "\n"; break;
        case 'r': lit = "\r"; break;
        case 't': lit = "\t"; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, &cp) < 0)
                goto bad;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    fail(p, "unpaired surrogate in \\u escape");
                    goto bad;
                }
                p->pos += 2;
                if (hex4(p, &lo) < 0)
                    goto bad;
                if (lo < 0xdc00 || lo > 0xdfff) {
                    fail(p, "unpaired surrogate in \\u escape");
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                fail(p, "unpaired surrogate in \\u escape");
                goto bad;
            } else if (cp == 0) {
                fail(p, "\\u0000 in string");
                goto bad;
            }
            if (!put_utf8(p, &b, cp))
                goto bad;
            continue;
        }
        default:
            p->pos--;
            fail(p, "bad escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
            goto bad;
        }
        if (!buf_put(p, &b, lit, 1))
            goto bad;
    }
bad:
    free(b.s);
    return NULL;
}

/* ---- numbers ---------------------------------------------------------- */

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static struct json *parse_number(struct parser *p)
{
    size_t start = p->pos;
    if (peek(p) == '-')
        p->pos++;
    if (peek(p) == '0') {
        p->pos++;
    } else if (is_digit(peek(p))) {
        while (is_digit(peek(p)))
            p->pos++;
    } else {
        fail(p, "bad number");
        return NULL;
    }
    if (peek(p) == '.') {
        p->pos++;
        if (!is_digit(peek(p))) {
            fail(p, "bad number: digit expected after '.'");
            return NULL;
        }
        while (is_digit(peek(p)))
            p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-')
            p->pos++;
        if (!is_digit(peek(p))) {
            fail(p, "bad number: digit expected in exponent");
            return NULL;
        }
        while (is_digit(peek(p)))
            p->pos++;
    }
    struct json *j = node(p, JSON_NUMBER);
    if (!j)
        return NULL;
    size_t n = p->pos - start;
    j->str = malloc(n + 1);
    if (!j->str) {
        fail(p, "out of memory");
        free(j);
        return NULL;
    }
    memcpy(j->str, p->s + start, n);
    j->str[n] = 0;
    j->num = strtod(j->str, NULL);
    return j;
}

/* ---- containers ------------------------------------------------------- */

static struct json *parse_value(struct parser *p);

static bool add_member(struct parser *p, struct json *j, char *key, struct json *v)
{
    /* grow by doubling: capacity is the next power of two >= n */
    size_t n = j->n;
    if ((n & (n - 1)) == 0) {
        size_t cap = n ? n * 2 : 4;
        struct json **ni = realloc(j->items, cap * sizeof(*ni));
        if (!ni) {
            fail(p, "out of memory");
            return false;
        }
        j->items = ni;
        if (j->type == JSON_OBJECT) {
            char **nk = realloc(j->keys, cap * sizeof(*nk));
            if (!nk) {
                fail(p, "out of memory");
                return false;
            }
            j->keys = nk;
        }
    }
    if (j->type == JSON_OBJECT)
        j->keys[n] = key;
    j->items[n] = v;
    j->n = n + 1;
    return true;
}

static struct json *parse_container(struct parser *p, bool object)
{
    char close = object ? '}' : ']';
    if (++p->depth > JSON_MAX_DEPTH) {
        fail(p, "nesting deeper than %d", JSON_MAX_DEPTH);
        return NULL;
    }
    p->pos++; /* [ or { */
    struct json *j = node(p, object ? JSON_OBJECT : JSON_ARRAY);
    if (!j)
        return NULL;
    skip_ws(p);
    if (peek(p) == close) {
        p->pos++;
        p->depth--;
        return j;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(p);
        if (object) {
            if (peek(p) != '"') {
                fail(p, "member name expected");
                goto bad;
            }
            key = parse_string_raw(p);
            if (!key)
                goto bad;
            skip_ws(p);
            if (peek(p) != ':') {
                free(key);
                fail(p, "':' expected");
                goto bad;
            }
            p->pos++;
        }
        struct json *v = parse_value(p);
        if (!v || !add_member(p, j, key, v)) {
            free(key);
            json_free(v);
            goto bad;
        }
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == close)
            break;
        if (c != ',') {
            p->pos--;
            fail(p, "',' or '%c' expected", close);
            goto bad;
        }
    }
    p->depth--;
    return j;
bad:
    json_free(j);
    return NULL;
}

static struct json *parse_value(struct parser *p)
{
    skip_ws(p);
    int c = peek(p);
    struct json *j;
    switch (c) {
    case '{': return parse_container(p, true);
    case '[': return parse_container(p, false);
    case '"': {
        char *s = parse_string_raw(p);
        if (!s)
            return NULL;
        j = node(p, JSON_STRING);
        if (!j) {
            free(s);
            return NULL;
        }
        j->str = s;
        return j;
    }
    case 't':
    case 'f':
        if (literal(p, c == 't' ? "true" : "false")) {
            j = node(p, JSON_BOOL);
            if (j)
                j->b = c == 't';
            return j;
        }
        break;
    case 'n':
        if (literal(p, "null"))
            return node(p, JSON_NULL);
        break;
    case -1:
        fail(p, "unexpected end of input");
        return NULL;
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p);
        break;
    }
    fail(p, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
    return NULL;
}

struct json *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct parser p = {.s = text, .len = len, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = 0;
    struct json *j = parse_value(&p);
    if (!j)
        return NULL;
    skip_ws(&p);
    if (p.pos != p.len) {
        fail(&p, "trailing data after the JSON value");
        json_free(j);
        return NULL;
    }
    return j;
}

void json_free(struct json *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++) {
        if (j->keys)
            free(j->keys[i]);
        json_free(j->items[i]);
    }
    free(j->keys);
    free(j->items);
    free(j->str);
    free(j);
}

const struct json *json_get(const struct json *j, const char *key)
{
    if (!j || j->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < j->n; i++)
        if (strcmp(j->keys[i], key) == 0)
            return j->items[i];
    return NULL;
}

const struct json *json_at(const struct json *j, size_t i)
{
    if (!j || j->type != JSON_ARRAY || i >= j->n)
        return NULL;
    return j->items[i];
}

const char *json_str(const struct json *j, const char *fallback)
{
    return j && j->type == JSON_STRING ? j->str : fallback;
}

double json_num(const struct json *j, double fallback)
{
    return j && j->type == JSON_NUMBER ? j->num : fallback;
}

bool json_bool(const struct json *j, bool fallback)
{
    return j && j->type == JSON_BOOL ? j->b : fallback;
}
