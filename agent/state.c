#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "protocol.h"
#include "state.h"

char *state_binding_path(const char *state_dir, const char *name) {
        return xasprintf("%s/bindings.d/%s.ini", state_dir, name);
}

/* write_file_atomic's temp files ("NAME.tmp.XXXXXX") outlive a crash in mid-write; the
 * real file is intact either way, so they are only litter. */
static void sweep_temp_files(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        if (!d)
                return;
        while ((de = readdir(d)))
                if (fnmatch("*.tmp.??????", de->d_name, FNM_PERIOD) == 0)
                        unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

/* Like sshd's StrictModes: a directory another uid owns or may write to could hold a
 * planted binding. */
static int check_dir(const char *path, char **error) {
        struct stat st;
        if (lstat(path, &st) < 0) {
                int r = -errno;
                *error = xasprintf("cannot stat %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISDIR(st.st_mode)) {
                *error = xasprintf("%s is not a directory; remove it or set another [daemon] state_dir", path);
                return -ENOTDIR;
        }
        if (st.st_uid != geteuid()) {
                *error = xasprintf("%s is owned by uid %u, not by uid %u that mysocketd runs as; not trusted "
                                   "(chown %u %s, or set another [daemon] state_dir)", path, (unsigned) st.st_uid,
                                   (unsigned) geteuid(), (unsigned) geteuid(), path);
                return -EPERM;
        }
        if (st.st_mode & 022) {
                *error = xasprintf("%s is writable by group or others (mode %04o); not trusted (chmod 700 %s)",
                                   path, (unsigned) (st.st_mode & 07777), path);
                return -EPERM;
        }
        return 0;
}

int state_file_trusted(const char *path, const struct stat *st, char **error) {
        if (st->st_uid != geteuid()) {
                *error = xasprintf("is owned by uid %u, not by uid %u that mysocketd runs as; not trusted "
                                   "(chown %u %s, or remove it)", (unsigned) st->st_uid, (unsigned) geteuid(),
                                   (unsigned) geteuid(), path);
                return -EPERM;
        }
        if (st->st_mode & 022) {
                *error = xasprintf("is writable by group or others (mode %04o); not trusted (chmod 600 %s)",
                                   (unsigned) (st->st_mode & 07777), path);
                return -EPERM;
        }
        return 0;
}

int state_trusted(const char *state_dir, char **error) {
        _cleanup_(freep) char *dir = state_bindings_dir(state_dir);
        int r = check_dir(state_dir, error);
        return r < 0 ? r : check_dir(dir, error);
}

int state_forwards_trusted(const char *state_dir, char **error) {
        _cleanup_(freep) char *dir = state_forwards_dir(state_dir);
        int r = check_dir(state_dir, error);
        return r < 0 ? r : check_dir(dir, error);
}

char *state_forwards_dir(const char *state_dir) {
        return xasprintf("%s/forwards.d", state_dir);
}

char *state_forward_path(const char *state_dir, const char *name) {
        return xasprintf("%s/forwards.d/%s.ini", state_dir, name);
}

int state_save_forward(const char *state_dir, const struct forward_conf *f) {
        _cleanup_(freep) char *path = state_forward_path(state_dir, f->name);
        _cleanup_(freep) char *text = conf_forward_to_ini(f);
        return write_file_atomic(path, text, strlen(text), 0600);
}

int state_remove_forward(const char *state_dir, const char *name) {
        _cleanup_(freep) char *path = state_forward_path(state_dir, name);
        return unlink_durable(path);
}

char *state_bindings_dir(const char *state_dir) {
        return xasprintf("%s/bindings.d", state_dir);
}

int state_init(const char *state_dir, char **error) {
        _cleanup_(freep) char *dir = state_bindings_dir(state_dir), *fdir = state_forwards_dir(state_dir);
        int r = mkdir_p(dir, 0700);
        if (r >= 0)
                r = mkdir_p(fdir, 0700);
        if (r < 0) {
                *error = xasprintf("cannot create state directory %s: %s", dir, strerror(-r));
                return r;
        }
        /* Runtime bindings are read back as configuration: nobody else may plant one. */
        r = state_trusted(state_dir, error);
        if (r >= 0)
                r = state_forwards_trusted(state_dir, error);
        if (r < 0)
                return r;
        const char *subdirs[] = { "", "/bindings.d", "/forwards.d", "/ids" };
        for (size_t i = 0; i < ELEMENTSOF(subdirs); i++) {
                _cleanup_(freep) char *p = xasprintf("%s%s", state_dir, subdirs[i]);
                sweep_temp_files(p);
        }
        return 0;
}

int state_save_binding(const char *state_dir, const struct binding_conf *b) {
        _cleanup_(freep) char *path = state_binding_path(state_dir, b->name);
        _cleanup_(freep) char *text = conf_binding_to_ini(b);
        return write_file_atomic(path, text, strlen(text), 0600);
}

int state_remove_binding(const char *state_dir, const char *name) {
        _cleanup_(freep) char *path = state_binding_path(state_dir, name);
        return unlink_durable(path);
}

/* ---- the layout, for the modules that read it (so that no other file spells a path) ---- */

char *state_known_hosts_path(const char *state_dir) {
        return xasprintf("%s/known_hosts", state_dir);
}

int state_ids_names(const char *state_dir, struct strv *ret) {
        _cleanup_(freep) char *dir = xasprintf("%s/ids", state_dir);
        struct dirent *de;
        DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                size_t n = strlen(de->d_name);
                if (n <= 5 || !streq(de->d_name + n - 5, ".json"))
                        continue;
                char *name = xasprintf("%.*s", (int) (n - 5), de->d_name);
                if (binding_name_valid(name))
                        strv_push(ret, name);
                else
                        free(name);
        }
        closedir(d);
        return 0;
}

/* ---- the API's token and each binding's remote ids ------------------------------------ */

char *state_token_path(const char *state_dir) {
        return xasprintf("%s/token", state_dir);
}

static char *ids_path(const char *state_dir, const char *name) {
        return xasprintf("%s/ids/%s.json", state_dir, name);
}

void state_ids_clear(struct state_ids *ids) {
        free(ids->socket_id);
        for (size_t i = 0; i < ids->n_tunnels; i++)
                free(ids->tunnels[i].tunnel_id);
        *ids = (struct state_ids) { 0 };
}

void state_ids_add_tunnel(struct state_ids *ids, const char *tunnel_id, bool created) {
        if (ids->n_tunnels >= STATE_TUNNELS_MAX)
                abort();        /* the callers' invariant: never more than the most tunnels wanted */
        ids->tunnels[ids->n_tunnels++] = (struct state_tunnel) { xstrdup(tunnel_id), created };
}

void state_ids_drop_tunnel(struct state_ids *ids, size_t i) {
        free(ids->tunnels[i].tunnel_id);
        memmove(&ids->tunnels[i], &ids->tunnels[i + 1], (ids->n_tunnels - i - 1) * sizeof(ids->tunnels[0]));
        ids->n_tunnels--;
}

static int ids_from_json(const cJSON *j, struct state_ids *ids) {
        const char *sid = NULL, *tid = NULL;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "tunnels"), *t;
        _cleanup_(freep) char *e = NULL;
        if (!cJSON_IsObject(j) || proto_get_string(j, "socket_id", true, &sid, &e) < 0 ||
            proto_get_string(j, "tunnel_id", false, &tid, &e) < 0 ||
            proto_get_bool(j, "created", false, &ids->created, &e) < 0 || !remote_id_valid(sid) ||
            (tid && !remote_id_valid(tid)) || (a && !cJSON_IsArray(a)) ||
            cJSON_GetArraySize(a) > STATE_TUNNELS_MAX)
                return -EBADMSG;
        ids->socket_id = xstrdup(sid);
        if (!a) {               /* a file of one tunnel, from before "tunnels" */
                if (tid)
                        state_ids_add_tunnel(ids, tid, ids->created);
                return 0;
        }
        cJSON_ArrayForEach(t, a) {
                bool created = false;
                if (!cJSON_IsObject(t) || proto_get_string(t, "tunnel_id", true, &tid, &e) < 0 ||
                    proto_get_bool(t, "created", false, &created, &e) < 0 || !remote_id_valid(tid))
                        return -EBADMSG;
                state_ids_add_tunnel(ids, tid, created);
        }
        return 0;
}

