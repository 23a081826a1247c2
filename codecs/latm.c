/* LATM AudioMuxElement writing and reading (ISO/IEC 14496-3 section 1.7.3). */
#include <errno.h>

#include "latm.h"

#define AOT_AAC_LC 2
#define FILL_FULLNESS 0xff        /* "buffer fullness not signalled" */

static const unsigned sf_index[] = { 96000, 88200, 64000, 48000, 44100, 32000, 24000,
				     22050, 16000, 12000, 11025, 8000, 7350 };

struct bits {
	uint8_t *buf;
	const uint8_t *in;
	size_t size, pos;             /* pos in bits */
	int overflow;
};

static void put(struct bits *b, unsigned n, uint32_t v)
{
	while (n--) {
		size_t byte = b->pos / 8;

		if (byte >= b->size) {
			b->overflow = 1;
			return;
		}
		if (b->pos % 8 == 0)
			b->buf[byte] = 0;
		if (v >> n & 1)
			b->buf[byte] |= 0x80 >> b->pos % 8;
		b->pos++;
	}
}

static uint32_t get(struct bits *b, unsigned n)
{
	uint32_t v = 0;

	while (n--) {
		if (b->pos / 8 >= b->size) {
			b->overflow = 1;
			return 0;
		}
		v = v << 1 | (b->in[b->pos / 8] >> (7 - b->pos % 8) & 1);
		b->pos++;
	}
	return v;
}

static int rate_index(unsigned rate)
{
	for (unsigned i = 0; i < sizeof(sf_index) / sizeof(sf_index[0]); i++)
		if (sf_index[i] == rate)
			return i;
	return -1;
}

/* LatmGetValue: 2 bits of byte count - 1, then the value. One byte is enough here. */
static void put_value(struct bits *b, uint8_t v)
{
	put(b, 2, 0);
	put(b, 8, v);
}

/* LatmGetValue as put_value writes it (one byte); anything else reads as ~0. */
static uint32_t get_value(struct bits *b)
{
	return get(b, 2) ? ~0u : get(b, 8);
}

size_t latm_overhead(size_t len)
{
	return 9 + len / 255 + 1;     /* 66 bits of configuration, the length bytes, alignment */
}

int latm_write(uint8_t *out, size_t size, unsigned rate, unsigned channels,
	       const uint8_t *frame, size_t len)
{
	struct bits b = { .buf = out, .size = size };
	int sfi = rate_index(rate);

	if (sfi < 0 || channels < 1 || channels > 7)
		return -EINVAL;
	put(&b, 1, 0);                /* useSameStreamMux: the configuration follows */
	put(&b, 1, 1);                /* audioMuxVersion 1 (as fdk-aac and Android send) */
	put(&b, 1, 0);                /* audioMuxVersionA */
	put_value(&b, FILL_FULLNESS); /* taraBufferFullness */
	put(&b, 1, 1);                /* allStreamsSameTimeFraming */
	put(&b, 6, 0);                /* numSubFrames - 1 */
	put(&b, 4, 0);                /* numProgram - 1 */
	put(&b, 3, 0);                /* numLayer - 1 */
	put_value(&b, 16);            /* ascLen in bits: */
	put(&b, 5, AOT_AAC_LC);       /*   AudioSpecificConfig */
	put(&b, 4, sfi);
	put(&b, 4, channels);
	put(&b, 3, 0);                /*   GASpecificConfig: 1024 samples, no core, no extension */
	put(&b, 3, 0);                /* frameLengthType 0: lengths in PayloadLengthInfo */
	put(&b, 8, FILL_FULLNESS);    /* latmBufferFullness */
	put(&b, 1, 0);                /* otherDataPresent */
	put(&b, 1, 0);                /* crcCheckPresent */
	for (size_t left = len; ; left -= 255) {   /* PayloadLengthInfo */
		put(&b, 8, left >= 255 ? 255 : left);
		if (left < 255)
			break;
	}
	for (size_t i = 0; i < len; i++)           /* PayloadMux */
		put(&b, 8, frame[i]);
	put(&b, (8 - b.pos % 8) % 8, 0);           /* byte alignment */
	return b.overflow ? -ENOSPC : (int)(b.pos / 8);
}

int latm_read(const uint8_t *in, size_t len, unsigned *rate, unsigned *channels,
	      uint8_t *frame, size_t size)
{
	struct bits b = { .in = in, .size = len };
	size_t flen = 0;
	unsigned sfi, byte;

	if (get(&b, 1) != 0 || get(&b, 1) != 1 || get(&b, 1) != 0)
		return -EINVAL;       /* not a configuration we write */
	if (get_value(&b) != FILL_FULLNESS || get(&b, 1) != 1 || get(&b, 6) || get(&b, 4) || get(&b, 3) || get_value(&b) != 16 ||
	    get(&b, 5) != AOT_AAC_LC)
		return -EINVAL;
	sfi = get(&b, 4);
	*channels = get(&b, 4);
	if (get(&b, 3) || get(&b, 3) || get(&b, 8) != FILL_FULLNESS || get(&b, 1) || get(&b, 1) ||
	    sfi >= sizeof(sf_index) / sizeof(sf_index[0]) || *channels < 1 || *channels > 7)
		return -EINVAL;
	*rate = sf_index[sfi];
	do {
		byte = get(&b, 8);
		flen += byte;
	} while (byte == 255 && !b.overflow);
	if (b.overflow || flen > size || b.pos + flen * 8 > len * 8)
		return -EINVAL;
	for (size_t i = 0; i < flen; i++)
		frame[i] = get(&b, 8);
	if (b.pos % 8 && get(&b, 8 - b.pos % 8))
		return -EINVAL;       /* alignment bits are zero */
	if (len != b.pos / 8)
		return -EINVAL;       /* bytes after the element */
	return b.overflow ? -EINVAL : (int)flen;
}
