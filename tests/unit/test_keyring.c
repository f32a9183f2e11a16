/*
 * tests/unit/test_keyring.c — memberlist encryption against traffic captured
 * from serf 0.8.2 (tests/fixtures/serf-0.8.2/encrypted, key from its README),
 * key parsing, rotation and the keyring file.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gossip/keyring.h"
#include "gossip/wire.h"
#include "tests/unit/check.h"

#ifndef RUMOR_FIXTURES
#define RUMOR_FIXTURES "tests/fixtures"
#endif
#define ENC_DIR RUMOR_FIXTURES "/serf-0.8.2/encrypted"
#define FIXTURE_KEY "hSaQNjSFS01hF4fSWL92xKJR8s+dG/4Y43Y6qmT/NnQ="

static uint8_t *load(const char *path, size_t *len)
{
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	uint8_t *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

static struct keyring *fixture_ring(void)
{
	struct keyring *k = keyring_new();
	uint8_t key[KEYRING_KEY_LEN];
	char err[256];
	if (keyring_parse_key(FIXTURE_KEY, key, err, sizeof(err)) != 0 ||
	    keyring_add(k, key, err, sizeof(err)) != 0)
		fprintf(stderr, "  fixture key: %s\n", err);
	return k;
}

static void test_decrypts_every_udp_packet_serf_sent(void)
{
	struct keyring *k = fixture_ring();
	DIR *d = opendir(ENC_DIR);
	CHECK(d != NULL, "cannot open %s", ENC_DIR);
	if (d == NULL) {
		keyring_free(k);
		return;
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "udp_", 4) != 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", ENC_DIR, e->d_name);
		size_t len;
		uint8_t *buf = load(path, &len);
		uint8_t out[65536];
		int pl = keyring_decrypt(k, buf, len, NULL, 0, out, sizeof(out));
		CHECK(pl > 0, "%s: not decrypted", e->d_name);
		if (pl > 0)
			CHECK(out[0] <= ML_ERR, "%s: plaintext type %u is no memberlist type",
			      e->d_name, out[0]);
		CHECK_INT(len - KEYRING_OVERHEAD, pl, "version 1 overhead is 29 bytes");
		/* every truncation fails cleanly */
		for (size_t cut = 0; cut < len; cut += 7)
			CHECK(keyring_decrypt(k, buf, cut, NULL, 0, out, sizeof(out)) < 0,
			      "%s cut at %zu decrypted", e->d_name, cut);
		free(buf);
		n++;
	}
	closedir(d);
	CHECK(n >= 40, "expected the 43 captured datagrams, found %d", n);
	keyring_free(k);
}

static void test_decrypts_serf_tcp_push_pull_stream(void)
{
	struct keyring *k = fixture_ring();
	const char *names[] = {"tcp_0_27956_59698.bin", "tcp_0_59698_27956.bin"};
	for (int i = 0; i < 2; i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", ENC_DIR, names[i]);
		size_t len;
		uint8_t *buf = load(path, &len);
		CHECK(buf != NULL, "cannot read %s", path);
		if (buf == NULL)
			continue;
		uint8_t *plain = NULL;
		size_t plen = 0, used = 0;
		int rc = keyring_decrypt_stream(k, buf, len, &plain, &plen, &used);
		CHECK_INT(ML_OK, rc, "stream decrypts");
		if (rc == ML_OK) {
			CHECK(plain[0] == ML_COMPRESS || plain[0] == ML_PUSH_PULL,
			      "%s: inner type %u", names[i], plain[0]);
			CHECK_INT(len, used, "whole stream consumed");
		}
		free(plain);
		/* a short read asks for more */
		CHECK_INT(ML_AGAIN, keyring_decrypt_stream(k, buf, len / 2, &plain, &plen, &used),
		          "half a stream");
		free(buf);
	}
	keyring_free(k);
}

