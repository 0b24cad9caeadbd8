/* The allocator libssh2 is given (libssh2_session_init_ex): plain malloc for small blocks,
 * private anonymous pages for big ones, so that sshmem_trim can give back the pages of a
 * block that hold only zeros.
 *
 * Why: libssh2 zeroes its whole session struct at init (55 KiB on 1.10, 80 KiB on 1.11.1:
 * two packet buffers of 35000 bytes and an 8 KiB banner), which makes every page of it
 * resident although an idle session touches a few. With hundreds of sessions (API mode,
 * tunnels = N) that was most of the daemon's RSS. Knows nothing of SSH. */
#pragma once

#include <stddef.h>

/* From this size a block gets its own pages: libssh2's session struct, never a packet.
 * Every received packet is a block of up to LIBSSH2_PACKET_MAXPAYLOAD (40000) bytes, freed
 * once read; with pages of its own each one cost an mmap, a page fault per 4 KiB and a TLB
 * flush at munmap, a fifth of the daemon's CPU per GiB received (issue 16). On the heap
 * they are reused. sshcall.c checks the bound against libssh2.h. */
#define SSHMEM_BIG (48 * 1024)

/* The three callbacks, with libssh2's signatures (abstract unused). */
void *sshmem_alloc(size_t size, void **abstract);
void sshmem_free(void *p, void **abstract);
void *sshmem_realloc(void *p, size_t size, void **abstract);

/* Gives back to the kernel every whole page of block p (from sshmem_alloc) that holds only
 * zeros; they read as zeros again, and become resident once written. Returns how many. */
size_t sshmem_trim(void *p);
