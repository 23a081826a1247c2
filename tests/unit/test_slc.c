/* The AG's Service Level Connection against scripted headsets: the
 * sequences a current headset and bluez-alsa 4.0 and 4.3 (as HF) send, lines split or
 * joined, garbage, overlong lines, battery reports, codec negotiation with
 * its timeouts and fallbacks. */
#include <errno.h>
#include <string.h>

#include "../../hfp/slc.h"
#include "check.h"

/* Everything the SLC has queued, taken (as if written to the socket). */
static const char *drain(struct slc *s)
{
	static char got[8192];
	size_t n;
	const char *p = slc_output(s, &n);

	memcpy(got, p, n);
	got[n] = '\0';
	slc_consumed(s, n);
	return got;
}

/* Feeds text in chunks of `chunk` bytes (0: all at once), draining as
 * the owner would; returns every answer. */
static const char *feed(struct slc *s, const char *text, size_t chunk)
{
	static char all[65536];
	size_t len = strlen(text), off = 0;

	all[0] = '\0';
	while (off < len) {
		size_t n = chunk && len - off > chunk ? chunk : len - off;
		size_t took = slc_input(s, text + off, n);

		off += took;
		strncat(all, drain(s), sizeof(all) - strlen(all) - 1);
	}
	return all;
}

static int has(const char *out, const char *want)
{
	return strstr(out, want) != NULL;
}

static int count(const char *out, const char *want)
{
	int n = 0;

	for (; (out = strstr(out, want)); out += strlen(want))
		n++;
	return n;
}

/* A current headset: CLI, remote volume, codec negotiation, HF indicators,
 * eSCO S4 (916); the order PipeWire's HF sends them in. */
#define PW_HF "AT+BRSF=916\rAT+BAC=1,2\rAT+CIND=?\rAT+CIND?\rAT+CMER=3,0,0,1\r"
/* bluez-alsa 4.0 as HF: CLI|VOLUME|ECS|ECC, no codec negotiation. */
#define BA_HF "AT+BRSF=116\rAT+CIND=?\rAT+CIND?\rAT+CMER=3,0,0,1,0\r"

static void test_pipewire_like(size_t chunk)
{
	struct slc s;
	const char *out;

	slc_init(&s, 1);
	out = feed(&s, PW_HF, chunk);
	CHECK(has(out, "\r\n+BRSF: 3584\r\n\r\nOK\r\n"), "chunk %zu: BRSF answer: %s", chunk, out);
	CHECK(has(out, "(\"call\",(0,1))") && has(out, "+CIND: 0,0,0,0,0,0,5"), "CIND: %s", out);
	CHECK(count(out, "OK\r\n") == 5 && !has(out, "ERROR"), "five OKs: %s", out);
	/* both have HF indicators: the BIND exchange follows */
	CHECK(s.state == SLC_STARTING, "not up before BIND");
	out = feed(&s, "AT+BIND=1,2\rAT+BIND=?\rAT+BIND?\r", chunk);
	CHECK(has(out, "+BIND: (2)") && has(out, "+BIND: 2,1"), "BIND: %s", out);
	CHECK(s.state == SLC_CONNECTED && (s.events & SLC_EV_CONNECTED), "up after BIND?");
	CHECK(slc_choose_codec(&s) == 0 && !strcmp(drain(&s), "\r\n+BCS: 2\r\n"), "mSBC chosen");
	out = feed(&s, "AT+BCS=2\r", chunk);
	CHECK(!strcmp(out, "\r\nOK\r\n") && s.codec == HFP_CODEC_MSBC && (s.events & SLC_EV_CODEC),
	      "mSBC agreed: %s", out);
	out = feed(&s, "AT+VGS=9\rAT+VGM=7\r", chunk);
	CHECK(s.speaker_gain == 9 && s.mic_gain == 7 && count(out, "OK") == 2, "gains: %s", out);
	CHECK(slc_set_speaker_gain(&s, 12) == 0 && !strcmp(drain(&s), "\r\n+VGS: 12\r\n"), "+VGS");
	CHECK(slc_set_call(&s, 1) == 0 && !strcmp(drain(&s), "\r\n+CIEV: 2,1\r\n"), "+CIEV call");
}

