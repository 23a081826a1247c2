/* What a test tool holds: the entries of /proc/self/fd or /proc/self/task. */
#ifndef ALSABT_TOOLS_COUNT_DIR_H
#define ALSABT_TOOLS_COUNT_DIR_H

#include <dirent.h>

/* Entries of a directory, "." and ".." left out; -1 if it cannot be read.
 * For /proc/self/fd, the count includes the descriptor opendir holds. */
static inline int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

#endif
