/*
 * lib/net.h — socket helpers (Redis anet.c's job): parse and format
 * numeric addresses, open listening TCP and bound UDP sockets, start a
 * non-blocking TCP connect from a chosen source address.
 *
 * Every socket is non-blocking and close-on-exec. IPv4 and IPv6 addresses
 * are numeric only (no DNS lookups here). A listening IPv6 socket is
 * IPV6_V6ONLY, so 0.0.0.0 and :: can be bound side by side.
 *
 * Error convention: functions return a file descriptor (>= 0) or 0 on
 * success, and -errno on failure; the ones that take err write a message
 * that names the address ("listen tcp 127.0.0.1:8500: Address already in
 * use").
 */
#ifndef RUMOR_LIB_NET_H
#define RUMOR_LIB_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Numeric IPv4/IPv6 addr and port into *ss (*sl its length); 0 or -EINVAL. */
int net_addr_parse(const char *addr, uint16_t port, struct sockaddr_storage *ss, socklen_t *sl);
/* "ip:port", or "[ip]:port" for IPv6, into buf (cap >= 64 holds any). */
void net_addr_format(const struct sockaddr_storage *ss, char *buf, size_t cap);
/* The IP of ss without the port, into buf (cap >= 46 holds any). */
void net_addr_ip(const struct sockaddr_storage *ss, char *buf, size_t cap);
/* The port of ss (host order). */
uint16_t net_addr_port(const struct sockaddr_storage *ss);
/* The local port fd is bound to, or -errno. */
int net_bound_port(int fd);
/* A listening TCP socket on addr:port (SO_REUSEADDR); backlog <= 0 means
 * SOMAXCONN (Go's default, as memberlist gets it). fd or -errno with err. */
int net_tcp_listen(const char *addr, uint16_t port, int backlog, char *err, size_t errlen);
/* A UDP socket bound to addr:port (SO_REUSEADDR). fd or -errno with err. */
int net_udp_bind(const char *addr, uint16_t port, char *err, size_t errlen);
/* Start a connect to ss from the IPv4 address src when it is one and not
 * 0.0.0.0 (several agents on one host, partitions keyed on source), with
 * TCP_NODELAY. fd, the connect possibly still in progress, or -errno. */
int net_tcp_connect(const struct sockaddr_storage *ss, socklen_t sl, const char *src);
/* O_NONBLOCK on fd; 0 or -errno. */
int net_set_nonblock(int fd);

#endif
