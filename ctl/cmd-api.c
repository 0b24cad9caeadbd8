/* The API's objects, through the daemon, which holds the token (SPEC §6): account,
 * socket and tunnel. These only build requests and print replies; the wire shapes are in
 * docs/PROTOCOL.md. */
#include "commands.h"

#include <getopt.h>
#include <stdlib.h>

#include "output.h"
#include "protocol.h"
#include "util.h"

static char *number_text(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? xasprintf("%.0f", v->valuedouble) : NULL;
}

/* "https://dnsname" for http/https sockets, "dnsname:port" for tcp/tls (SPEC §8). */
static char *socket_url(const cJSON *s) {
        const char *dns = proto_str_of(s, PROTO_API_KEY_DNSNAME), *type = proto_str_of(s, PROTO_API_KEY_SOCKET_TYPE);
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(s, PROTO_API_KEY_SOCKET_TCP_PORTS);
        const cJSON *p0 = cJSON_GetArrayItem(ports, 0);

        if (!dns)
                return NULL;
        if (type && (streq(type, "tcp") || streq(type, "tls")))
                return cJSON_IsNumber(p0) ? xasprintf("%s:%.0f", dns, p0->valuedouble) : xstrdup(dns);
        return xasprintf("https://%s", dns);
}

/* ---- account ---------------------------------------------------------------------------- */

int ctl_cmd_account(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *account;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 0, 1, "")) >= 0)
                return r;
        if (optind < argc && !streq(argv[optind], "show"))
                return ctl_usage_error(ctx, "unknown action \"%s\" (show)", argv[optind]);

        req = proto_request_new(PROTO_CMD_ACCOUNT);
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_ACCOUNT, cJSON_IsObject, NULL, &reply, &account)) != 0)
                return r;
        if (ctx->json)
                output_json(account);
        else {
                /* The ssh key is long and not what people look for here. */
                cJSON *copy = cJSON_Duplicate(account, true);
                cJSON_DeleteItemFromObjectCaseSensitive(copy, PROTO_API_KEY_SSHKEY);
                output_object(copy, stdout);
                cJSON_Delete(copy);
        }
        cJSON_Delete(reply);
        return 0;
}

/* ---- socket ----------------------------------------------------------------------------- */

static char *ports_text(const cJSON *s) {
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(s, PROTO_API_KEY_SOCKET_TCP_PORTS), *p;
        char *out = NULL;

        cJSON_ArrayForEach(p, ports) {
                char *next;
                if (!cJSON_IsNumber(p))
                        continue;
                next = xasprintf("%s%s%.0f", out ?: "", out ? "," : "", p->valuedouble);
                free(out);
                out = next;
        }
        return out;
}

static const char *yes_no(const cJSON *o, const char *key) {
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)) ? "yes" : "no";
}

static void socket_ls_print(const cJSON *sockets) {
        static const char *const headers[] = {
                "SOCKET_ID", "DNSNAME", "TYPE", "NAME", "PORTS", "PROTECTED", "TUNNELS" };
        struct table *t;
        const cJSON *s;

        if (cJSON_GetArraySize(sockets) == 0) {
                printf("No sockets.\n");
                return;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(s, sockets) {
                _cleanup_(freep) char *ports = ports_text(s);
                _cleanup_(freep) char *tunnels =
                        xasprintf("%d", cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, PROTO_KEY_TUNNELS)));
                table_add_row(t, (const char *const[]) {
                        proto_str_of(s, PROTO_KEY_SOCKET_ID), proto_str_of(s, PROTO_API_KEY_DNSNAME), proto_str_of(s, PROTO_API_KEY_SOCKET_TYPE),
                        proto_str_of(s, PROTO_KEY_NAME), ports, yes_no(s, PROTO_API_KEY_PROTECTED_SOCKET), tunnels });
        }
        table_print(t, stdout, false);
        table_free(t);
}

