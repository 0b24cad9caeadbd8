/* Remembered secrets and the masking of them. The list is short (a password, a token, a
 * few protected passwords), so a linear scan per text is cheap. */
#include <stdlib.h>
#include <string.h>

#include "scrub.h"
#include "util.h"

struct secret {
        char *text;
        size_t len;
        unsigned refs;
};

static struct secret *secrets;
static size_t n_secrets;

static struct secret *find(const char *s) {
        for (size_t i = 0; i < n_secrets; i++)
                if (streq(secrets[i].text, s))
                        return &secrets[i];
        return NULL;
}

void scrub_add(const char *secret) {
        if (!secret || strlen(secret) < SCRUB_MIN)
                return;
        struct secret *p = find(secret);
        if (p) {
                p->refs++;
                return;
        }
        secrets = xrealloc(secrets, (n_secrets + 1) * sizeof(*secrets));
        secrets[n_secrets++] = (struct secret) { xstrdup(secret), strlen(secret), 1 };
}

static void drop(size_t i) {
        explicit_bzero(secrets[i].text, secrets[i].len);
        free(secrets[i].text);
        secrets[i] = secrets[--n_secrets];
}

void scrub_remove(const char *secret) {
        struct secret *p = secret ? find(secret) : NULL;
        if (p && --p->refs == 0)
                drop((size_t) (p - secrets));
}

char *scrub_secrets(char *s) {
        if (!s)
                return s;
        /* Longest first would matter only for secrets that contain each other; a mask
         * left by a shorter one still hides the longer one's middle. */
        for (size_t i = 0; i < n_secrets; i++) {
                const struct secret *p = &secrets[i];
                size_t mask = strlen(SCRUB_MASK);
                char *from = s, *hit;
                while ((hit = strstr(from, p->text))) {
                        memcpy(hit, SCRUB_MASK, mask);
                        memmove(hit + mask, hit + p->len, strlen(hit + p->len) + 1);
                        from = hit + mask;     /* a secret may contain the mask itself */
                }
        }
        return s;
}

void scrub_clear(void) {
        while (n_secrets > 0)
                drop(n_secrets - 1);
        free(secrets);
        secrets = NULL;
}

void scrub_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}
