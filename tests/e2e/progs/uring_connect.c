/*
 * uring_connect.c: connects a TCP socket only through io_uring
 * (IORING_OP_CONNECT): the connect connect(2)'s hooks do not see.
 * Usage: uring_connect IPV4 PORT. Prints "res N" (the completion's
 * result: 0, or -errno). Exit: 0 connected, 1 refused, 2 ring setup or
 * socket failed.
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
	if (argc != 3 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || ring_init(&r) != 0)
		return 2;
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return 2;
	struct io_uring_sqe e;
	memset(&e, 0, sizeof(e));
	e.opcode = IORING_OP_CONNECT;
	e.fd = s;
	e.addr = (unsigned long)&a;
	e.off = sizeof(a); /* addr2: the address length */
	int res = ring_do(&r, &e);
	printf("res %d\n", res);
	return res == 0 ? 0 : 1;
}
