/*
 * vm_read.c: reaches into another process's memory, as a tool call turned
 * against its MCP client would. `vm_read PID` reads the first 4 bytes of
 * PID's first mapping with process_vm_readv(2) (an ELF header: prints
 * "ELF"); `vm_read PID attach` attaches with ptrace(PTRACE_ATTACH), waits
 * for the stop and detaches (prints "attached").
 * Exit: 0 done, 2 maps unreadable, 3 syscall failed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 1;
	pid_t pid = atoi(argv[1]);
	if (argc > 2 && strcmp(argv[2], "attach") == 0) {
		if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) {
			perror("ptrace");
			return 3;
		}
		waitpid(pid, NULL, __WALL);
		ptrace(PTRACE_DETACH, pid, 0, 0);
		puts("attached");
		return 0;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	FILE *f = fopen(path, "r");
	unsigned long start = 0;
	if (!f || fscanf(f, "%lx", &start) != 1)
		return 2;
	fclose(f);
	char buf[4] = { 0 };
	struct iovec local = { buf, sizeof(buf) }, remote = { (void *)start, sizeof(buf) };
	if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(buf)) {
		perror("process_vm_readv");
		return 3;
	}
	printf("%.3s\n", buf + 1);
	return 0;
}
