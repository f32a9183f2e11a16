/*
 * agent/cli/cli_kv.h — `rumor kv get|put|delete|export|import`, Consul's kv
 * CLI over the local agent's /v1/kv (agent/http/httpc.h). Messages and the
 * export format ([{"key","flags","value"(base64)}], tab-indented) are
 * Consul's.
 */
#ifndef RUMOR_AGENT_CLI_CLI_KV_H
#define RUMOR_AGENT_CLI_CLI_KV_H

#include <stdio.h>

/* argv[0] is the kv subcommand ("get", ...). http_addr/token are the
 * defaults (-http-addr and -token override). Returns the exit code. */
int cli_kv_run(int argc, char **argv, const char *http_addr, const char *token, FILE *out,
               FILE *err);

#endif
