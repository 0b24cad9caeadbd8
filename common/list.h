/* Intrusive doubly linked lists with a head and a tail (after systemd's list.h): an item
 * has `prev` and `next` fields, the owner a head and a tail pointer. */
#pragma once

#include <stddef.h>

#define LIST_APPEND(head, tail, item)                   \
        do {                                            \
                (item)->next = NULL;                    \
                (item)->prev = (tail);                  \
                if (tail)                               \
                        (tail)->next = (item);          \
                else                                    \
                        (head) = (item);                \
                (tail) = (item);                        \
        } while (0)

#define LIST_REMOVE(head, tail, item)                   \
        do {                                            \
                if ((item)->prev)                       \
                        (item)->prev->next = (item)->next; \
                else                                    \
                        (head) = (item)->next;          \
                if ((item)->next)                       \
                        (item)->next->prev = (item)->prev; \
                else                                    \
                        (tail) = (item)->prev;          \
                (item)->prev = (item)->next = NULL;     \
        } while (0)
