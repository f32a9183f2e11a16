/*
 * fuzz_config.c — drives the agent's JSON config-file loader
 * (rumor_config_parse with -config-file) with arbitrary bytes.
 *
 * A config file is not network input, but it is the same JSON machinery the
 * HTTP bodies go through, it is often written by other programs, and a bad
 * one must be a one-line error, never a crash. The input is written to a
 * file in a private temporary directory (created once) and parsed with
 * -data-dir pointing at that directory: flags win over files, so a fuzzed
 * "data_dir" key is validated but never creates anything elsewhere.
 * On success the target checks what the parser promises (strings set, the
 * domain ends in '.', ports in range, tokens within their bound) and that
 * an error message is non-empty and NUL-terminated.
 */
#include "agent/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char file[96];

static void cleanup(void)
{
	unlink(file);
	rmdir(dir);
}

static void setup(void)
{
	if (dir[0] != '\0')
		return;
	snprintf(dir, sizeof(dir), "%s/rumor-fuzz-config.XXXXXX",
	         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(file, sizeof(file), "%s/c.json", dir);
	atexit(cleanup);
}

static void check_ok(const struct rumor_config *c)
{
	if (c->node_name == NULL || c->datacenter == NULL || c->domain == NULL ||
	    c->bind_addr == NULL || c->advertise_addr == NULL || c->client_addr == NULL ||
	    c->data_dir == NULL)
		abort();
	size_t dl = strlen(c->domain);
	if (dl == 0 || c->domain[dl - 1] != '.')
		abort();
	if (c->serf_lan_port < 1 || c->serf_lan_port > 65535)
		abort();
	if (c->http_port != -1 && (c->http_port < 1 || c->http_port > 65535))
		abort();
	if (c->acl_token != NULL && (strlen(c->acl_token) == 0 || strlen(c->acl_token) > 256))
		abort();
	if (c->encrypt_key_len != 0 && c->encrypt_key_len != 16 && c->encrypt_key_len != 24 &&
	    c->encrypt_key_len != 32)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	FILE *f = fopen(file, "wb");
	if (f == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);

	char *argv[] = {"agent", "-node", "fuzz", "-data-dir", dir, "-config-file", file, NULL};
	struct rumor_config c;
	char err[512];
	err[0] = '\0';
	rumor_config_init(&c);
	int r = rumor_config_parse(&c, 7, argv, err, sizeof(err));
	if (r == 0)
		check_ok(&c);
	else if (r < 0 && (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL))
		abort();
	rumor_config_free(&c);
	return 0;
}
