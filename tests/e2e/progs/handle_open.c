/*
 * handle_open.c: prints a file's first 4 KiB, opened by file handle:
 * name_to_handle_at(PATH), then open_by_handle_at on the mount (needs
 * CAP_DAC_READ_SEARCH). The kernel resolves the handle to whichever
 * dentry of the inode it has, not to PATH.
 * Usage: handle_open PATH. Exit: 0 read, 2 no handle, 3 open, 4 read failed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 1;
	struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	if (!h)
		return 2;
	h->handle_bytes = MAX_HANDLE_SZ;
	int mount_id;
	if (name_to_handle_at(AT_FDCWD, argv[1], h, &mount_id, 0) != 0) {
		perror("name_to_handle_at");
		return 2;
	}
	/* the mount: any fd on it, here the file's directory */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = 0;
	int mfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
	int fd = mfd < 0 ? -1 : open_by_handle_at(mfd, h, O_RDONLY);
	if (fd < 0) {
		perror("open_by_handle_at");
		return 3;
	}
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0)
		return 4;
	fwrite(buf, 1, (size_t)n, stdout);
	return 0;
}