static void test_wrong_key_does_not_decrypt(void)
{
	struct keyring *k = keyring_new();
	uint8_t key[KEYRING_KEY_LEN];
	char err[256];
	memset(key, 7, sizeof(key));
	keyring_add(k, key, err, sizeof(err));
	char path[1024];
	snprintf(path, sizeof(path), "%s/udp_011_27957_27956.bin", ENC_DIR);
	size_t len;
	uint8_t *buf = load(path, &len), out[2048];
	CHECK(buf != NULL && keyring_decrypt(k, buf, len, NULL, 0, out, sizeof(out)) < 0,
	      "decrypted with the wrong key");
	free(buf);
	keyring_free(k);
}

static void test_round_trip_packet_stream_and_version0_padding(void)
{
	struct keyring *k = fixture_ring();
	const uint8_t msg[] = "\x02hello memberlist";
	uint8_t enc[256], dec[256];
	int n = keyring_encrypt(k, msg, sizeof(msg), NULL, 0, enc, sizeof(enc));
	CHECK_INT(sizeof(msg) + KEYRING_OVERHEAD, n, "encrypted length");
	CHECK_INT(1, enc[0], "version byte");
	int m = keyring_decrypt(k, enc, (size_t)n, NULL, 0, dec, sizeof(dec));
	CHECK(m == (int)sizeof(msg) && memcmp(dec, msg, sizeof(msg)) == 0, "round trip");
	enc[n - 1] ^= 1;
	CHECK(keyring_decrypt(k, enc, (size_t)n, NULL, 0, dec, sizeof(dec)) < 0, "tamper");

	uint8_t *s = NULL, *p = NULL;
	size_t slen, plen, used;
	CHECK_INT(0, keyring_encrypt_stream(k, msg, sizeof(msg), &s, &slen), "stream");
	CHECK_INT(KEYRING_ENCRYPT_MSG, s[0], "stream type byte");
	CHECK_INT(ML_OK, keyring_decrypt_stream(k, s, slen, &p, &plen, &used), "stream back");
	CHECK(plen == sizeof(msg) && memcmp(p, msg, plen) == 0, "stream plaintext");
	free(p);
	s[4]--; /* the length is authenticated data (and now one short) */
	CHECK_INT(ML_BAD, keyring_decrypt_stream(k, s, slen, &p, &plen, &used), "length tamper");
	free(s);

	/* version 0: PKCS7 padded plaintext (memberlist protocol 1) */
	uint8_t key[KEYRING_KEY_LEN], padded[32], v0[128];
	keyring_parse_key(FIXTURE_KEY, key, (char[64]){0}, 64);
	memcpy(padded, "abcdefghij", 10);
	memset(padded + 10, 6, 6);
	v0[0] = 0;
	randombytes_buf(v0 + 1, 12);
	unsigned long long clen;
	crypto_aead_aes256gcm_encrypt(v0 + 13, &clen, padded, 16, NULL, 0, NULL, v0 + 1, key);
	m = keyring_decrypt(k, v0, 13 + clen, NULL, 0, dec, sizeof(dec));
	CHECK(m == 10 && memcmp(dec, "abcdefghij", 10) == 0, "version 0 unpadded to %d", m);
	keyring_free(k);
}

static void test_rotation_install_use_remove(void)
{
	struct keyring *a = keyring_new(), *old = keyring_new();
	uint8_t k1[32], k2[32];
	char err[256];
	memset(k1, 1, 32);
	memset(k2, 2, 32);
	keyring_add(a, k1, err, sizeof(err));
	keyring_add(old, k1, err, sizeof(err));
	CHECK_INT(0, keyring_add(a, k2, err, sizeof(err)), "install");
	CHECK_INT(2, keyring_count(a), "two keys");
	CHECK(memcmp(keyring_key(a, 0), k1, 32) == 0, "first key stays primary");
	uint8_t enc[128], dec[128];
	int n = keyring_encrypt(a, (const uint8_t *)"x", 1, NULL, 0, enc, sizeof(enc));
	CHECK(keyring_decrypt(old, enc, (size_t)n, NULL, 0, dec, sizeof(dec)) == 1,
	      "old members still read us before -use");
	CHECK_INT(0, keyring_use(a, k2, err, sizeof(err)), "use");
	CHECK(memcmp(keyring_key(a, 0), k2, 32) == 0, "k2 primary");
	n = keyring_encrypt(a, (const uint8_t *)"x", 1, NULL, 0, enc, sizeof(enc));
	CHECK(keyring_decrypt(old, enc, (size_t)n, NULL, 0, dec, sizeof(dec)) < 0,
	      "a ring without k2 cannot read k2");
	n = keyring_encrypt(old, (const uint8_t *)"y", 1, NULL, 0, enc, sizeof(enc));
	CHECK(keyring_decrypt(a, enc, (size_t)n, NULL, 0, dec, sizeof(dec)) == 1,
	      "secondary keys still decrypt");
	CHECK_INT(-1, keyring_remove(a, k2, err, sizeof(err)), "primary cannot be removed");
	CHECK_INT(0, keyring_remove(a, k1, err, sizeof(err)), "remove old");
	CHECK_INT(1, keyring_count(a), "one key left");
	uint8_t k3[32];
	memset(k3, 3, 32);
	CHECK_INT(-1, keyring_use(a, k3, err, sizeof(err)), "use of an absent key");
	keyring_free(a);
	keyring_free(old);
}

