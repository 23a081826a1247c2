/* The AG side of the HFP Service Level Connection (HFP 1.8, section 4.2):
 * AT lines in, answers out, the codec agreed.  No I/O here (slc.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "slc.h"

/* Room kept in `out` for the longest answer (+CIND=? and OK): input stops
 * there until the owner has written what is queued. */
#define OUT_RESERVE 256

/* The order fixes the +CIEV indexes: call is 2. */
#define CIND_LIST "+CIND: (\"service\",(0,1)),(\"call\",(0,1)),(\"callsetup\",(0-3))," \
	"(\"callheld\",(0-2)),(\"signal\",(0-5)),(\"roam\",(0,1)),(\"battchg\",(0-5))"
#define CIEV_CALL 2
#define HF_INDICATOR_BATTERY 2

/* --- answers ------------------------------------------------------------ */

static void put(struct slc *s, const char *fmt, ...)
{
	size_t room = sizeof(s->out) - s->out_len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(s->out + s->out_len, room, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < room)   /* OUT_RESERVE keeps this from failing */
		s->out_len += (size_t)n;
}

static void ok(struct slc *s)
{
	put(s, "\r\nOK\r\n");
}

/* 4: operation not supported (27.007 9.2.1) */
static void error(struct slc *s)
{
	if (s->cmee)
		put(s, "\r\n+CME ERROR: 4\r\n");
	else
		put(s, "\r\nERROR\r\n");
}

static int both(const struct slc *s, uint32_t ag, uint32_t hf)
{
	return (s->ag_features & ag) && (s->hf_features & hf);
}

/* --- arguments ---------------------------------------------------------- */

/* "1,2,3" into v[]: the count, or -1 if anything is not a number of at
 * most 9 digits (no AT argument is larger; no overflow past here). */
/* Spaces around the numbers are allowed (V.250 ignores them): bluez-alsa
 * 4.3's HF answers "+BCS: 2" with "AT+BCS= 2", the value as it read it. */
static int parse_ints(const char *a, long *v, int max)
{
	int n = 0;

	while (*a) {
		char *end;

		a += strspn(a, " ");
		if (!*a)
			break;
		if (n == max || !isdigit((unsigned char)*a))
			return -1;
		v[n++] = strtol(a, &end, 10);
		if (end - a > 9)
			return -1;
		a = end + strspn(end, " ");
		if (*a == ',')
			a++;
		else if (*a)
			return -1;
	}
	return n;
}

static int parse_gain(const char *a)
{
	long v;

	return parse_ints(a, &v, 1) == 1 && v <= 15 ? (int)v : -1;
}

static void set_battery(struct slc *s, long pct)
{
	if (pct < 0 || pct > 100)
		return;
	s->battery = (int)pct;
	s->events |= SLC_EV_BATTERY;
}

/* --- codec negotiation -------------------------------------------------- */

static int best_codec(const struct slc *s)
{
	if (s->msbc_possible && (s->hf_codecs & (1u << HFP_CODEC_MSBC)))
		return HFP_CODEC_MSBC;
	return HFP_CODEC_CVSD;
}

static void send_bcs(struct slc *s, int codec, int tries)
{
	s->codec_pending = codec;
	s->bcs_tries = tries;
	put(s, "\r\n+BCS: %d\r\n", codec);
}

static void agree(struct slc *s, int codec)
{
	s->codec = codec;
	s->codec_pending = 0;
	s->events |= SLC_EV_CODEC;
}

int slc_choose_codec(struct slc *s)
{
	if (s->state != SLC_CONNECTED)
		return -ENOTCONN;
	if (!both(s, HFP_AG_CODEC_NEGOTIATION, HFP_HF_CODEC_NEGOTIATION))
		agree(s, HFP_CODEC_CVSD);     /* the only codec without negotiation */
	else
		send_bcs(s, best_codec(s), 1);
	return 0;
}

void slc_codec_timeout(struct slc *s)
{
	if (!s->codec_pending)
		return;
	if (s->bcs_tries < 2) {
		send_bcs(s, s->codec_pending, s->bcs_tries + 1);
	} else if (s->codec_pending != HFP_CODEC_CVSD) {
		send_bcs(s, HFP_CODEC_CVSD, 1);  /* every HF has CVSD */
	} else {
		s->codec_pending = 0;
		s->state = SLC_FAILED;
		s->events |= SLC_EV_FAILED;
	}
}

/* --- the SLC's set-up --------------------------------------------------- */

static void connected(struct slc *s)
{
	if (s->state != SLC_STARTING)
		return;
	s->state = SLC_CONNECTED;
	s->events |= SLC_EV_CONNECTED;
}

static void on_brsf(struct slc *s, const char *a)
{
	long v;

	if (parse_ints(a, &v, 1) != 1) {
		error(s);
		return;
	}
	s->hf_features = (uint32_t)v;
	put(s, "\r\n+BRSF: %u\r\n", (unsigned)s->ag_features);
	ok(s);
}

