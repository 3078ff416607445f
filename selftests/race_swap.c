// SPDX-License-Identifier: GPL-2.0
/*
 * Read-write mount(2) calls for guard_race.sh and guard_reload.sh, with
 * the source path as given (util-linux mount would resolve a symlink
 * itself first, and retry read-only after a refusal).
 *
 *   race_swap race SRC A B TARGET FSTYPE HIBDEV SECONDS MAXTRIES
 *	A child exchanges A and B (renameat2 RENAME_EXCHANGE) as fast as it
 *	can while the parent mounts SRC (A, or a path through it) read-write
 *	on TARGET, at most MAXTRIES times within SECONDS. After each mount
 *	that succeeds it looks at which device TARGET has and unmounts it.
 *	Prints one line of counts; rw_hibernated counts read-write mounts of
 *	HIBDEV (a block device node), which must never happen.
 *   race_swap once SRC TARGET FSTYPE
 *	Mounts SRC read-write once (and leaves it mounted); prints the
 *	number of open descriptors before and after.
 *   race_swap try SRC TARGET FSTYPE DATA
 *	One read-write mount with the option string DATA; prints "rw" (and
 *	unmounts) if it mounted, "refused" on EROFS, else the error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static int once(char **argv)
{
	int before = count_fds(), after;

	if (mount(argv[0], argv[1], argv[2], 0, NULL)) {
		printf("mount failed: %s\n", strerror(errno));
		return 1;
	}
	after = count_fds();
	printf("mounted fds_before=%d fds_after=%d\n", before, after);
	return 0;
}

static int try(char **argv)
{
	if (mount(argv[0], argv[1], argv[2], 0, argv[3])) {
		printf("%s\n", errno == EROFS ? "refused" : strerror(errno));
		return 0;
	}
	printf("rw\n");
	if (umount(argv[1]))
		perror("race_swap: umount");
	return 0;
}

static int race(char **argv)
{
	const char *src = argv[0], *a = argv[1], *b = argv[2], *target = argv[3];
	const char *fstype = argv[4], *hib = argv[5];
	double end = now() + atof(argv[6]);
	long max = atol(argv[7]), tries = 0, swaps_done;
	long rw_clean = 0, rw_hib = 0, refused = 0, notblk = 0, other = 0;
	int last_other = 0, status;
	struct stat hs, ts;
	pid_t child;

	if (stat(hib, &hs) || !S_ISBLK(hs.st_mode)) {
		fprintf(stderr, "race_swap: %s is not a block device\n", hib);
		return 2;
	}
	child = fork();
	if (child < 0)
		return 2;
	if (child == 0) {
		for (;;)
			if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)) {
				perror("race_swap: renameat2");
				_exit(2);
			}
	}
	while (tries < max && now() < end) {
		tries++;
		if (mount(src, target, fstype, 0, NULL)) {
			if (errno == EROFS)
				refused++;
			else if (errno == ENOTBLK)
				notblk++;
			else {
				other++;
				last_other = errno;
			}
			continue;
		}
		if (stat(target, &ts) == 0 && ts.st_dev == hs.st_rdev)
			rw_hib++;
		else
			rw_clean++;
		if (umount(target))
			perror("race_swap: umount");
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	swaps_done = WIFSIGNALED(status);
	printf("tries=%ld rw_clean=%ld rw_hibernated=%ld refused=%ld notblk=%ld other=%ld%s%s swapper=%s\n",
	       tries, rw_clean, rw_hib, refused, notblk, other,
	       last_other ? " last_other=" : "", last_other ? strerror(last_other) : "",
	       swaps_done ? "ran" : "failed");
	return swaps_done ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc == 10 && !strcmp(argv[1], "race"))
		return race(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "once"))
		return once(argv + 2);
	if (argc == 6 && !strcmp(argv[1], "try"))
		return try(argv + 2);
	fprintf(stderr, "usage: race_swap race SRC A B TARGET FSTYPE HIBDEV SECONDS MAXTRIES\n"
			"       race_swap once SRC TARGET FSTYPE\n"
			"       race_swap try SRC TARGET FSTYPE DATA\n");
	return 2;
}