static void test_parse_refuses_aes128_and_junk(void)
{
	uint8_t key[32];
	char err[256];
	CHECK_INT(-1, keyring_parse_key("AAAAAAAAAAAAAAAAAAAAAA==", key, err, sizeof(err)), "16B");
	CHECK(strstr(err, "AES-128") != NULL && strstr(err, "32-byte") != NULL, "message: %s", err);
	CHECK_INT(-1, keyring_parse_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", key, err, sizeof(err)),
	          "24B");
	CHECK(strstr(err, "AES-192") != NULL, "message: %s", err);
	CHECK_INT(-1, keyring_parse_key("not base64!", key, err, sizeof(err)), "junk");
	CHECK_INT(0, keyring_parse_key(FIXTURE_KEY, key, err, sizeof(err)), "32B");
	char b64[64];
	keyring_format_key(key, b64, sizeof(b64));
	CHECK(strcmp(b64, FIXTURE_KEY) == 0, "format round trip: %s", b64);
}

static void test_keyring_file_round_trip(void)
{
	char dir[] = "/tmp/rumor-keyring-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	char path[256], err[256];
	snprintf(path, sizeof(path), "%s/local.keyring", dir);
	struct keyring *a = keyring_new(), *b = keyring_new();
	CHECK_INT(1, keyring_load(b, path, err, sizeof(err)), "missing file");
	uint8_t k1[32], k2[32];
	memset(k1, 9, 32);
	memset(k2, 8, 32);
	keyring_add(a, k1, err, sizeof(err));
	keyring_add(a, k2, err, sizeof(err));
	keyring_use(a, k2, err, sizeof(err));
	CHECK_INT(0, keyring_save(a, path, err, sizeof(err)), "save");
	CHECK_INT(0, keyring_load(b, path, err, sizeof(err)), "load");
	CHECK_INT(2, keyring_count(b), "keys loaded");
	CHECK(keyring_key(b, 0) && memcmp(keyring_key(b, 0), k2, 32) == 0, "primary first");
	FILE *f = fopen(path, "w");
	fputs("{\"not\": \"an array\"}", f);
	fclose(f);
	struct keyring *c = keyring_new();
	CHECK_INT(-1, keyring_load(c, path, err, sizeof(err)), "malformed file");
	unlink(path);
	rmdir(dir);
	keyring_free(a);
	keyring_free(b);
	keyring_free(c);
}

int main(void)
{
	if (!keyring_available()) {
		printf("no AES-NI: libsodium cannot do AES-256-GCM here; skipping\n");
		printf("0 passed, 0 failed\n");
		return 0;
	}
	RUN(test_decrypts_every_udp_packet_serf_sent);
	RUN(test_decrypts_serf_tcp_push_pull_stream);
	RUN(test_wrong_key_does_not_decrypt);
	RUN(test_round_trip_packet_stream_and_version0_padding);
	RUN(test_rotation_install_use_remove);
	RUN(test_parse_refuses_aes128_and_junk);
	RUN(test_keyring_file_round_trip);
	return check_exit_code();
}
