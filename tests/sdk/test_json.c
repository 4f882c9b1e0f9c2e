/* SPDX-License-Identifier: MIT */
/* vmbusctl's JSON reader: what vmbusd sends, and what it must refuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static int failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

static struct json *parse(const char *s)
{
    char err[128];
    return json_parse(s, strlen(s), err, sizeof(err));
}

static void refuse(const char *s)
{
    char err[128] = "";
    struct json *j = json_parse(s, strlen(s), err, sizeof(err));
    if (j || !err[0]) {
        fprintf(stderr, "FAIL: accepted or no reason: %s\n", s);
        failures++;
    }
    json_free(j);
}

int main(void)
{
    /* a "list" answer as vmbusd writes it */
    const char *list =
        "{\"ok\":true,\"partitions\":[{\"id\":1,\"name\":\"web\",\"vcpus\":2,\"connected\":true,"
        "\"version\":\"5.3\",\"messages_in\":12,\"messages_out\":14,\"guest_errors\":0,"
        "\"channels\":[{\"relid\":1,\"class\":\"57164f39-9115-4e78-ab55-382f3bd5422d\","
        "\"instance\":\"7c6a1f4e-3b7d-4f0e-9c31-5a0d2e8b4f01\",\"subchannel\":0,"
        "\"state\":\"open\",\"target_vp\":0,\"in_fill_pct\":0,\"out_fill_pct\":3}],"
        "\"status\":{\"heartbeat.seq\":\"42\",\"kvp.2.OSName\":\"Linux \\\"x\\\"\\u001b\"}}]}";
    struct json *j = parse(list);
    CHECK(j != NULL);
    CHECK(json_bool(json_get(j, "ok"), false));
    const struct json *p = json_at(json_get(j, "partitions"), 0);
    CHECK(p && strcmp(json_str(json_get(p, "name"), ""), "web") == 0);
    CHECK(json_num(json_get(p, "vcpus"), 0) == 2);
    CHECK(json_num(json_get(json_at(json_get(p, "channels"), 0), "out_fill_pct"), 0) == 3);
    CHECK(strcmp(json_str(json_get(json_get(p, "status"), "kvp.2.OSName"), ""),
                 "Linux \"x\"\x1b") == 0);
    CHECK(json_get(p, "missing") == NULL && json_at(json_get(p, "name"), 0) == NULL);
    CHECK(json_get(NULL, "x") == NULL);
    json_free(j);

    /* escapes, surrogate pairs, UTF-8 passthrough, numbers, whitespace */
    j = parse(" [ \"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\", \"\xc3\xa9\", -0.5e+2, 0, null,"
              " false , {} , [] ] ");
    CHECK(j && j->type == JSON_ARRAY && j->n == 8);
    if (j && j->n == 8) {
        CHECK(strcmp(j->items[0]->str, "\xc3\xa9\xf0\x9f\x98\x80/\b\f\n\r\t") == 0);
        CHECK(strcmp(j->items[1]->str, "\xc3\xa9") == 0);
        CHECK(j->items[2]->num == -50.0);
        CHECK(j->items[4]->type == JSON_NULL && j->items[5]->type == JSON_BOOL);
        CHECK(j->items[6]->type == JSON_OBJECT && j->items[6]->n == 0);
    }
    json_free(j);

    /* depth: 64 levels are fine, 65 are not */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    j = parse(deep);
    CHECK(j != NULL);
    json_free(j);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    refuse(deep);

    refuse("");
    refuse("{");
    refuse("{\"a\":1,}");
    refuse("[1,]");
    refuse("[1 2]");
    refuse("{\"a\" 1}");
    refuse("{1:2}");
    refuse("\"unterminated");
    refuse("\"tab\there\"");
    refuse("\"\\x41\"");
    refuse("\"\\u12\"");
    refuse("\"\\ud800\"");
    refuse("\"\\udc00x\"");
    refuse("\"\\u0000\"");
    refuse("\"\xc3\"");
    refuse("\"\xc0\xaf\"");
    refuse("\"\xed\xa0\x80\"");
    refuse("01");
    refuse("1.");
    refuse("-");
    refuse("1e");
    refuse("tru");
    refuse("nul");
    refuse("{} x");
    refuse("{}{}");
    /* a NUL inside the buffer is not the end of the document */
    char withnul[] = "{}\0garbage";
    char err[64];
    j = json_parse(withnul, sizeof(withnul) - 1, err, sizeof(err));
    CHECK(j == NULL);
    json_free(j);
    /* nothing is read beyond len */
    j = json_parse("[1]]]]", 3, err, sizeof(err));
    CHECK(j != NULL);
    json_free(j);

    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    else
        printf("json: all checks passed\n");
    return failures ? 1 : 0;
}