static void test_bluealsa_like(void)
{
	struct slc s;
	const char *out;

	slc_init(&s, 1);
	out = feed(&s, BA_HF, 0);
	CHECK(s.state == SLC_CONNECTED, "up after CMER (no HF indicators): %s", out);
	CHECK(slc_choose_codec(&s) == 0 && s.codec == HFP_CODEC_CVSD && !drain(&s)[0],
	      "no codec negotiation: CVSD, no +BCS");
	out = feed(&s, "AT+VGM=15\rAT+VGS=15\rAT+XAPL=ABCD-1234-0100,10\rAT+IPHONEACCEV=2,1,4,2,0\r", 0);
	CHECK(has(out, "+XAPL=iPhone,2") && s.battery == 50 && !has(out, "ERROR"), "Apple: %s (%d%%)",
	      out, s.battery);
}

/* bluez-alsa 4.3 as HF, as the real stack's trace showed it (tests/system,
 * step hfp): BAC with LC3-SWB too, CMER with 5 arguments, no HF indicators,
 * and the codec echoed with the space of our "+BCS: 2". */
static void test_bluealsa43_like(void)
{
	struct slc s;
	const char *out;

	slc_init(&s, 1);
	out = feed(&s, "AT+BRSF=756\rAT+BAC=1,2,3\rAT+CIND=?\rAT+CIND?\rAT+CMER=3,0,0,1,0\r", 0);
	CHECK(s.state == SLC_CONNECTED && !has(out, "ERROR"), "up after CMER: %s", out);
	CHECK(slc_choose_codec(&s) == 0 && !strcmp(drain(&s), "\r\n+BCS: 2\r\n"), "mSBC chosen");
	out = feed(&s, "AT+BCS= 2\r", 0);
	CHECK(!strcmp(out, "\r\nOK\r\n") && s.codec == HFP_CODEC_MSBC, "AT+BCS= 2 agreed: %s", out);
	out = feed(&s, "AT+VGM= 15 \rAT+VGS=15\rAT+BCC\r", 0);
	CHECK(s.mic_gain == 15 && s.speaker_gain == 15 && count(out, "OK") == 3, "gains: %s", out);
	out = feed(&s, "AT+VGS=1 5\rAT+VGS=,\r", 0);
	CHECK(count(out, "ERROR") == 2 && s.speaker_gain == 15, "a space inside a number: %s", out);
}

static void test_no_msbc_here(void)
{
	struct slc s;
	const char *out;

	slc_init(&s, 0);        /* the adapter cannot carry transparent SCO */
	out = feed(&s, PW_HF, 1);
	CHECK(has(out, "+BRSF: 1024\r\n"), "no codec negotiation offered: %s", out);
	feed(&s, "AT+BIND?\r", 0);
	CHECK(slc_choose_codec(&s) == 0 && s.codec == HFP_CODEC_CVSD, "CVSD");
}

static void test_split_and_joined(void)
{
	struct slc s;
	const char *out;

	slc_init(&s, 1);
	out = feed(&s, "AT+BRSF=", 0);
	CHECK(!out[0], "nothing for half a line");
	out = feed(&s, "0\r\nAT+CIND?\r\n\r\nat+cind=?\rAT+CMER=3,0,0,1\r", 0);
	CHECK(count(out, "OK\r\n") == 4 && !has(out, "ERROR"), "CRLF, empty lines, lowercase: %s", out);
	CHECK(s.state == SLC_CONNECTED, "up");
}

static void test_garbage(void)
{
	struct slc s;
	char longline[600];
	const char *out;

	slc_init(&s, 1);
	out = feed(&s, "hello\rA\rAT\rAT+NOPE\rATD123;\rAT+NREC=0\rAT+VGS=16\rAT+VGS=x\rAT+BRSF=\r", 0);
	CHECK(count(out, "ERROR") == 9 && !has(out, "OK"), "nine ERRORs: %s", out);
	memset(longline, 'A', sizeof(longline) - 2);
	longline[sizeof(longline) - 2] = '\r';
	longline[sizeof(longline) - 1] = '\0';
	out = feed(&s, longline, 7);
	CHECK(!strcmp(out, "\r\nERROR\r\n"), "an overlong line is one ERROR: %s", out);
	out = feed(&s, "AT+CIND?\r", 0);
	CHECK(has(out, "+CIND:"), "the next line is read: %s", out);
	out = feed(&s, "AT+CMEE=1\rAT+CHUP\r", 0);
	CHECK(has(out, "+CME ERROR: 4"), "CMEE: %s", out);
	out = feed(&s, "AT+BCS=2\r", 0);
	CHECK(has(out, "ERROR"), "AT+BCS unasked: %s", out);
	CHECK(slc_choose_codec(&s) == -ENOTCONN, "no codec before the SLC");
	CHECK(slc_set_speaker_gain(&s, 3) == -ENOTCONN, "no gain before the SLC");
}

