/* Unit tests of agent/conf.c through its public interface: every file is written under a
 * fresh mkdtemp() directory, so the error texts below carry that directory ("@" in the
 * tables stands for it). */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "conf.h"
#include "util.h"

static char tmp[64];

static void setup(void) {
        strcpy(tmp, "/tmp/test-conf-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(p);
}

static void teardown(void) {
        ck_assert_int_eq(nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* "@/" -> the temp dir and a slash. */
static char *at(const char *s) {
        char *r = xstrdup("");
        for (const char *p = s; *p; p++) {
                bool d = p[0] == '@' && p[1] == '/';
                char *n = d ? xasprintf("%s%s", r, tmp) : xasprintf("%s%c", r, *p);
                free(r);
                r = n;
        }
        return r;
}

/* Writes tmp/rel (creating its directories). */
static void put(const char *rel, const char *content) {
        char *path = xasprintf("%s/%s", tmp, rel);
        char *slash = strrchr(path, '/');
        *slash = '\0';
        ck_assert_int_eq(mkdir_p(path, 0700), 0);
        *slash = '/';
        FILE *f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(content, f);
        ck_assert_int_eq(fclose(f), 0);
        free(path);
}

static int load(struct config **c, struct strv *errors, struct strv *warnings) {
        char *path = xasprintf("%s/mysocketd.ini", tmp);
        int r = conf_load(path, c, errors, warnings);
        free(path);
        return r;
}

/* Loads main (with @ replaced); expects success and no warnings. */
static struct config *load_ok(const char *main) {
        struct strv e = {}, w = {};
        struct config *c = NULL;
        char *m = at(main);
        put("mysocketd.ini", m);
        free(m);
        int r = load(&c, &e, &w);
        if (r < 0 || e.n > 0)
                ck_abort_msg("unexpected: r=%d %s", r, e.n ? e.items[0] : "");
        ck_assert_uint_eq(w.n, 0);
        strv_clear(&e);
        strv_clear(&w);
        return c;
}

static const char *bindings_dir_conf = "[daemon]\nstate_dir = @/state\n[api]\ntoken_file = /etc/mysocketd/token\n";

#define API "[api]\ntoken_file = /etc/mysocketd/token\n"   /* lines 1-2 */
#define F "@/mysocketd.ini"

struct bad {
        const char *content;
        const char *error;              /* the only error, "@" = tmp dir */
};

static const char long_line[] = "[daemon]\ncontrol_group = "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" API;

static const struct bad bad[] = {
        { API "[ssh]\nserver = a, b:99999\n", F ":4: [ssh] server: \"99999\" is not a port (1-65535)" },
        { API "[ssh]\nserver = [::1:22\n", F ":4: [ssh] server: \"[::1:22\" is not [IPV6] or [IPV6]:PORT" },
        { API "[ssh]\nserver = a,b,c,d,e,f,g,h,i\n", F ":4: [ssh] server: more than 8 relays" },
        { API "[foo]\n", F ":3: [foo]: unknown section (expected [daemon], [api], [ssh], [backoff], [binding \"NAME\"] or [forward \"NAME\"])" },
        { API "[forward \"pg\"]\nlisten = 127.0.0.1:5433\n", F ":3: [forward \"pg\"] target: missing (required)" },
        { API "[forward \"pg\"]\nlisten = 127.0.0.1:5433\ntarget = db\n", F ":5: [forward \"pg\"] target: \"db\" is not HOST:PORT" },
        { API "[forward \"pg\"]\nlisten = localhost:5433\ntarget = db:5432\n", F ":4: [forward \"pg\"] listen: \"localhost:5433\" is not an address" },
        { API "[forward \"pg\"]\nlisten = 127.0.0.1:1\ntarget = a:1\n[forward \"pg\"]\n", F ":6: [forward \"pg\"]: forward \"pg\" is already defined at" },
        { API "[forward pg]\n", F ":3: [forward pg]: a forward section is written [forward \"NAME\"]" },
        { API "[daemon]\nfoo = 1\n", F ":4: [daemon] foo: unknown key" },
        { API "[ssh]\nport = 22\nport = 23\n", F ":5: [ssh] port: duplicate key (first set at line 4)" },
        { API "[binding \"web\"]\nport = 80x\n", F ":4: [binding \"web\"] port: \"80x\" is not a port (1-65535)" },
        { API "[binding \"web\"]\nport = 0\n", F ":4: [binding \"web\"] port: \"0\" is not a port (1-65535)" },
        { API "[binding \"web\"]\nport = 65536\n", F ":4: [binding \"web\"] port: \"65536\" is not a port (1-65535)" },
        { API "[binding \"web\"]\nport = 80\ntype = udp\n",
          F ":5: [binding \"web\"] type: \"udp\" is not a socket type (http, https, tcp, tls)" },
        { API "[binding \"web\"]\nport = 80\nprotected = maybe\n",
          F ":5: [binding \"web\"] protected: \"maybe\" is not a boolean (yes/no, true/false, on/off, 1/0)" },
        { API "[daemon]\nlog_level = verbose\n",
          F ":4: [daemon] log_level: \"verbose\" is not a log level (debug, info, notice, warning, error)" },
        { API "[ssh]\nhost_key_check = sometimes\n", F ":4: [ssh] host_key_check: \"sometimes\" is neither strict, "
          "accept-new nor SHA256:<43 base64 characters of a host key fingerprint>" },
        { API "[ssh]\nhost_key_check = SHA256:abc\n", F ":4: [ssh] host_key_check: \"SHA256:abc\" is neither" },
        /* 43 characters, but the last one carries bits beyond 32 bytes */
        { API "[ssh]\nhost_key_check = SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2B\n",
          F ":4: [ssh] host_key_check: \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2B\" is neither" },
        { API "[ssh]\nkeepalive_interval = 0\n", F ":4: [ssh] keepalive_interval: \"0\" is not a number from 1 to 3600" },
        { API "[ssh]\nkeepalive_interval = 3601\n", F ":4: [ssh] keepalive_interval: \"3601\" is not a number from 1 to 3600" },
        { API "[ssh]\nkeepalive_count = 101\n", F ":4: [ssh] keepalive_count: \"101\" is not a number from 1 to 100" },
        { API "[ssh]\nkeepalive_count = -1\n", F ":4: [ssh] keepalive_count: \"-1\" is not a number from 1 to 100" },
        { API "[ssh]\nport = ssh\n", F ":4: [ssh] port: \"ssh\" is not a port (1-65535)" },
        { API "[backoff]\ninitial = 0\n", F ":4: [backoff] initial: \"0\" is not a number from 1 to 86400" },
        { API "[backoff]\ninitial = 10\nmax = 5\n", F ":5: [backoff] max: 5 is less than initial (10)" },
        { API "[backoff]\ninitial = 600\n", F ":4: [backoff] initial: 600 is more than max (300)" },
        { API "[backoff]\nstable_after = 0\n", F ":4: [backoff] stable_after: \"0\" is not a number from 1 to 86400" },
        { API "[daemon]\nstate_dir = var/lib/mysocketd\n",
          F ":4: [daemon] state_dir: \"var/lib/mysocketd\" is not an absolute path" },
        { API "[daemon]\ncontrol_socket = control.sock\n",
          F ":4: [daemon] control_socket: \"control.sock\" is not an absolute path" },
        { API "[ssh]\nidentity_file = ~/.ssh/id_ed25519\n",
          F ":4: [ssh] identity_file: \"~/.ssh/id_ed25519\" is not an absolute path" },
        { API "[ssh]\nknown_hosts = known_hosts\n", F ":4: [ssh] known_hosts: \"known_hosts\" is not an absolute path" },
        { API "[api]\npassword_file = etc/pw\n", F ":4: [api] password_file: \"etc/pw\" is not an absolute path" },
        { "[api]\ntoken_file = ./token\n", F ":2: [api] token_file: \"./token\" is not an absolute path" },
        { API "url = ftp://api.example.com\n", F ":3: [api] url: \"ftp://api.example.com\" is not an http:// or https:// URL" },
        { API "url = https://\n", F ":3: [api] url: \"https://\" is not an http:// or https:// URL" },
        { API "[binding web]\nport = 80\n",
          F ":3: [binding web]: a binding section is written [binding \"NAME\"], with the name in double quotes" },
        { API "[binding]\n", F ":3: [binding]: a binding section is written [binding \"NAME\"]" },
        { API "[binding \"-web\"]\nport = 80\n", F ":3: [binding \"-web\"]: \"-web\" is not a valid binding name "
          "(up to 63 letters, digits, '_', '.' and '-', starting with a letter or digit)" },
        { API "[binding \"a234567890123456789012345678901234567890123456789012345678901234\"]\nport = 80\n",
          F ":3: [binding \"a234567890123456789012345678901234567890123456789012345678901234\"]: \"a2345" },
        { API "[binding \"web\"]\nport = 80\n[binding \"web\"]\nport = 81\n",
          F ":5: [binding \"web\"]: binding \"web\" is already defined at " F ":3" },
        { "port = 80\n" API, F ":1: port: key outside of any section" },
        { API "[binding \"web\"]\nhost = ::1\n", F ":3: [binding \"web\"] port: missing (required)" },
        { API "[binding \"web\"]\nport = 80\nremote_port = 8080\n",
          F ":5: [binding \"web\"] remote_port: only in direct mode (this config has an [api] section)" },
        { API "[binding \"web\"]\nport = 80\nprotected = yes\nusername = u\n",
          F ":5: [binding \"web\"] protected: needs username and password" },
        { API "[binding \"db\"]\nport = 5432\ntype = tcp\nprotected = yes\nusername = u\npassword = p\n",
          F ":6: [binding \"db\"] protected: only for type http or https (not tcp)" },
        { API "[binding \"web\"]\nport = 80\nusername = u\n", F ":5: [binding \"web\"] username: only used with protected = yes" },
        { API "[binding \"web\"]\nport = 80\npassword = p\n", F ":5: [binding \"web\"] password: only used with protected = yes" },
        { API "[binding \"web\"]\nport = 80\nprotected = yes\nusername = a:b\npassword = p\n",
          F ":6: [binding \"web\"] username: must not contain ':' (HTTP basic auth)" },
        { API "[binding \"web\"]\nport = 80\nname = tab\there\n",
          F ":5: [binding \"web\"] name: contains a control character or line break" },
        { API "[binding \"web\"]\nport = 80\nport = 81\n", F ":5: [binding \"web\"] port: duplicate key (first set at line 4)" },
        { "[ssh]\nuser = me\n[binding \"web\"]\nport = 80\n",
          F ":3: [binding \"web\"] remote_port: missing (required in direct mode, without an [api] section)" },
        { API "[binding \"web\"]\nport = 80\ntunnels = 0\n",
          F ":5: [binding \"web\"] tunnels: \"0\" is not a number from 1 to 8" },
        { API "[binding \"web\"]\nport = 80\ntunnels = 9\n",
          F ":5: [binding \"web\"] tunnels: \"9\" is not a number from 1 to 8" },
        { "[ssh]\nuser = me\n[binding \"web\"]\nport = 80\nremote_port = 9000\ntunnels = 2\n",
          F ":6: [binding \"web\"] tunnels: only in API mode (in direct mode a binding has one tunnel per [ssh] server)" },
        { "[ssh]\nuser = me\n[binding \"web\"]\nport = 80\nremote_port = 9000\nsocket_id = abc\n",
          F ":6: [binding \"web\"] socket_id: only in API mode (with an [api] section)" },
        { "[ssh]\nuser = me\n[binding \"web\"]\nport = 80\nremote_port = 9000\nprotected = yes\nusername = u\npassword = p\n",
          F ":6: [binding \"web\"] protected: only in API mode (in direct mode no edge checks passwords)" },
        { "[ssh]\nserver = relay.example.com\n[binding \"web\"]\nport = 80\nremote_port = 9000\n",
          F ":1: [ssh] user: missing (required in direct mode, without an [api] section)" },
        { "[daemon]\nlog_level = debug\n[binding \"web\"]\nport = 80\nremote_port = 9000\n",
          F ": [ssh] user: missing (required in direct mode, without an [api] section)" },
        { "[api]\n", F ":1: [api]: needs either email and password_file, or token_file" },
        { "[api]\nemail = a@example.com\n", F ":1: [api] password_file: missing (required with email)" },
        { "[api]\npassword_file = /etc/pw\n", F ":1: [api] email: missing (required with password_file)" },
        { "[api]\nemail = a@example.com\npassword_file = /etc/pw\ntoken_file = /etc/t\n",
          F ":4: [api] token_file: cannot be combined with email and password_file" },
        { API "justaword\n", F ":3: expected \"key = value\", got: justaword" },
        { API "= value\n", F ":3: expected \"key = value\", got: = value" },
        { API "[daemon\nlog_level = debug\n", F ":3: section header without ']'" },
        { API "[daemon] log_level = debug\n", F ":3: unexpected text after ']': log_level = debug" },
        { long_line, F ":2: line too long (at most 197 characters)" },
        { API "[daemon]\ncontrol_group = ok\n[ssh]\ncontrol_group = wrong\n", F ":6: [ssh] control_group: unknown key" },
};

START_TEST(test_bad_config) {
        const struct bad *b = &bad[_i];
        char *content = at(b->content), *want = at(b->error);
        struct strv e = {}, w = {};
        struct config *c = NULL;

        put("mysocketd.ini", content);
        ck_assert_int_eq(load(&c, &e, &w), -EINVAL);
        ck_assert_ptr_null(c);
        if (e.n != 1 || strncmp(e.items[0], want, strlen(want)) != 0)
                ck_abort_msg("case %d:\n want: %s\n got %zu: %s%s%s", _i, want, e.n, e.n ? e.items[0] : "",
                             e.n > 1 ? "\n  and: " : "", e.n > 1 ? e.items[1] : "");
        strv_clear(&e);
        strv_clear(&w);
        free(content);
        free(want);
}
END_TEST

START_TEST(test_all_errors_listed) {
        struct strv e = {}, w = {};
        struct config *c = NULL;
        char *m = at("[daemon]\nlog_level = loud\n[bogus]\nx = 1\n[ssh]\nport = 0\n"
                     "[binding \"a\"]\nport = 1\nremote_port = 2\n[binding \"b\"]\nremote_port = 3\n");
        put("mysocketd.ini", m);
        ck_assert_int_eq(load(&c, &e, &w), -EINVAL);
        ck_assert_uint_eq(e.n, 5);
        char *want[] = {
                at(F ":2: [daemon] log_level: \"loud\" is not a log level (debug, info, notice, warning, error)"),
                at(F ":3: [bogus]: unknown section (expected [daemon], [api], [ssh], [backoff], [binding \"NAME\"] or [forward \"NAME\"])"),
                at(F ":6: [ssh] port: \"0\" is not a port (1-65535)"),
                at(F ":5: [ssh] user: missing (required in direct mode, without an [api] section)"),
                at(F ":10: [binding \"b\"] port: missing (required)"),
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                ck_assert_str_eq(e.items[i], want[i]);
                free(want[i]);
        }
        free(m);
        strv_clear(&e);
        strv_clear(&w);
}
END_TEST

START_TEST(test_missing_file) {
        struct strv e = {}, w = {};
        struct config *c = NULL;
        ck_assert_int_eq(load(&c, &e, &w), -ENOENT);
        ck_assert_ptr_null(c);
        ck_assert_uint_eq(e.n, 1);
        char *want = at(F ": cannot open: No such file or directory");
        ck_assert_str_eq(e.items[0], want);
        free(want);
        strv_clear(&e);
}
END_TEST

/* The conffile the package ships (all commented out) must load: the daemon starts with it. */
START_TEST(test_shipped_example_loads) {
        struct config *c = NULL;
        struct strv e = {}, w = {};
        ck_assert_int_eq(conf_load(TEST_SRCDIR "/etc/mysocketd.ini", &c, &e, &w), 0);
        ck_assert_uint_eq(e.n, 0);
        ck_assert(!c->api);
        ck_assert_uint_eq(c->n_bindings, 0);
        conf_free(c);
        strv_clear(&e);
        strv_clear(&w);
}
END_TEST

START_TEST(test_defaults) {
        struct config *c = load_ok(API);
        ck_assert_str_eq(c->state_dir, "/var/lib/mysocketd");
        ck_assert_str_eq(c->control_socket, "/run/mysocketd/control.sock");
        ck_assert_str_eq(c->control_group, "mysocketd");
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert(c->api);
        ck_assert_str_eq(c->api_url, "https://api.mysocket.io");
        ck_assert_ptr_null(c->api_email);
        ck_assert_ptr_null(c->api_password_file);
        ck_assert_str_eq(c->api_token_file, "/etc/mysocketd/token");
        ck_assert_str_eq(c->ssh_server, "ssh.mysocket.io");
        ck_assert_uint_eq(c->ssh_port, 22);
        ck_assert_ptr_null(c->ssh_user);
        ck_assert_str_eq(c->identity_file, "/etc/mysocketd/id_ed25519");
        ck_assert_str_eq(c->known_hosts, "/var/lib/mysocketd/known_hosts");
        ck_assert_int_eq(c->host_key_check, HOST_KEY_CHECK_ACCEPT_NEW);
        ck_assert_ptr_null(c->host_key_fingerprint);
        ck_assert_uint_eq(c->keepalive_interval, 15);
        ck_assert_uint_eq(c->keepalive_count, 3);
        ck_assert_uint_eq(c->backoff_initial, 1);
        ck_assert_uint_eq(c->backoff_max, 300);
        ck_assert_uint_eq(c->stable_after, 60);
        ck_assert_uint_eq(c->n_bindings, 0);
        char *p = at(F);
        ck_assert_str_eq(c->path, p);
        free(p);
        conf_free(c);
}
END_TEST

START_TEST(test_full_config) {
        /* the example of SPEC §3, with its inline comments, indented, CRLF and a BOM */
        struct config *c = load_ok(
                "\xEF\xBB\xBF[daemon]\r\n"
                "state_dir = @/state           ; comment\r\n"
                "control_socket = /run/x/control.sock\n"
                "  control_group = adm\n"
                "log_level = debug\n"
                "# a comment\n"
                "; another\n"
                "\n"
                "[api]                          ; absent => direct mode\n"
                "url = http://127.0.0.1:8080/v1\n"
                "email = ops@example.com\n"
                "password_file = /etc/mysocketd/password\n"
                "[ssh]\n"
                "server = 127.0.0.1\n"
                "port = 2222\n"
                "user =\n"
                "identity_file = /etc/mysocketd/id\n"
                "host_key_check = SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\n"
                "keepalive_interval = 3600\n"
                "keepalive_count = 100\n"
                "[backoff]\n"
                "initial = 2\n"
                "max = 2\n"
                "stable_after = 86400\n"
                "[binding \"web\"]\n"
                "\tport = 8000   ; required\n"
                "\thost = ::1\n"
                "\ttype = https\n"
                "\tname = web on raspberrypi\n"
                "\tprotected = YES\n"
                "\tusername = admin\n"
                "\tpassword = p;a#s=s\"w\n"
                "\tsocket_id = 1b2c\n"
                "\tremote_port =\n"
                "[binding \"ssh.box_1-x\"]\n"
                "port: 22\n"
                "type = tcp\n");
        char *sd = at("@/state"), *kh = at("@/state/known_hosts"), *file = at(F);
        ck_assert_str_eq(c->state_dir, sd);
        ck_assert_str_eq(c->known_hosts, kh);
        ck_assert_str_eq(c->control_socket, "/run/x/control.sock");
        ck_assert_str_eq(c->control_group, "adm");
        ck_assert_int_eq(c->log_level, LOG_DEBUG);
        ck_assert(c->api);
        ck_assert_str_eq(c->api_url, "http://127.0.0.1:8080/v1");
        ck_assert_str_eq(c->api_email, "ops@example.com");
        ck_assert_str_eq(c->api_password_file, "/etc/mysocketd/password");
        ck_assert_ptr_null(c->api_token_file);
        ck_assert_str_eq(c->ssh_server, "127.0.0.1");
        ck_assert_uint_eq(c->ssh_port, 2222);
        ck_assert_ptr_null(c->ssh_user);
        ck_assert_str_eq(c->identity_file, "/etc/mysocketd/id");
        ck_assert_int_eq(c->host_key_check, HOST_KEY_CHECK_PINNED);
        ck_assert_str_eq(c->host_key_fingerprint, "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s");
        ck_assert_uint_eq(c->keepalive_interval, 3600);
        ck_assert_uint_eq(c->keepalive_count, 100);
        ck_assert_uint_eq(c->backoff_initial, 2);
        ck_assert_uint_eq(c->backoff_max, 2);
        ck_assert_uint_eq(c->stable_after, 86400);
        ck_assert_uint_eq(c->n_bindings, 2);
        const struct binding_conf *b = c->bindings[0];
        ck_assert_str_eq(b->name, "web");
        ck_assert_uint_eq(b->port, 8000);
        ck_assert_str_eq(b->host, "::1");
        ck_assert_int_eq(b->type, SOCKET_TYPE_HTTPS);
        ck_assert_str_eq(b->display_name, "web on raspberrypi");
        ck_assert(b->protected_);
        ck_assert_str_eq(b->username, "admin");
        ck_assert_str_eq(b->password, "p;a#s=s\"w");
        ck_assert_str_eq(b->socket_id, "1b2c");
        ck_assert_uint_eq(b->remote_port, 0);
        ck_assert_int_eq(b->source, BINDING_SOURCE_CONFIG);
        ck_assert_str_eq(b->file, file);
        ck_assert_uint_eq(b->line, 25);
        b = c->bindings[1];
        ck_assert_str_eq(b->name, "ssh.box_1-x");
        ck_assert_uint_eq(b->port, 22);
        ck_assert_str_eq(b->host, "127.0.0.1");
        ck_assert_int_eq(b->type, SOCKET_TYPE_TCP);
        ck_assert_ptr_null(b->display_name);
        ck_assert(!b->protected_);
        ck_assert_uint_eq(b->line, 35);
        free(sd);
        free(kh);
        free(file);
        conf_free(c);
}
END_TEST

START_TEST(test_direct_mode) {
        struct config *c = load_ok("[ssh]\nuser = tunnel\nhost_key_check = strict\n"
                                   "[binding \"web\"]\nport = 80\nremote_port = 8080\n");
        ck_assert(!c->api);
        ck_assert_str_eq(c->ssh_user, "tunnel");
        ck_assert_int_eq(c->host_key_check, HOST_KEY_CHECK_STRICT);
        ck_assert_uint_eq(c->n_bindings, 1);
        ck_assert_uint_eq(c->bindings[0]->remote_port, 8080);
        conf_free(c);
}
END_TEST

START_TEST(test_conf_d) {
        put("conf.d/20-b.ini", "[binding \"b\"]\nport = 2\n");
        put("conf.d/10-a.ini", "[daemon]\nlog_level = warning\n[binding \"a\"]\nport = 1\n");
        put("conf.d/README", "not ini at all\n");
        put("conf.d/.hidden.ini", "garbage\n");
        put("conf.d/30-c.ini.dpkg-old", "garbage\n");
        struct config *c = load_ok(API "[daemon]\nlog_level = error\n[binding \"main\"]\nport = 3\n");
        ck_assert_int_eq(c->log_level, LOG_WARNING);     /* a drop-in overrides the main file */
        ck_assert_uint_eq(c->n_bindings, 3);
        ck_assert_str_eq(c->bindings[0]->name, "main");
        ck_assert_str_eq(c->bindings[1]->name, "a");
        ck_assert_str_eq(c->bindings[2]->name, "b");
        char *f = at("@/conf.d/10-a.ini");
        ck_assert_str_eq(c->bindings[1]->file, f);
        ck_assert_uint_eq(c->bindings[1]->line, 3);
        ck_assert_int_eq(c->bindings[1]->source, BINDING_SOURCE_CONFIG);
        free(f);
        conf_free(c);
}
END_TEST

START_TEST(test_conf_d_errors) {
        put("conf.d/10-a.ini", "[binding \"web\"]\nport = 1\n[daemon]\nlog_level = x\n");
        put("conf.d/20-b.ini", "[binding \"a\"]\nport = 1\nhost = h\nhost = i\n");
        put("mysocketd.ini", API "[binding \"web\"]\nport = 80\n");
        struct strv e = {}, w = {};
        struct config *c = NULL;
        ck_assert_int_eq(load(&c, &e, &w), -EINVAL);
        ck_assert_uint_eq(e.n, 3);
        char *want[] = {
                at("@/conf.d/10-a.ini:1: [binding \"web\"]: binding \"web\" is already defined at " F ":3"),
                at("@/conf.d/10-a.ini:4: [daemon] log_level: \"x\" is not a log level (debug, info, notice, warning, error)"),
                at("@/conf.d/20-b.ini:4: [binding \"a\"] host: duplicate key (first set at line 3)"),
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                ck_assert_str_eq(e.items[i], want[i]);
                free(want[i]);
        }
        strv_clear(&e);
        strv_clear(&w);
}
END_TEST

START_TEST(test_runtime_bindings) {
        char *m = at("[daemon]\nstate_dir = @/state\n" API "[binding \"web\"]\nport = 80\n");
        put("mysocketd.ini", m);
        free(m);
        put("state/bindings.d/app.ini", "# Added with mysocketctl add; managed by mysocketd.\n[binding \"app\"]\nport = 3000\n");
        put("state/bindings.d/web.ini", "[binding \"web\"]\nport = 81\n");              /* config wins */
        put("state/bindings.d/other.ini", "[binding \"wrong\"]\nport = 81\n");          /* name != file */
        put("state/bindings.d/bad.ini", "[binding \"bad\"]\nport = 80x\n");              /* bad value */
        put("state/bindings.d/two.ini", "[binding \"two\"]\nport = 1\n[binding \"two2\"]\nport = 2\n");
        put("state/bindings.d/glob.ini", "[daemon]\nlog_level = debug\n[binding \"glob\"]\nport = 1\n");
        put("state/bindings.d/rp.ini", "[binding \"rp\"]\nport = 1\nremote_port = 9\n"); /* mode rule */
        put("state/bindings.d/empty.ini", "");
        put("state/bindings.d/x.ini.tmp.abc123", "[binding \"x\"]\nport = 1\n");

        struct strv e = {}, w = {};
        struct config *c = NULL;
        ck_assert_int_eq(load(&c, &e, &w), 0);
        ck_assert_uint_eq(e.n, 0);
        ck_assert_uint_eq(c->n_bindings, 2);
        ck_assert_str_eq(c->bindings[0]->name, "web");
        ck_assert_uint_eq(c->bindings[0]->port, 80);
        ck_assert_int_eq(c->bindings[0]->source, BINDING_SOURCE_CONFIG);
        ck_assert_str_eq(c->bindings[1]->name, "app");
        ck_assert_int_eq(c->bindings[1]->source, BINDING_SOURCE_RUNTIME);
        ck_assert_uint_eq(c->bindings[1]->line, 2);
        char *f = at("@/state/bindings.d/app.ini");
        ck_assert_str_eq(c->bindings[1]->file, f);
        free(f);

        char *want[] = {   /* files in name order; each problem, then "skipped" */
                at("@/state/bindings.d/bad.ini:2: [binding \"bad\"] port: \"80x\" is not a port (1-65535)"),
                at("@/state/bindings.d/bad.ini: runtime binding skipped"),
                at("@/state/bindings.d/empty.ini: must hold exactly one [binding \"NAME\"] section (found 0)"),
                at("@/state/bindings.d/empty.ini: runtime binding skipped"),
                at("@/state/bindings.d/glob.ini:1: [daemon]: a runtime file holds one [binding \"NAME\"] or [forward \"NAME\"] section only"),
                at("@/state/bindings.d/glob.ini: runtime binding skipped"),
                at("@/state/bindings.d/other.ini:1: binding \"wrong\" must be in a file named wrong.ini"),
                at("@/state/bindings.d/other.ini: runtime binding skipped"),
                at("@/state/bindings.d/rp.ini:3: [binding \"rp\"] remote_port: only in direct mode (this config has an [api] section)"),
                at("@/state/bindings.d/rp.ini: runtime binding skipped"),
                at("@/state/bindings.d/two.ini: must hold exactly one [binding \"NAME\"] section (found 2)"),
                at("@/state/bindings.d/two.ini: runtime binding skipped"),
                at("@/state/bindings.d/web.ini:1: binding \"web\" is already defined at " F ":5, which wins"),
                at("@/state/bindings.d/web.ini: runtime binding skipped"),
        };
        ck_assert_uint_eq(w.n, ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                ck_assert_str_eq(w.items[i], want[i]);
                free(want[i]);
        }
        conf_free(c);
        strv_clear(&e);
        strv_clear(&w);
}
END_TEST

static struct binding_conf *sample(void) {
        struct binding_conf *b = xcalloc(1, sizeof(*b));
        b->name = xstrdup("web-1");
        b->host = xstrdup("192.0.2.1");
        b->port = 8080;
        b->type = SOCKET_TYPE_HTTPS;
        b->display_name = xstrdup("my \"web\" = nice; #1");
        b->protected_ = true;
        b->username = xstrdup("admin");
        b->password = xstrdup("p;a#s=s:s _-)x\"");  /* ';' is fine unless after a space */
        b->socket_id = xstrdup("5e2b1a3c-0d4f-4e5a-9b6c-7d8e9fa0b1c2");
        b->tunnels = 3;
        b->source = BINDING_SOURCE_RUNTIME;
        return b;
}

START_TEST(test_round_trip) {
        char *m = at(bindings_dir_conf);
        put("mysocketd.ini", m);
        free(m);
        for (int direct = 0; direct < 2; direct++) {
                struct binding_conf *b = sample();
                if (direct) {   /* a direct-mode binding: no edge, a relay port */
                        char *mm = at("[daemon]\nstate_dir = @/state\n[ssh]\nuser = u\n");
                        put("mysocketd.ini", mm);
                        free(mm);
                        b->protected_ = false;
                        free(b->username), free(b->password), free(b->socket_id);
                        b->username = b->password = b->socket_id = NULL;
                        free(b->host);
                        b->host = NULL;   /* unset means the default */
                        b->remote_port = 65535;
                        b->type = SOCKET_TYPE_TCP;
                        b->tunnels = 0;
                }
                struct strv e = {}, w = {};
                ck_assert_int_eq(conf_binding_validate(NULL, b, &e), 0);
                char *ini = conf_binding_to_ini(b);
                const char *head = "# Added with mysocketctl add; managed by mysocketd.\n[binding \"web-1\"]\nport = ";
                ck_assert(strncmp(ini, head, strlen(head)) == 0);
                put("state/bindings.d/web-1.ini", ini);
                free(ini);

                struct config *c = NULL;
                ck_assert_int_eq(load(&c, &e, &w), 0);
                if (w.n)
                        ck_abort_msg("%s", w.items[0]);
                ck_assert_uint_eq(c->n_bindings, 1);
                ck_assert_int_eq(conf_binding_validate(c, b, &e), 0);
                ck_assert(conf_binding_equal(c->bindings[0], b));
                ck_assert_int_eq(c->bindings[0]->source, BINDING_SOURCE_RUNTIME);
                conf_free(c);
                conf_binding_free(b);
        }
}
END_TEST

START_TEST(test_validate) {
        struct config *api = load_ok(API);
        struct binding_conf *b = sample();
        struct strv e = {};

        ck_assert_int_eq(conf_binding_validate(api, b, &e), 0);
        ck_assert_uint_eq(e.n, 0);

        free(b->password);
        b->password = xstrdup("secret ;comment");
        free(b->display_name);
        b->display_name = xstrdup(" padded");
        free(b->username);
        b->username = xstrdup("two\nlines");
        free(b->host);
        b->host = xstrdup("");
        free(b->socket_id);
        b->socket_id = xstrdup("x\x7f");
        b->type = SOCKET_TYPE_HTTP;
        b->remote_port = 9;
        ck_assert_int_eq(conf_binding_validate(api, b, &e), -EINVAL);
        const char *want[] = {
                "[binding \"web-1\"] name: has leading or trailing whitespace, which the INI file would drop",
                "[binding \"web-1\"] username: contains a control character or line break",
                "[binding \"web-1\"] password: contains a space followed by ';', which the INI file would read as a comment",
                "[binding \"web-1\"] socket_id: contains a control character or line break",
                "[binding \"web-1\"] host: must not be empty",
                "[binding \"web-1\"] remote_port: only in direct mode (this config has an [api] section)",
        };
        ck_assert_uint_eq(e.n, ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                ck_assert_str_eq(e.items[i], want[i]);
        strv_clear(&e);

        struct binding_conf invalid = { .name = (char *) "no/slash", .port = 0, .type = _SOCKET_TYPE_MAX };
        ck_assert_int_eq(conf_binding_validate(NULL, &invalid, &e), -EINVAL);
        ck_assert_uint_eq(e.n, 3);
        ck_assert_str_eq(e.items[0], "[binding \"no/slash\"]: not a valid binding name (up to 63 letters, "
                         "digits, '_', '.' and '-', starting with a letter or digit)");
        ck_assert_str_eq(e.items[1], "[binding \"no/slash\"] port: missing (required)");
        ck_assert_str_eq(e.items[2], "[binding \"no/slash\"] type: not a socket type (http, https, tcp, tls)");
        strv_clear(&e);

        char longv[200];
        memset(longv, 'a', sizeof(longv) - 1);
        longv[sizeof(longv) - 1] = '\0';
        struct binding_conf l = { .name = (char *) "l", .port = 1, .display_name = longv };
        ck_assert_int_eq(conf_binding_validate(api, &l, &e), -EINVAL);
        ck_assert_uint_eq(e.n, 1);
        ck_assert_str_eq(e.items[0], "[binding \"l\"] name: is too long (at most 150 characters)");
        strv_clear(&e);

        struct binding_conf semi = { .name = (char *) "s", .port = 1, .protected_ = true,
                                     .username = (char *) "u", .password = (char *) ";secret" };
        ck_assert_int_eq(conf_binding_validate(api, &semi, &e), -EINVAL);
        ck_assert_uint_eq(e.n, 1);
        ck_assert_str_eq(e.items[0], "[binding \"s\"] password: starts with ';', which the INI file would read as a comment");
        strv_clear(&e);

        conf_binding_free(b);
        conf_free(api);
}
END_TEST

START_TEST(test_dup_equal) {
        struct binding_conf *a = sample(), *b = conf_binding_dup(a);
        ck_assert_ptr_ne(a->name, b->name);
        ck_assert(conf_binding_equal(a, b));
        b->source = BINDING_SOURCE_CONFIG;
        b->file = xstrdup("/x.ini");
        b->line = 7;
        ck_assert(conf_binding_equal(a, b));    /* where it came from does not count */

#define DIFFERS(stmt) do {                                              \
                struct binding_conf *d = conf_binding_dup(a);           \
                stmt;                                                   \
                ck_assert(!conf_binding_equal(a, d));                   \
                ck_assert(!conf_binding_equal(d, a));                   \
                conf_binding_free(d);                                   \
        } while (0)
        DIFFERS(free(d->name); d->name = xstrdup("web-2"));
        DIFFERS(free(d->host); d->host = xstrdup("::1"));
        DIFFERS(d->port++);
        DIFFERS(d->type = SOCKET_TYPE_HTTP);
        DIFFERS(free(d->display_name); d->display_name = NULL);
        DIFFERS(d->protected_ = false);
        DIFFERS(free(d->username); d->username = xstrdup("root"));
        DIFFERS(free(d->password); d->password = xstrdup("other"));
        DIFFERS(free(d->socket_id); d->socket_id = NULL);
        DIFFERS(d->remote_port = 1);
#undef DIFFERS

        /* unset host is the default host; "key =" (empty) is unset */
        free(a->host);
        a->host = NULL;
        free(b->host);
        b->host = xstrdup("127.0.0.1");
        free(b->socket_id);
        b->socket_id = xstrdup("");
        free(a->socket_id);
        a->socket_id = NULL;
        ck_assert(conf_binding_equal(a, b));
        conf_binding_free(a);
        conf_binding_free(b);
        conf_binding_free(NULL);
}
END_TEST

/* [ssh] server = a, b:2222: every relay, the first one also as ssh_server. */
START_TEST(test_relays) {
        struct config *c = load_ok("[ssh]\nuser = t\nport = 2200\nserver = relay1 , relay2.example.org:2222, [::1]:23, ::1,[fe80::1]\n");
        const char *h;
        uint16_t p;
        ck_assert_uint_eq(conf_relay_count(c), 5);
        ck_assert_str_eq(c->ssh_server, "relay1");
        conf_relay(c, 0, &h, &p);
        ck_assert_str_eq(h, "relay1");
        ck_assert_uint_eq(p, 2200);
        conf_relay(c, 1, &h, &p);
        ck_assert_str_eq(h, "relay2.example.org");
        ck_assert_uint_eq(p, 2222);
        conf_relay(c, 2, &h, &p);
        ck_assert_str_eq(h, "::1");
        ck_assert_uint_eq(p, 23);
        conf_relay(c, 3, &h, &p);
        ck_assert_str_eq(h, "::1");
        ck_assert_uint_eq(p, 2200);
        conf_relay(c, 4, &h, &p);
        ck_assert_str_eq(h, "fe80::1");
        struct config *d = load_ok("[ssh]\nuser = t\nport = 2200\nserver = relay1, relay2.example.org:2222, [::1]:23, ::1, [fe80::1]\n");
        ck_assert(conf_transport_equal(c, d));
        conf_free(d);
        d = load_ok("[ssh]\nuser = t\nport = 2200\nserver = relay1\n");
        ck_assert(!conf_transport_equal(c, d));
        ck_assert_uint_eq(conf_relay_count(d), 1);
        conf_free(d);
        conf_free(c);
        c = load_ok("[ssh]\nuser = t\n");
        ck_assert_uint_eq(conf_relay_count(c), 1);
        conf_relay(c, 0, &h, &p);
        ck_assert_str_eq(h, "ssh.mysocket.io");
        ck_assert_uint_eq(p, 22);
        conf_free(c);
}
END_TEST

START_TEST(test_transport_equal) {
        struct config *a = load_ok(API "[binding \"web\"]\nport = 80\n");
        struct config *b = load_ok(API "[backoff]\nmax = 10\n[daemon]\nlog_level = debug\n[binding \"x\"]\nport = 1\n");
        ck_assert(conf_transport_equal(a, b));   /* bindings, backoff and [daemon] are not transport */
        conf_free(b);
        const char *changes[] = {
                API "[ssh]\nport = 2222\n",
                API "[ssh]\nuser = me\n",
                API "[ssh]\nserver = relay\n",
                API "[ssh]\nidentity_file = /k\n",
                API "[ssh]\nknown_hosts = /kh\n",
                API "[ssh]\nhost_key_check = strict\n",
                API "[ssh]\nkeepalive_interval = 5\n",
                API "[ssh]\nkeepalive_count = 5\n",
                API "url = https://other\n",
                "[api]\ntoken_file = /other\n",
                "[api]\nemail = a@b\npassword_file = /p\n",
                "[ssh]\nuser = me\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(changes); i++) {
                b = load_ok(changes[i]);
                if (conf_transport_equal(a, b))
                        ck_abort_msg("not a transport change: %s", changes[i]);
                conf_free(b);
        }
        conf_free(a);
        conf_free(NULL);
}
END_TEST

START_TEST(test_socket_type_names) {
        for (int t = 0; t < _SOCKET_TYPE_MAX; t++)
                ck_assert_int_eq(socket_type_from_string(socket_type_to_string(t)), t);
        ck_assert_str_eq(socket_type_to_string(SOCKET_TYPE_TLS), "tls");
        ck_assert_ptr_null(socket_type_to_string(_SOCKET_TYPE_MAX));
        ck_assert_int_eq(socket_type_from_string("HTTP"), -EINVAL);
        ck_assert_int_eq(socket_type_from_string(NULL), -EINVAL);
}
END_TEST

int main(void) {
        Suite *s = suite_create("conf");
        TCase *tc = tcase_create("conf");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_loop_test(tc, test_bad_config, 0, (int) ELEMENTSOF(bad));
        tcase_add_test(tc, test_all_errors_listed);
        tcase_add_test(tc, test_missing_file);
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_shipped_example_loads);
        tcase_add_test(tc, test_full_config);
        tcase_add_test(tc, test_direct_mode);
        tcase_add_test(tc, test_conf_d);
        tcase_add_test(tc, test_conf_d_errors);
        tcase_add_test(tc, test_runtime_bindings);
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_validate);
        tcase_add_test(tc, test_dup_equal);
        tcase_add_test(tc, test_transport_equal);
        tcase_add_test(tc, test_relays);
        tcase_add_test(tc, test_socket_type_names);
        suite_add_tcase(s, tc);

        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
