/*
 * gossip/tags.h — serf's tag encoding in memberlist node meta.
 *
 * Owns: the codec only. Serf protocol >= 3 writes tags as the magic byte
 * 0xff followed by a msgpack map of string to string (old-spec raw strings,
 * as Go's codec writes them); older meta is a bare role string, which reads
 * as {"role": <meta>}. Decoding never allocates beyond the caller's arrays;
 * both directions go through lib/mp.h, gossip's one MessagePack layer.
 * Also the set of tags a Consul agent's serf advertises (tags_consul), so
 * the agent, the simulator and tests carry the same meta.
 */
#ifndef RUMOR_GOSSIP_TAGS_H
#define RUMOR_GOSSIP_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAGS_MAGIC 0xff
#define TAGS_MAX 64
#define TAG_KEY_MAX 128
#define TAG_VALUE_MAX 512

struct tag {
	char key[TAG_KEY_MAX + 1];
	char value[TAG_VALUE_MAX + 1];
};

/* Encode n tags into buf; returns the length, or -1 if it exceeds cap. */
int tags_encode(uint8_t *buf, size_t cap, const struct tag *tags, size_t n);

/*
 * The tags a Consul agent's serf carries, in the order rumor sends them:
 * role=node, dc, build, vsn=2, vsn_min=2, vsn_max=3, id, and rpc_port when
 * it is not NULL. Fills tags[0..TAGS_CONSUL_MAX); returns how many.
 */
#define TAGS_CONSUL_MAX 8
size_t tags_consul(struct tag *tags, const char *dc, const char *build, const char *id,
                   const char *rpc_port);
/*
 * Whether meta is a rumor agent's that runs the KV store, the members that
 * may be sent rumor's own user messages (type 0x80 and up): its "build" tag
 * ends in ":rumor" (a Consul agent writes "<version>:<commit>", a Serf agent
 * no build tag) and its "rpc_port" tag is a port (the KV sync port; rumor
 * leaves it out when KV is off). Anything else, a bare role or meta that
 * does not decode included, is not. Reads in place, never allocates.
 */
bool tags_is_rumor(const uint8_t *meta, size_t len);
/* Whether meta is a rumor agent's, KV store or not: its "build" tag ends in
 * ":rumor". Such a member takes table digests (gossip/swim.c). */
bool tags_is_rumor_build(const uint8_t *meta, size_t len);
/* Decode meta into tags[] (at most max); returns the count, or -1 (ML_BAD)
 * when malformed, with ml_wire_error() saying why (wire.h's convention). */
int tags_decode(const uint8_t *meta, size_t len, struct tag *tags, size_t max);

#endif