/* key: value lines of what people want from a new socket; the API's names otherwise. */
static void socket_print(const cJSON *s) {
        _cleanup_(freep) char *ports = ports_text(s), *url = socket_url(s), *tunnels = NULL;
        cJSON *o = cJSON_CreateObject();
        const cJSON *t;

        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(s, PROTO_KEY_TUNNELS)) {
                const char *id = proto_str_of(t, PROTO_KEY_TUNNEL_ID);
                char *next = xasprintf("%s%s%s", tunnels ?: "", tunnels ? ", " : "", id ?: "?");
                free(tunnels);
                tunnels = next;
        }
        cJSON_AddStringToObject(o, "socket_id", proto_str_of(s, PROTO_KEY_SOCKET_ID) ?: "-");
        cJSON_AddStringToObject(o, "dnsname", proto_str_of(s, PROTO_API_KEY_DNSNAME) ?: "-");
        cJSON_AddStringToObject(o, "public_url", url ?: "-");
        cJSON_AddStringToObject(o, "name", proto_str_of(s, PROTO_KEY_NAME) ?: "-");
        cJSON_AddStringToObject(o, "type", proto_str_of(s, PROTO_API_KEY_SOCKET_TYPE) ?: "-");
        cJSON_AddStringToObject(o, "ports", ports ?: "-");
        cJSON_AddStringToObject(o, "protected", yes_no(s, PROTO_API_KEY_PROTECTED_SOCKET));
        cJSON_AddStringToObject(o, "tunnels", tunnels ?: "-");
        output_object(o, stdout);
        cJSON_Delete(o);
}

static int socket_create(struct ctl_context *ctx, cJSON *req, const char *name, const char *type,
                         bool protected_, const char *username, const char *password) {
        cJSON *reply = NULL;
        const cJSON *s;
        int r;

        if (!name || !*name)
                return ctl_usage_error(ctx, "create: missing --name N");
        if (protected_ && (!username || !password))
                return ctl_usage_error(ctx, "create: --protected needs --username U and --password P");
        if (!protected_ && (username || password))
                return ctl_usage_error(ctx, "create: --username and --password need --protected");
        cJSON_AddStringToObject(req, PROTO_KEY_ACTION, PROTO_ACTION_CREATE);
        cJSON_AddStringToObject(req, PROTO_KEY_NAME, name);
        cJSON_AddStringToObject(req, PROTO_KEY_TYPE, type ?: "http");
        cJSON_AddBoolToObject(req, PROTO_KEY_PROTECTED, protected_);
        if (username)
                cJSON_AddStringToObject(req, PROTO_KEY_USERNAME, username);
        if (password)
                cJSON_AddStringToObject(req, PROTO_KEY_PASSWORD, password);
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_SOCKET, cJSON_IsObject, NULL, &reply, &s)) != 0)
                return r;
        if (ctx->json)
                output_json(s);
        else
                socket_print(s);
        cJSON_Delete(reply);
        return 0;
}

int ctl_cmd_socket(struct ctl_context *ctx, int argc, char **argv) {
        enum { OPT_NAME = 0x200, OPT_TYPE, OPT_PROTECTED, OPT_USERNAME, OPT_PASSWORD };
        static const struct option opts[] = {
                { "name", required_argument, NULL, OPT_NAME },
                { "type", required_argument, NULL, OPT_TYPE },
                { "protected", no_argument, NULL, OPT_PROTECTED },
                { "username", required_argument, NULL, OPT_USERNAME },
                { "password", required_argument, NULL, OPT_PASSWORD },
                COMMON_OPTIONS,
                {}
        };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        const char *name = NULL, *type = NULL, *username = NULL, *password = NULL, *action;
        bool protected_ = false, create_opts = false;
        cJSON *reply = NULL;
        const cJSON *sockets;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case OPT_NAME:
                        name = optarg;
                        break;
                case OPT_TYPE:
                        if (!proto_type_valid(optarg))
                                return ctl_usage_error(ctx, "--type: \"%s\" is not one of " SOCKET_TYPE_NAMES, optarg);
                        type = optarg;
                        break;
                case OPT_PROTECTED:
                        protected_ = true;
                        break;
                case OPT_USERNAME:
                        username = optarg;
                        break;
                case OPT_PASSWORD:
                        password = optarg;
                        break;
                default:
                        if ((r = ctl_common_option(ctx, c)) >= 0)
                                return r;
                        continue;
                }
                create_opts = true;
        }
        if (optind >= argc)
                return ctl_usage_error(ctx, "missing action (ls, create, delete)");
        action = argv[optind];
        if (!streq(action, PROTO_ACTION_CREATE) && create_opts)
                return ctl_usage_error(ctx, "--name, --type, --protected, --username and --password are for 'create'");

        req = proto_request_new(PROTO_CMD_SOCKET);
        if (streq(action, PROTO_ACTION_CREATE)) {
                if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "")) >= 0)
                        return r;
                return socket_create(ctx, req, name, type, protected_, username, password);
        }
        if (streq(action, PROTO_ACTION_DELETE)) {
                if ((r = ctl_check_args(ctx, argc, argv, 2, 2, "SOCKET_ID")) >= 0)
                        return r;
                cJSON_AddStringToObject(req, PROTO_KEY_ACTION, PROTO_ACTION_DELETE);
                cJSON_AddStringToObject(req, PROTO_KEY_SOCKET_ID, argv[optind + 1]);
                if ((r = ctl_call_for(ctx, req, NULL, NULL, NULL, &reply, NULL)) != 0)
                        return r;
                if (ctx->json)
                        ctl_print_result_json(reply);
                else {
                        _cleanup_(freep) char *id = sanitize_text(argv[optind + 1], 256);
                        printf("Deleted socket %s.\n", id);
                }
                cJSON_Delete(reply);
                return 0;
        }
        if (!streq(action, PROTO_ACTION_LS))
                return ctl_usage_error(ctx, "unknown action \"%s\" (ls, create, delete)", action);
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "")) >= 0)
                return r;
        cJSON_AddStringToObject(req, PROTO_KEY_ACTION, PROTO_ACTION_LS);
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_SOCKETS, cJSON_IsArray, NULL, &reply, &sockets)) != 0)
                return r;
        if (ctx->json)
                output_json(sockets);
        else
                socket_ls_print(sockets);
        cJSON_Delete(reply);
        return 0;
}

