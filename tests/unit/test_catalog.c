/*
 * tests/unit/test_catalog.c — derived nodes (agent/catalog.h): a member
 * gossip reports is listed from its membership entry until a record of it
 * is stored; a stored record wins, and when it goes the node falls back to
 * the derived one; a member that leaves takes its derived node with it.
 * The catalog here has no store attached (the storage side is driven by
 * hand, as the store's resyncs drive it); the agent-level behaviour (bare
 * agents store nothing) is tests/integration/test_catalog.py's.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/catalog.h"
#include "tests/unit/check.h"

static void derive(struct catalog *c, const char *node, const char *addr)
{
	char *doc = catalog_derived_doc(node, "11111111-2222-3333-4444-555555555555", addr, "dc1");
	catalog_derive_node(c, node, doc, strlen(doc));
	free(doc);
}

static size_t services_of(const struct catalog *c, const char *node)
{
	const struct catalog_node *n = catalog_node_get(c, node, strlen(node));
	if (n == NULL)
		return (size_t)-1;
	return json_array_size(json_object_get((json_t *)n->doc, "Services"));
}

static void test_derived_doc_shape(void)
{
	char *doc = catalog_derived_doc("Web-1", "id-1", "10.0.0.7", "dc2");
	REQUIRE(doc != NULL, "a document");
	json_t *j = json_loads(doc, 0, NULL);
	REQUIRE(j != NULL, "it parses");
	CHECK_STR("Web-1", json_string_value(json_object_get(j, "Node")));
	CHECK_STR("id-1", json_string_value(json_object_get(j, "ID")));
	CHECK_STR("10.0.0.7", json_string_value(json_object_get(j, "Address")));
	CHECK_STR("dc2", json_string_value(json_object_get(j, "Datacenter")));
	json_t *ta = json_object_get(j, "TaggedAddresses");
	CHECK_STR("10.0.0.7", json_string_value(json_object_get(ta, "lan")));
	CHECK_STR("10.0.0.7", json_string_value(json_object_get(ta, "wan")));
	CHECK_INT(0, (int)json_object_size(json_object_get(j, "Meta")));
	CHECK_INT(0, (int)json_array_size(json_object_get(j, "Services")));
	CHECK_INT(0, (int)json_array_size(json_object_get(j, "Checks")));
	CHECK_INT(8, (int)json_object_size(j));
	json_decref(j);
	free(doc);
}

static void test_derived_node_listed_and_alive(void)
{
	struct catalog *c = catalog_new("self");
	size_t before = catalog_node_count(c);
	uint64_t idx = catalog_index(c);
	catalog_set_alive(c, "n2", true);
	derive(c, "n2", "10.0.0.2");
	const struct catalog_node *n = catalog_node_get(c, "N2", 2);
	REQUIRE(n != NULL, "the member is listed before any record of it is stored");
	CHECK_STR("10.0.0.2", n->address);
	CHECK_BOOL(true, n->alive);
	CHECK_INT((int)before + 1, (int)catalog_node_count(c));
	CHECK(catalog_index(c) > idx, "listing it moved the index (blocking queries wake)");
	idx = catalog_index(c);
	derive(c, "n2", "10.0.0.2");
	CHECK(catalog_index(c) == idx, "the same document again changes nothing");
	catalog_set_alive(c, "n2", false);
	n = catalog_node_get(c, "n2", 2);
	REQUIRE(n != NULL, "a failed member stays listed");
	CHECK_BOOL(false, n->alive);
	catalog_free(c);
}

static void test_stored_record_wins_and_falls_back(void)
{
	struct catalog *c = catalog_new("self");
	char err[256];
	catalog_set_alive(c, "n2", true);
	derive(c, "n2", "10.0.0.2");
	CHECK_INT(0, (int)services_of(c, "n2"));
	const char *rec = "{\"Node\":\"n2\",\"Address\":\"10.0.0.2\",\"Services\":[{\"ID\":\"web\","
	                  "\"Service\":\"web\",\"Port\":80}],\"Checks\":[]}";
	REQUIRE_INT(0, catalog_apply_node(c, "n2", rec, strlen(rec), 0, err, sizeof(err)), "%s",
	            err);
	CHECK_INT(1, (int)services_of(c, "n2"), "the stored record replaces the derived node");
	derive(c, "n2", "10.0.0.9");
	CHECK_INT(1, (int)services_of(c, "n2"), "a new derived document does not replace a record");
	CHECK_STR("10.0.0.2", catalog_node_get(c, "n2", 2)->address);
	catalog_remove_node(c, "n2", 0);
	const struct catalog_node *n = catalog_node_get(c, "n2", 2);
	REQUIRE(n != NULL, "the record's key went: the node falls back to the derived one");
	CHECK_INT(0, (int)services_of(c, "n2"));
	CHECK_STR("10.0.0.9", n->address, "the latest derived document");
	catalog_remove_node(c, "n2", 0);
	CHECK(catalog_node_get(c, "n2", 2) != NULL, "no key to remove: a derived node stays");
	catalog_free(c);
}

static void test_underive_removes_only_derived(void)
{
	struct catalog *c = catalog_new("self");
	char err[256];
	derive(c, "n2", "10.0.0.2");
	derive(c, "n3", "10.0.0.3");
	const char *rec =
	        "{\"Node\":\"n3\",\"Address\":\"10.0.0.3\",\"Services\":[],\"Checks\":[]}";
	REQUIRE_INT(0, catalog_apply_node(c, "n3", rec, strlen(rec), 0, err, sizeof(err)));
	catalog_underive_node(c, "n2");
	CHECK(catalog_node_get(c, "n2", 2) == NULL, "a member that left takes its derived node");
	catalog_underive_node(c, "n3");
	CHECK(catalog_node_get(c, "n3", 2) != NULL, "a stored record stays (the store deletes it)");
	catalog_remove_node(c, "n3", 0);
	CHECK(catalog_node_get(c, "n3", 2) == NULL, "nothing to fall back to once underived");
	derive(c, "n2", "10.0.0.2");
	CHECK(catalog_node_get(c, "n2", 2) != NULL, "a member that comes back is listed again");
	catalog_free(c);
}

static void test_self_is_never_derived(void)
{
	struct catalog *c = catalog_new("Self");
	size_t before = catalog_node_count(c);
	derive(c, "self", "10.0.0.1");
	CHECK_INT((int)before, (int)catalog_node_count(c), "our own node comes from our document");
	catalog_free(c);
}

static void test_bad_derived_document_lists_nothing(void)
{
	struct catalog *c = catalog_new("self");
	catalog_derive_node(c, "n2", "{not json", 9);
	CHECK(catalog_node_get(c, "n2", 2) == NULL, "not a document: not listed");
	catalog_remove_node(c, "n2", 0);
	CHECK(catalog_node_get(c, "n2", 2) == NULL, "nothing to fall back to");
	catalog_free(c);
}

int main(void)
{
	RUN(test_derived_doc_shape);
	RUN(test_derived_node_listed_and_alive);
	RUN(test_stored_record_wins_and_falls_back);
	RUN(test_underive_removes_only_derived);
	RUN(test_self_is_never_derived);
	RUN(test_bad_derived_document_lists_nothing);
	return check_exit_code();
}
