/*
 * gossip/keyring.h — memberlist's gossip encryption (security.go) and keyring.
 *
 * Owns: the installed keys (the primary first; it encrypts, every key is
 * tried to decrypt), their libsodium AES-256-GCM states, the packet and
 * stream encryption formats, base64 key parsing, and the keyring file.
 *
 * Formats (memberlist 0.2.2):
 *   packet:  [vsn 1][nonce 12][ciphertext + tag 16], no associated data;
 *            vsn 0 (memberlist protocol 1) is PKCS7-padded and is decrypted,
 *            never produced.
 *   stream:  [10 = encryptMsg][length u32 BE][packet form], the first 5
 *            bytes authenticated as associated data.
 *
 * Limits: libsodium implements only AES-256-GCM and only on CPUs with
 * AES-NI and CLMUL. Keys of 16 or 24 bytes (AES-128/192, which Serf
 * accepts) are refused with a message saying so, and without hardware
 * support (keyring_available() false) encryption cannot be enabled.
 *
 * Keyring file: a JSON array of base64 keys, primary first (serf's
 * -keyring-file format).
 *
 * Error convention: functions return 0 (or a length) on success and -1 on
 * failure, writing a message into err where they take one; stream
 * decryption returns ML_OK / ML_AGAIN / ML_BAD as the wire decoders do.
 */
#ifndef RUMOR_GOSSIP_KEYRING_H
#define RUMOR_GOSSIP_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYRING_KEY_LEN 32
#define KEYRING_MAX_KEYS 16
#define KEYRING_OVERHEAD 29    /* version 1 + nonce 12 + tag 16 */
#define KEYRING_ENCRYPT_MSG 10 /* memberlist encryptMsg */

struct keyring;

/* True when this CPU can run libsodium's AES-256-GCM. */
bool keyring_available(void);

/* An empty keyring (NULL never returned; aborts on OOM). */
struct keyring *keyring_new(void);
void keyring_free(struct keyring *k);

/* Decode a base64 key into out[32]; 0, or -1 with err (bad base64, or a
 * 16/24-byte key that libsodium cannot use, or any other length). */
int keyring_parse_key(const char *b64, uint8_t out[KEYRING_KEY_LEN], char *err, size_t errlen);
/* Base64 of a 32-byte key into out (cap >= 45). */
void keyring_format_key(const uint8_t key[KEYRING_KEY_LEN], char *out, size_t cap);

/* Install a key (becomes primary if the ring was empty). 0 or -1 (full). */
int keyring_add(struct keyring *k, const uint8_t key[KEYRING_KEY_LEN], char *err, size_t errlen);
/* Make an installed key primary. 0, or -1 if not installed. */
int keyring_use(struct keyring *k, const uint8_t key[KEYRING_KEY_LEN], char *err, size_t errlen);
/* Remove a key; the primary cannot be removed. 0 or -1. */
int keyring_remove(struct keyring *k, const uint8_t key[KEYRING_KEY_LEN], char *err, size_t errlen);
size_t keyring_count(const struct keyring *k);
/* Key i (0 is the primary), or NULL. */
const uint8_t *keyring_key(const struct keyring *k, size_t i);

/* Encrypt msg as a packet (version 1) into out; returns bytes or -1. */
int keyring_encrypt(const struct keyring *k, const uint8_t *msg, size_t len, const uint8_t *ad,
                    size_t adlen, uint8_t *out, size_t cap);
/* Decrypt a packet (version 0 or 1) with any key; returns plaintext length
 * or -1 (too short, unknown version, no key opens it). */
int keyring_decrypt(const struct keyring *k, const uint8_t *in, size_t len, const uint8_t *ad,
                    size_t adlen, uint8_t *out, size_t cap);

/* A whole stream message: [10][len][packet]; malloc'd into *out. 0 or -1. */
int keyring_encrypt_stream(const struct keyring *k, const uint8_t *msg, size_t len, uint8_t **out,
                           size_t *out_len);
/*
 * Decrypt the stream bytes read so far (in[0] == 10). ML_AGAIN until the
 * whole message is there; ML_OK with the plaintext malloc'd in *out and the
 * bytes consumed in *used; ML_BAD when it is oversized or no key opens it.
 */
int keyring_decrypt_stream(const struct keyring *k, const uint8_t *in, size_t len, uint8_t **out,
                           size_t *out_len, size_t *used);

/* Keyring file (JSON array of base64 keys, primary first). 0 or -1 with err;
 * load returns 1 when the file does not exist. */
int keyring_save(const struct keyring *k, const char *path, char *err, size_t errlen);
int keyring_load(struct keyring *k, const char *path, char *err, size_t errlen);

#endif
