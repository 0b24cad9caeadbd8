/* The state directory (SPEC §2): runtime bindings in bindings.d/NAME.ini, written atomically.
 * The files are read back by conf_load(), which owns the INI format. */
#pragma once

#include "conf.h"

/* Where the state lives unless state_dir says otherwise. */
#define STATE_DIR_DEFAULT "/var/lib/mysocketd"

/* Creates STATE_DIR (0700) and STATE_DIR/bindings.d (0700) if missing; refuses one that is not
 * state_trusted(); removes temp files a crash left in the middle of a write. Returns 0 or -errno (*error says what, caller frees). */
int state_init(const char *state_dir, char **error);
/* Checks that STATE_DIR and STATE_DIR/bindings.d are directories owned by our uid that no
 * group or other may write (sshd's StrictModes). Returns 0, or -errno with *error naming
 * the path and the fix (caller frees). */
int state_trusted(const char *state_dir, char **error);
/* A runtime file (st from fstat) is read back as configuration: like sshd's StrictModes,
 * only a file of our own uid that nobody else can write is trusted. Returns 0, or -EPERM
 * with *error (caller frees) saying what and the fix. */
struct stat;
int state_file_trusted(const char *path, const struct stat *st, char **error);
/* STATE_DIR/bindings.d (caller frees). */
char *state_bindings_dir(const char *state_dir);
/* Writes STATE_DIR/bindings.d/NAME.ini atomically (0600). Returns 0 or -errno. */
int state_save_binding(const char *state_dir, const struct binding_conf *b);
/* Removes STATE_DIR/bindings.d/NAME.ini durably. Returns 0 or -errno. */
int state_remove_binding(const char *state_dir, const char *name);
/* The path of NAME's file (caller frees). */
char *state_binding_path(const char *state_dir, const char *name);

/* Local forwards, the same way: STATE_DIR/forwards.d/NAME.ini (0600, atomic), created by
 * state_init; trusted like bindings.d. Each returns 0 or -errno; paths caller-freed. */
char *state_forwards_dir(const char *state_dir);
char *state_forward_path(const char *state_dir, const char *name);
int state_forwards_trusted(const char *state_dir, char **error);
int state_save_forward(const char *state_dir, const struct forward_conf *f);
int state_remove_forward(const char *state_dir, const char *name);

/* The layout, for the modules that read it: STATE_DIR/known_hosts
 * (the default of [ssh] known_hosts). Caller frees. */
char *state_known_hosts_path(const char *state_dir);
/* Appends to *ret the name of every binding that has an ids file (STATE_DIR/ids/NAME.json,
 * NAME a valid binding name). A missing ids directory is an empty list. Returns 0 or -errno. */
int state_ids_names(const char *state_dir, struct strv *ret);
/* STATE_DIR/token: where the API token is kept (caller frees). */
char *state_token_path(const char *state_dir);
/* What the API made for a binding: its socket and its tunnels, in the order the binding
 * uses them (tunnel i serves the binding's tunnel i), each with whether mysocketd created
 * it (only those are ever deleted). */
#define STATE_TUNNELS_MAX 8
struct state_tunnel {
        char *tunnel_id;
        bool created;
};
struct state_ids {
        char *socket_id;
        bool created;                /* the daemon created the socket */
        struct state_tunnel tunnels[STATE_TUNNELS_MAX];
        size_t n_tunnels;
};
void state_ids_clear(struct state_ids *ids);
/* Appends a tunnel (ids must have room: n_tunnels < STATE_TUNNELS_MAX), or drops tunnel i. */
void state_ids_add_tunnel(struct state_ids *ids, const char *tunnel_id, bool created);
void state_ids_drop_tunnel(struct state_ids *ids, size_t i);
/* STATE_DIR/ids/NAME.json (0600, atomic): binding `name`'s state_ids, as
 * {"socket_id", "created", "tunnel_id" (the first, or null), "tunnels": [{"tunnel_id",
 * "created"}]}; a file of before "tunnels" (one "tunnel_id") reads as that one tunnel.
 * Load returns 0 and *ret (state_ids_clear it), -ENOENT when none are recorded, -EBADMSG
 * for a damaged file. Save creates STATE_DIR/ids (0700). Remove treats a missing file as
 * success. Each returns 0 or -errno. */
int state_ids_load(const char *state_dir, const char *name, struct state_ids *ret);
int state_ids_save(const char *state_dir, const char *name, const struct state_ids *ids);
int state_ids_remove(const char *state_dir, const char *name);