/* ---- tunnel ----------------------------------------------------------------------------- */

static void tunnel_print(const cJSON *t) {
        _cleanup_(freep) char *port = number_text(t, PROTO_API_KEY_LOCAL_PORT);
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "tunnel_id", proto_str_of(t, PROTO_KEY_TUNNEL_ID) ?: "-");
        cJSON_AddStringToObject(o, "relay_port", port ?: "-");
        cJSON_AddStringToObject(o, "server", proto_str_of(t, PROTO_API_KEY_TUNNEL_SERVER) ?: "-");
        output_object(o, stdout);
        cJSON_Delete(o);
}

static void tunnel_ls_print(const cJSON *tunnels) {
        static const char *const headers[] = { "TUNNEL_ID", "RELAY_PORT", "SERVER" };
        struct table *tb;
        const cJSON *t;

        if (cJSON_GetArraySize(tunnels) == 0) {
                printf("No tunnels.\n");
                return;
        }
        tb = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(t, tunnels) {
                _cleanup_(freep) char *port = number_text(t, PROTO_API_KEY_LOCAL_PORT);
                table_add_row(tb, (const char *const[]) { proto_str_of(t, PROTO_KEY_TUNNEL_ID), port, proto_str_of(t, PROTO_API_KEY_TUNNEL_SERVER) });
        }
        table_print(tb, stdout, false);
        table_free(tb);
}

int ctl_cmd_tunnel(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *result = NULL;
        const char *action;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0)
                return r;
        if (optind >= argc)
                return ctl_usage_error(ctx, "missing action (ls, create, delete)");
        action = argv[optind];
        req = proto_request_new(PROTO_CMD_TUNNEL);
        if (streq(action, PROTO_ACTION_LS) || streq(action, PROTO_ACTION_CREATE)) {
                if ((r = ctl_check_args(ctx, argc, argv, 2, 2, "SOCKET_ID")) >= 0)
                        return r;
        } else if (streq(action, PROTO_ACTION_DELETE)) {
                if ((r = ctl_check_args(ctx, argc, argv, 3, 3, "SOCKET_ID and TUNNEL_ID")) >= 0)
                        return r;
                cJSON_AddStringToObject(req, PROTO_KEY_TUNNEL_ID, argv[optind + 2]);
        } else
                return ctl_usage_error(ctx, "unknown action \"%s\" (ls, create, delete)", action);
        cJSON_AddStringToObject(req, PROTO_KEY_ACTION, action);
        cJSON_AddStringToObject(req, PROTO_KEY_SOCKET_ID, argv[optind + 1]);

        if (streq(action, PROTO_ACTION_LS))
                r = ctl_call_for(ctx, req, PROTO_KEY_TUNNELS, cJSON_IsArray, NULL, &reply, &result);
        else if (streq(action, PROTO_ACTION_CREATE))
                r = ctl_call_for(ctx, req, PROTO_KEY_TUNNEL, cJSON_IsObject, NULL, &reply, &result);
        else
                r = ctl_call_for(ctx, req, NULL, NULL, NULL, &reply, NULL);
        if (r != 0)
                return r;
        if (ctx->json && result)
                output_json(result);
        else if (ctx->json)
                ctl_print_result_json(reply);
        else if (streq(action, PROTO_ACTION_LS))
                tunnel_ls_print(result);
        else if (streq(action, PROTO_ACTION_CREATE))
                tunnel_print(result);
        else {
                _cleanup_(freep) char *id = sanitize_text(argv[optind + 2], 256);
                printf("Deleted tunnel %s.\n", id);
        }
        cJSON_Delete(reply);
        return 0;
}
