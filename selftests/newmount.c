// SPDX-License-Identifier: GPL-2.0
/*
 * Mount through the new mount API, for the snapguard selftests.
 *
 *   newmount create FSTYPE SOURCE TARGET [ro]   fsopen/fsconfig/fsmount/move_mount
 *   newmount rw TARGET                          fspick + "rw" + reconfigure
 *
 * Prints the file system context's log messages (where snapguard explains
 * a refusal) and exits with the errno of the failing call (0 on success).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static void drain_log(int fd)
{
	char buf[1024];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = 0;
		printf("fclog: %s\n", buf);
	}
}

static int fail(const char *what, int fd)
{
	int e = errno;

	printf("%s: %s\n", what, strerror(e));
	if (fd >= 0)
		drain_log(fd);
	return e ? e : 1;
}

int main(int argc, char **argv)
{
	int fd, mfd;

	if (argc >= 5 && !strcmp(argv[1], "create")) {
		fd = fsopen(argv[2], FSOPEN_CLOEXEC);
		if (fd < 0)
			return fail("fsopen", -1);
		if (fsconfig(fd, FSCONFIG_SET_STRING, "source", argv[3], 0))
			return fail("fsconfig source", fd);
		if (argc >= 6 && !strcmp(argv[5], "ro") &&
		    fsconfig(fd, FSCONFIG_SET_FLAG, "ro", NULL, 0))
			return fail("fsconfig ro", fd);
		if (fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
			return fail("fsconfig create", fd);
		mfd = fsmount(fd, FSMOUNT_CLOEXEC, 0);
		if (mfd < 0)
			return fail("fsmount", fd);
		if (move_mount(mfd, "", AT_FDCWD, argv[4], MOVE_MOUNT_F_EMPTY_PATH))
			return fail("move_mount", fd);
		drain_log(fd);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "rw")) {
		fd = fspick(AT_FDCWD, argv[2], FSPICK_CLOEXEC);
		if (fd < 0)
			return fail("fspick", -1);
		if (fsconfig(fd, FSCONFIG_SET_FLAG, "rw", NULL, 0))
			return fail("fsconfig rw", fd);
		if (fsconfig(fd, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0))
			return fail("fsconfig reconfigure", fd);
		drain_log(fd);
		return 0;
	}
	fprintf(stderr, "usage: newmount create FSTYPE SOURCE TARGET [ro] | newmount rw TARGET\n");
	return 2;
}