int state_ids_load(const char *state_dir, const char *name, struct state_ids *ret) {
        if (!binding_name_valid(name))
                return -EINVAL;
        _cleanup_(freep) char *path = ids_path(state_dir, name);
        char buf[8192];
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        int saved = errno;
        close(fd);
        if (n < 0)
                return -saved;
        buf[n] = '\0';

        cJSON *j = cJSON_ParseWithLength(buf, (size_t) n);
        struct state_ids ids = { 0 };
        int r = ids_from_json(j, &ids);
        cJSON_Delete(j);
        if (r < 0) {
                state_ids_clear(&ids);
                return r;
        }
        *ret = ids;
        return 0;
}

int state_ids_save(const char *state_dir, const char *name, const struct state_ids *ids) {
        if (!binding_name_valid(name) || !remote_id_valid(ids->socket_id) || ids->n_tunnels > STATE_TUNNELS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < ids->n_tunnels; i++)
                if (!remote_id_valid(ids->tunnels[i].tunnel_id))
                        return -EINVAL;
        _cleanup_(freep) char *dir = xasprintf("%s/ids", state_dir);
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "socket_id", ids->socket_id);
        /* The first tunnel as before, so that an older mysocketd still finds one. */
        if (ids->n_tunnels)
                cJSON_AddStringToObject(j, "tunnel_id", ids->tunnels[0].tunnel_id);
        else
                cJSON_AddNullToObject(j, "tunnel_id");
        cJSON_AddBoolToObject(j, "created", ids->created);
        cJSON *a = cJSON_AddArrayToObject(j, "tunnels");
        for (size_t i = 0; i < ids->n_tunnels; i++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "tunnel_id", ids->tunnels[i].tunnel_id);
                cJSON_AddBoolToObject(t, "created", ids->tunnels[i].created);
                cJSON_AddItemToArray(a, t);
        }
        char *text = cJSON_Print(j);
        cJSON_Delete(j);
        if (!text)
                abort();
        _cleanup_(freep) char *data = xasprintf("%s\n", text);
        cJSON_free(text);
        _cleanup_(freep) char *path = ids_path(state_dir, name);
        return write_file_atomic(path, data, strlen(data), 0600);
}

int state_ids_remove(const char *state_dir, const char *name) {
        if (!binding_name_valid(name))
                return -EINVAL;
        _cleanup_(freep) char *path = ids_path(state_dir, name);
        return unlink_durable(path);
}
