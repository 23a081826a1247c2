/*
 * Shared by the fuzz targets: invariant checks that abort (so libFuzzer
 * records the input), and a silent ALSA error handler.
 */
#ifndef ALSABT_FUZZ_COMMON_H
#define ALSABT_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

/* A broken invariant: say which, then abort() so libFuzzer saves the input. */
#define INVARIANT(cond, ...) do {                                              \
	if (!(cond)) {                                                          \
		fprintf(stderr, "INVARIANT %s:%d: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__);                                   \
		fputc('\n', stderr);                                            \
		abort();                                                        \
	}                                                                       \
} while (0)

/* caps_rates' answer into an array of max: -EINVAL, or at most max distinct rates. */
#define CHECK_CAPS_RATES(nrates, rates, max) do {                               \
	INVARIANT((nrates) == -EINVAL || ((nrates) >= 0 && (nrates) <= (max)),  \
		  "caps_rates %d (max %d)", (nrates), (max));                   \
	for (int i_ = 0; i_ < (nrates); i_++)                                   \
		for (int j_ = 0; j_ < i_; j_++)                                 \
			INVARIANT((rates)[i_] != (rates)[j_], "rate %u twice", (rates)[i_]); \
} while (0)

/* The semantic invariants of the findings (see README.md), fixed since: on
 * by default as regression checks; ALSA_BT_FUZZ_STRICT=0 turns them off. */
static inline int fuzz_strict(void)
{
	static int strict = -1;

	if (strict < 0) {
		const char *s = getenv("ALSA_BT_FUZZ_STRICT");
		strict = !(s && *s == '0');
	}
	return strict;
}

#endif
