/*
 * uring_read.c: prints a file's first 4 KiB, read only through io_uring
 * (IORING_OP_OPENAT, then IORING_OP_READ), with raw syscalls (no liburing):
 * the opens and reads the sensor's syscall hooks do not see.
 * Usage: uring_read PATH. Exit: 0 read, 2 ring setup, 3 open, 4 read failed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "uring.h"

int main(int argc, char **argv)
{
	struct ring r;
	static char buf[4096];
	if (argc != 2 || ring_init(&r) != 0)
		return 2;
	struct io_uring_sqe e;
	memset(&e, 0, sizeof(e));
	e.opcode = IORING_OP_OPENAT;
	e.fd = AT_FDCWD;
	e.addr = (unsigned long)argv[1];
	e.open_flags = O_RDONLY;
	int fd = ring_do(&r, &e);
	if (fd < 0)
		return 3;
	memset(&e, 0, sizeof(e));
	e.opcode = IORING_OP_READ;
	e.fd = fd;
	e.addr = (unsigned long)buf;
	e.len = sizeof(buf);
	int n = ring_do(&r, &e);
	if (n < 0)
		return 4;
	return write(1, buf, (size_t)n) == n ? 0 : 4;
}
