// SPDX-License-Identifier: GPL-2.0
/*
 * Discard a byte range of a block device (BLKDISCARD), for the snapguard
 * selftests (the guest has no blkdiscard).
 *
 *   discard DEVICE OFFSET LENGTH
 *
 * Exits with the errno of the failing call (0 on success).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	uint64_t range[2];
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: discard DEVICE OFFSET LENGTH\n");
		return EINVAL;
	}
	range[0] = strtoull(argv[2], NULL, 0);
	range[1] = strtoull(argv[3], NULL, 0);
	fd = open(argv[1], O_WRONLY);
	if (fd < 0 || ioctl(fd, BLKDISCARD, range) < 0) {
		int e = errno;

		fprintf(stderr, "discard %s: %s\n", argv[1], strerror(e));
		return e;
	}
	close(fd);
	return 0;
}
