/*
 * gossip/keyring.c — see keyring.h.
 *
 * Each key keeps a precomputed libsodium AES-256-GCM state (beforenm), so
 * a packet costs one seal/open without re-expanding the key. Decryption
 * tries the primary first, then the others, as memberlist does.
 */
#define _GNU_SOURCE
#include "gossip/keyring.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/wire.h"
#include "lib/cursor.h"
#include "lib/xalloc.h"

#define NONCE_LEN 12
#define TAG_LEN 16

struct keyring {
	uint8_t keys[KEYRING_MAX_KEYS][KEYRING_KEY_LEN];
	crypto_aead_aes256gcm_state *st; /* KEYRING_MAX_KEYS, aligned */
	size_t n;
};

bool keyring_available(void)
{
	if (sodium_init() < 0)
		return false;
	return crypto_aead_aes256gcm_is_available() != 0;
}

struct keyring *keyring_new(void)
{
	struct keyring *k = xcalloc(1, sizeof(*k));
	k->st = sodium_malloc(sizeof(crypto_aead_aes256gcm_state) * KEYRING_MAX_KEYS);
	if (k->st == NULL)
		abort();
	return k;
}

void keyring_free(struct keyring *k)
{
	if (k == NULL)
		return;
	sodium_memzero(k->keys, sizeof(k->keys));
	sodium_free(k->st);
	free(k);
}

