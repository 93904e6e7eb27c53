/*
 * uring_connect.c: a TCP connect and a UDP send with an address, each
 * only through io_uring (IORING_OP_CONNECT, IORING_OP_SENDMSG on an
 * unconnected socket): what connect(2)'s and sendto's hooks do not see.
 * Usage: uring_connect IPV4 TCP_PORT UDP_PORT. Prints "connect N" and
 * "send N" (each completion's result: 0 or bytes sent, or -errno). Exit:
 * 0 both succeeded, 1 either failed, 2 ring setup or socket failed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "uring.h"

int main(int argc, char **argv)
{
	struct ring r;
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	if (argc != 4 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || ring_init(&r) != 0)
		return 2;
	int tcp = socket(AF_INET, SOCK_STREAM, 0), udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (tcp < 0 || udp < 0)
		return 2;
	struct io_uring_sqe e;
	memset(&e, 0, sizeof(e));
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	e.opcode = IORING_OP_CONNECT;
	e.fd = tcp;
	e.addr = (unsigned long)&a;
	e.off = sizeof(a); /* addr2: the address length */
	int conn = ring_do(&r, &e);
	printf("connect %d\n", conn);

	struct sockaddr_in to = a;
	to.sin_port = htons((unsigned short)atoi(argv[3]));
	struct iovec iov = { .iov_base = "ring", .iov_len = 4 };
	struct msghdr m;
	memset(&m, 0, sizeof(m));
	m.msg_name = &to;
	m.msg_namelen = sizeof(to);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	memset(&e, 0, sizeof(e));
	e.opcode = IORING_OP_SENDMSG;
	e.fd = udp;
	e.addr = (unsigned long)&m;
	e.len = 1;
	int sent = ring_do(&r, &e);
	printf("send %d\n", sent);
	return conn == 0 && sent == 4 ? 0 : 1;
}