static void on_bac(struct slc *s, const char *a)
{
	long v[8];
	int n = parse_ints(a, v, 8), i;

	if (n < 1) {
		error(s);
		return;
	}
	s->hf_codecs = 0;
	for (i = 0; i < n; i++)
		if (v[i] > 0 && v[i] < 32)
			s->hf_codecs |= 1u << v[i];
	ok(s);
	/* A new list in answer to our +BCS: choose again from it. */
	if (s->codec_pending && !(s->hf_codecs & (1u << s->codec_pending)))
		send_bcs(s, best_codec(s), 1);
}

static void on_cmer(struct slc *s, const char *a)
{
	long v[5];
	int n = parse_ints(a, v, 5);

	if (n < 4 || v[0] != 3) {
		error(s);
		return;
	}
	s->indicators_on = v[3] == 1;
	s->cmer_seen = 1;
	ok(s);
	/* With HF indicators on both sides the BIND exchange comes first. */
	if (!both(s, HFP_AG_HF_INDICATORS, HFP_HF_INDICATORS))
		connected(s);
}

static void on_bind(struct slc *s, const char *a, char kind)
{
	if (kind == '?') {           /* AT+BIND?: which are on */
		put(s, "\r\n+BIND: %d,1\r\n", HF_INDICATOR_BATTERY);
		ok(s);
		connected(s);
	} else if (kind == 't') {    /* AT+BIND=?: which we support */
		put(s, "\r\n+BIND: (%d)\r\n", HF_INDICATOR_BATTERY);
		ok(s);
	} else if (*a) {             /* AT+BIND=1,2: the HF's */
		ok(s);
	} else {
		error(s);
	}
}

/* --- reports from the headset ------------------------------------------- */

static void on_gain(struct slc *s, const char *a, int *gain, unsigned ev)
{
	int g = parse_gain(a);

	if (g < 0) {
		error(s);
		return;
	}
	*gain = g;
	s->events |= ev;
	ok(s);
}

static void on_biev(struct slc *s, const char *a)
{
	long v[2];

	if (parse_ints(a, v, 2) != 2 || v[0] != HF_INDICATOR_BATTERY || v[1] > 100) {
		error(s);
		return;
	}
	set_battery(s, v[1]);
	ok(s);
}

/* Apple: AT+XAPL=vendor-product-version,features; we take battery reports. */
static void on_xapl(struct slc *s)
{
	put(s, "\r\n+XAPL=iPhone,2\r\n");
	ok(s);
}

/* AT+IPHONEACCEV=n,key,value,...: key 1 is the battery, 0-9. */
static void on_iphoneaccev(struct slc *s, const char *a)
{
	long v[9];
	int n = parse_ints(a, v, 9), i;

	if (n < 1 || n != 1 + 2 * v[0]) {
		error(s);
		return;
	}
	for (i = 1; i + 1 < n; i += 2)
		if (v[i] == 1 && v[i + 1] <= 9)
			set_battery(s, (v[i + 1] + 1) * 10);
	ok(s);
}

/* Plantronics, Jabra: AT+XEVENT=BATTERY,level,levels,... */
static void on_xevent(struct slc *s, const char *a)
{
	long level, levels;

	if (!strncasecmp(a, "BATTERY,", 8) && sscanf(a + 8, "%ld,%ld", &level, &levels) == 2 &&
	    levels > 1 && levels <= 1000 && level >= 0 && level < levels)
		set_battery(s, level * 100 / (levels - 1));
	ok(s);
}

static void on_bcs(struct slc *s, const char *a)
{
	long v;

	if (!s->codec_pending || parse_ints(a, &v, 1) != 1 || v != s->codec_pending) {
		error(s);
		return;
	}
	ok(s);
	agree(s, (int)v);
}

/* --- dispatch ----------------------------------------------------------- */

/* Commands answered OK with nothing to do: we have no calls, no network. */
static const char *const plain_ok[] = {
	"+CLIP=", "+CCWA=", "+BIA=", "+CLCC", "+CNUM", "+BTRH?", "+COPS=",
};

static int is_plain_ok(const char *cmd)
{
	size_t i;

	for (i = 0; i < sizeof(plain_ok) / sizeof(plain_ok[0]); i++)
		if (!strncasecmp(cmd, plain_ok[i], strlen(plain_ok[i])))
			return 1;
	return 0;
}

/* cmd is a line after "AT"; name is matched without case, "=args" after it. */
static const char *arg(const char *cmd, const char *name)
{
	size_t n = strlen(name);

	if (strncasecmp(cmd, name, n) || cmd[n] != '=')
		return NULL;
	return cmd + n + 1;
}

static int is(const char *cmd, const char *name)
{
	return !strcasecmp(cmd, name);
}

