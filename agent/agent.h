/*
 * agent/agent.h — `rumor agent`: wires the modules onto one libev loop.
 *
 * Owns: the loop, the configuration, the gossip transport (and through it
 * the SWIM core), the HTTP server and its API routes (agent/api.c), signal
 * handling (SIGINT/SIGTERM: leave as configured, then exit; SIGHUP: reload
 * log level and node meta), joins at start and retry-join, the node ID in
 * the data directory, the pid file, and the dev-mode temporary directory.
 */
#ifndef RUMOR_AGENT_AGENT_H
#define RUMOR_AGENT_AGENT_H

/* `rumor agent ...`: returns the process exit code. The agent's state and
 * what its parts may ask of it are in agent/env.h. */
int agent_main(int argc, char **argv);

#endif
