/* The allocator libssh2 is given (see sshmem.h). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sshmem.h"

/* In front of every block: its size, and whether it is mapped (then the mapping starts at
 * the header). 16 bytes keep the block aligned for any type. */
struct header {
        size_t size;
        size_t mapped;
};

static struct header *header_of(void *p) {
        return (struct header *) p - 1;
}

void *sshmem_alloc(size_t size, void **abstract) {
        struct header *h;
        (void) abstract;
        if (size > SIZE_MAX - sizeof(*h))
                return NULL;
        if (size < SSHMEM_BIG) {
                h = malloc(sizeof(*h) + size);
                if (!h)
                        return NULL;
                *h = (struct header) { .size = size, .mapped = 0 };
        } else {
                void *m = mmap(NULL, sizeof(*h) + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED)
                        return NULL;
                h = m;
                *h = (struct header) { .size = size, .mapped = 1 };
        }
        return h + 1;
}

void sshmem_free(void *p, void **abstract) {
        (void) abstract;
        if (!p)
                return;
        struct header *h = header_of(p);
        if (h->mapped)
                (void) munmap(h, sizeof(*h) + h->size);
        else
                free(h);
}

void *sshmem_realloc(void *p, size_t size, void **abstract) {
        if (!p)
                return sshmem_alloc(size, abstract);
        struct header *h = header_of(p);
        if (!h->mapped && size < SSHMEM_BIG) {
                struct header *n = realloc(h, sizeof(*h) + size);
                if (!n)
                        return NULL;
                n->size = size;
                return n + 1;
        }
        void *n = sshmem_alloc(size, abstract);
        if (!n)
                return NULL;
        memcpy(n, p, h->size < size ? h->size : size);
        sshmem_free(p, abstract);
        return n;
}

static bool page_is_zero(const unsigned char *page, size_t len) {
        const uint64_t *w = (const uint64_t *) page;
        for (size_t i = 0; i < len / sizeof(*w); i++)
                if (w[i])
                        return false;
        return true;
}

size_t sshmem_trim(void *p) {
        struct header *h = header_of(p);
        size_t page = (size_t) sysconf(_SC_PAGESIZE), n = 0;
        if (!h->mapped)
                return 0;
        /* The mapping is ours from its first page (the header: never zero) to the end of
         * its last, whose slack past the block is zero too. */
        size_t len = (sizeof(*h) + h->size + page - 1) / page * page;
        for (size_t off = 0; off < len; off += page)
                if (page_is_zero((const unsigned char *) h + off, page) &&
                    madvise((unsigned char *) h + off, page, MADV_DONTNEED) == 0)
                        n++;
        return n;
}