static void on_command(struct slc *s, const char *cmd)
{
	const char *a;

	if (s->state == SLC_STARTING && s->cmer_seen && strncasecmp(cmd, "+BIND", 5))
		connected(s);   /* an HF that skips the BIND exchange */
	if ((a = arg(cmd, "+BRSF")))
		on_brsf(s, a);
	else if ((a = arg(cmd, "+BAC")))
		on_bac(s, a);
	else if (is(cmd, "+CIND=?"))
		put(s, "\r\n" CIND_LIST "\r\n"), ok(s);
	else if (is(cmd, "+CIND?"))
		put(s, "\r\n+CIND: 0,0,0,0,0,0,5\r\n"), ok(s);
	else if ((a = arg(cmd, "+CMER")))
		on_cmer(s, a);
	else if (is(cmd, "+BIND?"))
		on_bind(s, "", '?');
	else if (is(cmd, "+BIND=?"))
		on_bind(s, "", 't');
	else if ((a = arg(cmd, "+BIND")))
		on_bind(s, a, '=');
	else if (is(cmd, "+CHLD=?"))
		put(s, "\r\n+CHLD: (0,1,2,3)\r\n"), ok(s);
	else if ((a = arg(cmd, "+VGS")))
		on_gain(s, a, &s->speaker_gain, SLC_EV_SPEAKER);
	else if ((a = arg(cmd, "+VGM")))
		on_gain(s, a, &s->mic_gain, SLC_EV_MIC);
	else if ((a = arg(cmd, "+BIEV")))
		on_biev(s, a);
	else if (arg(cmd, "+XAPL"))
		on_xapl(s);
	else if ((a = arg(cmd, "+IPHONEACCEV")))
		on_iphoneaccev(s, a);
	else if ((a = arg(cmd, "+XEVENT")))
		on_xevent(s, a);
	else if ((a = arg(cmd, "+BCS")))
		on_bcs(s, a);
	else if (is(cmd, "+BCC"))
		ok(s), s->events |= SLC_EV_CODEC_WANTED;
	else if ((a = arg(cmd, "+CMEE")))
		s->cmee = !strcmp(a, "1"), ok(s);
	else if (is(cmd, "+COPS?"))
		put(s, "\r\n+COPS: 0\r\n"), ok(s);
	else if (is_plain_ok(cmd))
		ok(s);
	else                    /* ATA, ATD, +CHUP, +NREC (we have no EC/NR), ... */
		error(s);
}

static void on_line(struct slc *s, const char *line)
{
	if ((line[0] != 'A' && line[0] != 'a') || (line[1] != 'T' && line[1] != 't')) {
		error(s);
		return;
	}
	on_command(s, line + 2);
}

/* --- bytes in, bytes out ------------------------------------------------ */

size_t slc_input(struct slc *s, const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len && sizeof(s->out) - s->out_len >= OUT_RESERVE; i++) {
		char c = buf[i];

		if (c == '\r' || c == '\n') {
			if (s->overlong)
				error(s);
			else if (s->line_len) {
				s->line[s->line_len] = '\0';
				on_line(s, s->line);
			}
			s->line_len = 0;
			s->overlong = 0;
		} else if (s->overlong || c == '\0') {
			continue;
		} else if (s->line_len + 1 >= sizeof(s->line)) {
			s->overlong = 1;
		} else if (!(s->line_len == 0 && c == ' ')) {
			s->line[s->line_len++] = c;
		}
	}
	return i;
}

void slc_consumed(struct slc *s, size_t n)
{
	if (n >= s->out_len) {
		s->out_len = 0;
		return;
	}
	memmove(s->out, s->out + n, s->out_len - n);
	s->out_len -= n;
}

/* --- from the AG -------------------------------------------------------- */

static int set_gain(struct slc *s, const char *what, int gain)
{
	if (s->state != SLC_CONNECTED)
		return -ENOTCONN;
	if (!(s->hf_features & HFP_HF_REMOTE_VOLUME))
		return -ENOTSUP;
	if (gain < 0 || gain > 15)
		return -EINVAL;
	put(s, "\r\n+%s: %d\r\n", what, gain);
	return 0;
}

int slc_set_speaker_gain(struct slc *s, int gain)
{
	return set_gain(s, "VGS", gain);
}

int slc_set_mic_gain(struct slc *s, int gain)
{
	return set_gain(s, "VGM", gain);
}

int slc_set_call(struct slc *s, int active)
{
	if (s->state != SLC_CONNECTED)
		return -ENOTCONN;
	if (s->indicators_on)
		put(s, "\r\n+CIEV: %d,%d\r\n", CIEV_CALL, !!active);
	return 0;
}

void slc_init(struct slc *s, int msbc_possible)
{
	memset(s, 0, sizeof(*s));
	s->state = SLC_STARTING;
	s->msbc_possible = msbc_possible;
	/* Codec negotiation only when there is a codec to negotiate. */
	s->ag_features = HFP_AG_HF_INDICATORS |
		(msbc_possible ? HFP_AG_CODEC_NEGOTIATION | HFP_AG_ESCO_S4 : 0);
	s->hf_codecs = 1u << HFP_CODEC_CVSD;
	s->speaker_gain = s->mic_gain = s->battery = -1;
}