int keyring_parse_key(const char *b64, uint8_t out[KEYRING_KEY_LEN], char *err, size_t errlen)
{
	uint8_t buf[64];
	size_t n = 0;
	if (b64 == NULL || sodium_base642bin(buf, sizeof(buf), b64, strlen(b64), NULL, &n, NULL,
	                                     sodium_base64_VARIANT_ORIGINAL) != 0) {
		snprintf(err, errlen,
		         "invalid key: not base64 (use `rumor keygen` or `serf keygen`)");
		return -1;
	}
	if (n == 16 || n == 24) {
		snprintf(
		        err, errlen,
		        "invalid key: %zu-byte keys (AES-%zu) are valid for Serf but not supported "
		        "by rumor, which uses libsodium's AES-256-GCM: use a 32-byte key",
		        n, n * 8);
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	if (n != KEYRING_KEY_LEN) {
		snprintf(err, errlen, "invalid key: must be 32 bytes, got %zu", n);
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	memcpy(out, buf, KEYRING_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

void keyring_format_key(const uint8_t key[KEYRING_KEY_LEN], char *out, size_t cap)
{
	if (cap < sodium_base64_ENCODED_LEN(KEYRING_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)) {
		if (cap > 0)
			out[0] = '\0';
		return;
	}
	sodium_bin2base64(out, cap, key, KEYRING_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

static int find_key(const struct keyring *k, const uint8_t key[KEYRING_KEY_LEN])
{
	for (size_t i = 0; i < k->n; i++)
		if (sodium_memcmp(k->keys[i], key, KEYRING_KEY_LEN) == 0)
			return (int)i;
	return -1;
}

static void swap_keys(struct keyring *k, size_t a, size_t b)
{
	uint8_t tmp[KEYRING_KEY_LEN];
	crypto_aead_aes256gcm_state ts;
	memcpy(tmp, k->keys[a], KEYRING_KEY_LEN);
	memcpy(k->keys[a], k->keys[b], KEYRING_KEY_LEN);
	memcpy(k->keys[b], tmp, KEYRING_KEY_LEN);
	memcpy(&ts, &k->st[a], sizeof(ts));
	memcpy(&k->st[a], &k->st[b], sizeof(ts));
	memcpy(&k->st[b], &ts, sizeof(ts));
	sodium_memzero(tmp, sizeof(tmp));
	sodium_memzero(&ts, sizeof(ts));
}

int keyring_add(struct keyring *k, const uint8_t key[KEYRING_KEY_LEN], char *err, size_t errlen)
{
	if (!keyring_available()) {
		snprintf(err, errlen,
		         "gossip encryption needs AES-NI: this CPU has no hardware "
		         "AES-GCM, which libsodium requires");
		return -1;
	}
	if (find_key(k, key) >= 0)
		return 0;
	if (k->n == KEYRING_MAX_KEYS) {
		snprintf(err, errlen, "keyring full (%d keys)", KEYRING_MAX_KEYS);
		return -1;
	}
	memcpy(k->keys[k->n], key, KEYRING_KEY_LEN);
	crypto_aead_aes256gcm_beforenm(&k->st[k->n], key);
	k->n++;
	return 0;
}

int keyring_use(struct keyring *k, const uint8_t key[KEYRING_KEY_LEN], char *err, size_t errlen)
{
	int i = find_key(k, key);
	if (i < 0) {
		snprintf(err, errlen, "Requested key is not in the keyring");
		return -1;
	}
	if (i > 0)
		swap_keys(k, 0, (size_t)i);
	return 0;
}

int keyring_remove(struct keyring *k, const uint8_t key[KEYRING_KEY_LEN], char *err, size_t errlen)
{
	int i = find_key(k, key);
	if (i == 0) {
		snprintf(err, errlen, "Removing the primary key is not allowed");
		return -1;
	}
	if (i < 0)
		return 0; /* serf: removing an absent key is not an error */
	for (size_t j = (size_t)i; j + 1 < k->n; j++)
		swap_keys(k, j, j + 1);
	k->n--;
	sodium_memzero(k->keys[k->n], KEYRING_KEY_LEN);
	sodium_memzero(&k->st[k->n], sizeof(k->st[0]));
	return 0;
}

size_t keyring_count(const struct keyring *k)
{
	return k->n;
}

const uint8_t *keyring_key(const struct keyring *k, size_t i)
{
	return i < k->n ? k->keys[i] : NULL;
}

int keyring_encrypt(const struct keyring *k, const uint8_t *msg, size_t len, const uint8_t *ad,
                    size_t adlen, uint8_t *out, size_t cap)
{
	if (k->n == 0 || cap < len + KEYRING_OVERHEAD || len > INT32_MAX - KEYRING_OVERHEAD)
		return -1;
	out[0] = 1;
	randombytes_buf(out + 1, NONCE_LEN);
	unsigned long long clen = 0;
	if (crypto_aead_aes256gcm_encrypt_afternm(out + 1 + NONCE_LEN, &clen, msg, len, ad, adlen,
	                                          NULL, out + 1, &k->st[0]) != 0)
		return -1;
	return (int)(1 + NONCE_LEN + clen);
}

int keyring_decrypt(const struct keyring *k, const uint8_t *in, size_t len, const uint8_t *ad,
                    size_t adlen, uint8_t *out, size_t cap)
{
	if (len < 1)
		return -1;
	uint8_t vsn = in[0];
	if (vsn > 1)
		return -1;
	size_t min = 1 + NONCE_LEN + TAG_LEN + (vsn == 0 ? 16 : 0);
	if (len < min || cap < len - 1 - NONCE_LEN - TAG_LEN)
		return -1;
	const uint8_t *nonce = in + 1;
	const uint8_t *ct = in + 1 + NONCE_LEN;
	size_t ctlen = len - 1 - NONCE_LEN;
	for (size_t i = 0; i < k->n; i++) {
		unsigned long long plen = 0;
		if (crypto_aead_aes256gcm_decrypt_afternm(out, &plen, NULL, ct, ctlen, ad, adlen,
		                                          nonce, &k->st[i]) != 0)
			continue;
		if (vsn == 0) {
			/* PKCS7: last byte says how much padding (1..16) */
			if (plen == 0)
				return -1;
			uint8_t pad = out[plen - 1];
			if (pad == 0 || pad > 16 || pad > plen)
				return -1;
			plen -= pad;
		}
		return (int)plen;
	}
	return -1;
}

int keyring_encrypt_stream(const struct keyring *k, const uint8_t *msg, size_t len, uint8_t **out,
                           size_t *out_len)
{
	size_t enc = len + KEYRING_OVERHEAD;
	if (len > ML_PUSH_STATE_MAX)
		return -1;
	uint8_t *buf = xmalloc(5 + enc);
	buf[0] = KEYRING_ENCRYPT_MSG;
	be32_put(buf + 1, (uint32_t)enc);
	int n = keyring_encrypt(k, msg, len, buf, 5, buf + 5, enc);
	if (n < 0 || (size_t)n != enc) {
		free(buf);
		return -1;
	}
	*out = buf;
	*out_len = 5 + enc;
	return 0;
}

int keyring_decrypt_stream(const struct keyring *k, const uint8_t *in, size_t len, uint8_t **out,
                           size_t *out_len, size_t *used)
{
	if (len < 1)
		return ML_AGAIN;
	if (in[0] != KEYRING_ENCRYPT_MSG)
		return ML_BAD;
	if (len < 5)
		return ML_AGAIN;
	uint32_t more = be32_get(in + 1);
	if (more > ML_PUSH_STATE_MAX || more < 1 + NONCE_LEN + TAG_LEN)
		return ML_BAD;
	if (len - 5 < more)
		return ML_AGAIN;
	uint8_t *plain = xmalloc(more);
	int n = keyring_decrypt(k, in + 5, more, in, 5, plain, more);
	if (n < 0) {
		free(plain);
		return ML_BAD;
	}
	*out = plain;
	*out_len = (size_t)n;
	*used = 5 + (size_t)more;
	return ML_OK;
}

int keyring_save(const struct keyring *k, const char *path, char *err, size_t errlen)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < k->n; i++) {
		char b64[64];
		keyring_format_key(k->keys[i], b64, sizeof(b64));
		json_array_append_new(arr, json_string(b64));
	}
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%.4090s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		json_decref(arr);
		return -1;
	}
	int rc = json_dumpf(arr, f, JSON_INDENT(2));
	json_decref(arr);
	if (fclose(f) != 0 || rc != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int keyring_load(struct keyring *k, const char *path, char *err, size_t errlen)
{
	json_error_t je;
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	json_t *arr = json_loadf(f, 0, &je);
	fclose(f);
	if (arr == NULL || !json_is_array(arr)) {
		snprintf(err, errlen, "%s: not a JSON array of keys", path);
		json_decref(arr);
		return -1;
	}
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		uint8_t key[KEYRING_KEY_LEN];
		char e[256];
		if (!json_is_string(v) ||
		    keyring_parse_key(json_string_value(v), key, e, sizeof(e)) < 0 ||
		    keyring_add(k, key, e, sizeof(e)) < 0) {
			snprintf(err, errlen, "%s: key %zu: %s", path, i,
			         json_is_string(v) ? e : "not a string");
			json_decref(arr);
			return -1;
		}
	}
	json_decref(arr);
	return 0;
}
