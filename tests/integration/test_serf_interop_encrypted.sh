#!/bin/bash
# tests/integration/test_serf_interop_encrypted.sh — test_serf_interop.sh with
# gossip encryption (-encrypt, the same 32-byte key) on every rumor and serf
# agent, plus a rumor and a serf agent with a wrong key that must never join.
SERF_INTEROP_ENCRYPT=1 exec bash "$(dirname "${BASH_SOURCE[0]}")/test_serf_interop.sh"
