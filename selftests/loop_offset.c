// SPDX-License-Identifier: GPL-2.0
/*
 * Change an attached loop device's offset in place (LOOP_SET_STATUS64),
 * which util-linux losetup cannot do, for the snapguard selftests.
 *
 *   loop_offset /dev/loopN OFFSET
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct loop_info64 info;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: loop_offset /dev/loopN OFFSET\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || ioctl(fd, LOOP_GET_STATUS64, &info) < 0) {
		perror(argv[1]);
		return 1;
	}
	info.lo_offset = strtoull(argv[2], NULL, 0);
	if (ioctl(fd, LOOP_SET_STATUS64, &info) < 0) {
		perror("LOOP_SET_STATUS64");
		return 1;
	}
	return 0;
}
