/* libFuzzer: rapi-server's configuration parser (engine/conf.c) on a
 * buffer, then the cross-field checks and the -o assignment form.
 * Sources: this file includes engine/conf.c itself, so it links with the
 * proto/ sources the fuzz rule already passes (conf.c needs proto/addr.c);
 * no engine/ object is needed. If conf.c is later linked separately, the
 * rule must add engine/conf.c (not engine/log.c: conf.c does not log). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conf.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())
#define FUZZ_ERR 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct conf c, d;
    char err[FUZZ_ERR];
    char *buf = malloc(size ? size : 1);

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    conf_defaults(&c);
    err[0] = '\0';
    int r = conf_parse(&c, buf, size, "fuzz.conf", err, sizeof(err));
    CHECK(r == 0 || r == -EINVAL);
    CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    CHECK(c.nlisten >= 0 && c.nlisten <= CONF_MAX_LISTEN);
    for (int i = 0; i < c.nlisten; i++)
        CHECK(strnlen(c.listen[i], sizeof(c.listen[i])) < sizeof(c.listen[i]));
    CHECK(strnlen(c.keys, sizeof(c.keys)) < sizeof(c.keys));
    CHECK(strnlen(c.admin, sizeof(c.admin)) < sizeof(c.admin));
    if (r == 0) {
        int v = conf_validate(&c, err, sizeof(err));
        CHECK(v == 0 || v == -EINVAL);
    }
    /* The same text as one -o KEYWORD=VALUE, NUL-terminated at the first NUL. */
    char *a = malloc(size + 1);
    if (a != NULL) {
        memcpy(a, data, size);
        a[size] = '\0';
        conf_defaults(&d);
        int s = conf_set_assignment(&d, a, err, sizeof(err));
        CHECK(s == 0 || s == -EINVAL);
        free(a);
    }
    free(buf);
    return 0;
}