/* Answers pile up faster than the owner writes: input stops, none is lost. */
static void test_flood(void)
{
	struct slc s;
	static char flood[3 * 2000 + 1];
	const char *out;
	int i;

	for (i = 0; i < 2000; i++)
		memcpy(flood + 3 * i, "AT\r", 3);
	slc_init(&s, 1);
	out = feed(&s, flood, 4096);
	CHECK(count(out, "\r\nERROR\r\n") == 2000, "2000 answers: %d", count(out, "\r\nERROR\r\n"));
}

static void up(struct slc *s, const char *bac)
{
	char script[256];

	slc_init(s, 1);
	snprintf(script, sizeof(script), "AT+BRSF=128\r%sAT+CIND=?\rAT+CIND?\rAT+CMER=3,0,0,1\r", bac);
	feed(s, script, 0);
}

static void test_codec_fallbacks(void)
{
	struct slc s;
	const char *out;

	/* the headset never answers +BCS: twice, then CVSD, twice, then failed */
	up(&s, "AT+BAC=1,2\r");
	slc_choose_codec(&s);
	CHECK(!strcmp(drain(&s), "\r\n+BCS: 2\r\n"), "first");
	slc_codec_timeout(&s);
	CHECK(!strcmp(drain(&s), "\r\n+BCS: 2\r\n"), "sent again");
	slc_codec_timeout(&s);
	CHECK(!strcmp(drain(&s), "\r\n+BCS: 1\r\n"), "then CVSD");
	slc_codec_timeout(&s);
	slc_codec_timeout(&s);
	CHECK(s.state == SLC_FAILED && (s.events & SLC_EV_FAILED) && !s.codec, "then failed");

	/* it takes CVSD after the timeouts */
	up(&s, "AT+BAC=1,2\r");
	slc_choose_codec(&s);
	slc_codec_timeout(&s);
	slc_codec_timeout(&s);
	drain(&s);
	out = feed(&s, "AT+BCS=1\r", 0);
	CHECK(has(out, "OK") && s.codec == HFP_CODEC_CVSD, "CVSD agreed: %s", out);

	/* it answers with another codec: ERROR; then a new AT+BAC without mSBC */
	up(&s, "AT+BAC=1,2\r");
	slc_choose_codec(&s);
	drain(&s);
	out = feed(&s, "AT+BCS=1\r", 0);
	CHECK(has(out, "ERROR") && !s.codec, "wrong codec refused: %s", out);
	out = feed(&s, "AT+BAC=1\r", 0);
	CHECK(!strcmp(out, "\r\nOK\r\n\r\n+BCS: 1\r\n"), "chosen again from the new list: %s", out);
	out = feed(&s, "AT+BCS=1\r", 0);
	CHECK(s.codec == HFP_CODEC_CVSD, "CVSD: %s", out);

	/* no AT+BAC at all: CVSD by +BCS; AT+BCC asks for audio */
	up(&s, "");
	s.events = 0;
	out = feed(&s, "AT+BCC\r", 0);
	CHECK(has(out, "OK") && (s.events & SLC_EV_CODEC_WANTED), "AT+BCC: %s", out);
	slc_choose_codec(&s);
	CHECK(!strcmp(drain(&s), "\r\n+BCS: 1\r\n"), "CVSD offered when the HF listed none");
}

static void test_battery(void)
{
	struct slc s;
	const char *out;

	up(&s, "");
	out = feed(&s, "AT+XEVENT=BATTERY,3,5,0,0\r", 0);
	CHECK(has(out, "OK") && s.battery == 75, "XEVENT 3 of 0-4: %d%%", s.battery);
	out = feed(&s, "AT+BIEV=2,42\r", 0);
	CHECK(has(out, "OK") && s.battery == 42, "BIEV: %d%%", s.battery);
	out = feed(&s, "AT+BIEV=1,1\rAT+BIEV=2,101\rAT+IPHONEACCEV=2,1,4\r", 0);
	CHECK(count(out, "ERROR") == 3 && s.battery == 42, "bad reports: %s", out);
	out = feed(&s, "AT+IPHONEACCEV=1,1,9\r", 0);
	CHECK(has(out, "OK") && s.battery == 100, "Apple 9: %d%%", s.battery);
	CHECK(slc_set_speaker_gain(&s, 3) == -ENOTSUP, "no +VGS to an HF without remote volume");
}

int main(void)
{
	test_pipewire_like(0);
	test_pipewire_like(1);
	test_pipewire_like(5);
	test_bluealsa_like();
	test_bluealsa43_like();
	test_no_msbc_here();
	test_split_and_joined();
	test_garbage();
	test_flood();
	test_codec_fallbacks();
	test_battery();
	return check_finish();
}
