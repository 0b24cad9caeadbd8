/* The state directory (SPEC §2): runtime bindings in bindings.d/NAME.ini, written atomically.
 * The files are read back by conf_load(), which owns the INI format. */
#pragma once

#include "conf.h"

/* Creates STATE_DIR (0700) and STATE_DIR/bindings.d (0700) if missing; refuses one that is not
 * state_trusted(); removes temp files a crash left in the middle of a write. Returns 0 or -errno (*error says what, caller frees). */
int state_init(const char *state_dir, char **error);
/* Checks that STATE_DIR and STATE_DIR/bindings.d are directories owned by our uid that no
 * group or other may write (sshd's StrictModes). Returns 0, or -errno with *error naming
 * the path and the fix (caller frees). */
int state_trusted(const char *state_dir, char **error);
/* STATE_DIR/bindings.d (caller frees). */
char *state_bindings_dir(const char *state_dir);
/* Writes STATE_DIR/bindings.d/NAME.ini atomically (0600). Returns 0 or -errno. */
int state_save_binding(const char *state_dir, const struct binding_conf *b);
/* Removes STATE_DIR/bindings.d/NAME.ini durably. Returns 0 or -errno. */
int state_remove_binding(const char *state_dir, const char *name);
/* The path of NAME's file (caller frees). */
char *state_binding_path(const char *state_dir, const char *name);
