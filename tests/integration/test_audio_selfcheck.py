#!/usr/bin/python3
"""Self-check of the audio analysis (audio.py) and of the test speaker (rtp_sink),
without the plugin.

1. audio.py on synthetic data with known answers.
2. rtp_sink fed by hand-made RTP packets over a SOCK_SEQPACKET socketpair, with
   real SBC frames from a throwaway libsbc encoder compiled here.

Run from anywhere: /usr/bin/python3 tests/integration/test_audio_selfcheck.py
Builds build/rtp_sink. Ends with "N passed, N failed"; exits 1 on any failure.
"""
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import audio  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
import systest  # noqa: E402

BUILD = os.path.abspath(os.environ.get("ALSABT_BUILD") or os.path.join(ROOT, "build"))
SINK = os.path.join(BUILD, "rtp_sink")

_passed = 0
_failed = 0


def check(name, ok, detail=""):
    global _passed, _failed
    if ok:
        _passed += 1
        print("PASS %s%s" % (name, " (%s)" % detail if detail else ""))
    else:
        _failed += 1
        print("FAIL %s%s" % (name, " (%s)" % detail if detail else ""))
    sys.stdout.flush()
    return ok


def finish():
    print("%d passed, %d failed" % (_passed, _failed))
    sys.exit(1 if _failed else 0)


# ---------------------------------------------------------------- part 1

def test_generators(tmp):
    s = audio.sweep(48000, 2.0)
    check("sweep shape/dtype", s.shape == (96000, 2) and s.dtype == np.int16, str(s.shape))
    peak = np.abs(s).max()
    check("sweep amplitude 0.5", abs(peak / 32767 - 0.5) < 0.01, "peak %d" % peak)
    check("sweep channels differ", audio.snr_db(s, s[:, ::-1], 0, 48000) < 0,
          "swapped SNR %.1f dB" % audio.snr_db(s, s[:, ::-1], 0, 48000))
    # instantaneous frequency at start and end (zero crossings of the left channel)
    def freq_at(x, rate, centre, width=0.05):
        a = int((centre - width / 2) * rate)
        seg = x[a:a + int(width * rate), 0].astype(float)
        z = np.flatnonzero(np.diff(np.signbit(seg)))
        return (len(z) - 1) / 2 / ((z[-1] - z[0]) / rate)
    f_lo = freq_at(s, 48000, 0.05)
    f_hi = freq_at(s, 48000, 1.95)
    check("sweep log frequency", 190 < f_lo < 235 and 7000 < f_hi < 8000,
          "%.0f Hz at 0.05 s, %.0f Hz at 1.95 s" % (f_lo, f_hi))

    n1 = audio.noise(44100, 1.0)
    n2 = audio.noise(44100, 1.0)
    n3 = audio.noise(44100, 1.0, seed=2)
    check("noise deterministic", np.array_equal(n1, n2) and not np.array_equal(n1, n3))
    cc = np.corrcoef(n1[:, 0].astype(float), n1[:, 1].astype(float))[0, 1]
    check("noise channels independent", abs(cc) < 0.02, "corr %.4f" % cc)
    check("noise amplitude", abs(np.abs(n1).max() / 32767 - 0.3) < 0.005)

    p = os.path.join(tmp, "rt.wav")
    audio.write_wav(p, s, 48000)
    back, rate = audio.read_wav(p)
    check("wav round trip", rate == 48000 and np.array_equal(back, s))
    audio.write_wav(p, s[:, 0], 22050)
    back, rate = audio.read_wav(p)
    check("wav mono round trip", rate == 22050 and back.shape == (96000, 1)
          and np.array_equal(back[:, 0], s[:, 0]))


def add_noise_for_snr(x, snr, seed=7):
    rng = np.random.default_rng(seed)
    xf = x.astype(float)
    n = rng.standard_normal(xf.shape)
    n *= math.sqrt(np.sum(xf ** 2) / np.sum(n ** 2) / 10 ** (snr / 10))
    return xf + n


def test_align_snr():
    rate = 48000
    for name, ref in (("sweep", audio.sweep(rate, 3.0)), ("noise", audio.noise(rate, 3.0))):
        for lag, snr in ((73, 30.0), (0, 45.0), (500, 12.0), (-40, 20.0)):
            noisy = add_noise_for_snr(ref, snr)
            if lag >= 0:
                got = np.concatenate((np.zeros((lag, 2)), noisy))
            else:
                got = noisy[-lag:]
            got = np.round(got[: len(ref)]).clip(-32768, 32767).astype(np.int16)
            m = audio.align(ref, got)
            check("align %s lag %d" % (name, lag), m == lag, "measured %d" % m)
            # SNR over the trimmed overlap differs a little from the global one
            s = audio.snr_db(ref, got, m, rate)
            check("snr %s %.0f dB" % (name, snr), abs(s - snr) < 0.5, "measured %.2f dB" % s)
    ref = audio.sweep(rate, 1.0)
    check("snr identical is inf", audio.snr_db(ref, ref, 0) == float("inf"))
    got = np.concatenate((np.zeros((3000, 2), np.int16), ref))
    check("align outside default window", audio.align(ref, got, expected_lag=73, search=2048) != 3000)
    check("align wider window", audio.align(ref, got, expected_lag=0, search=4000) == 3000)


def test_gaps():
    rate = 44100
    x = audio.sweep(rate, 2.0)
    check("no gaps in sweep", audio.gaps(x, rate) == [], str(audio.gaps(x, rate)))
    y = x.copy()
    a = int(1.0 * rate)
    y[a:a + int(0.010 * rate)] = 0          # 10 ms dropout
    b = int(1.5 * rate)
    y[b:b + int(0.003 * rate)] = 0          # 3 ms, below min_ms
    y[:2000] = 0                            # leading silence: not a gap
    y[-500:] = 0                            # trailing silence: not a gap
    g = audio.gaps(y, rate)
    check("gap detected", len(g) == 1 and abs(g[0][0] - 1.0) < 1e-3 and abs(g[0][1] - 10.0) < 0.05,
          str(g))
    g2 = audio.gaps(y, rate, min_ms=2)
    check("short gap with min_ms=2", len(g2) == 2 and abs(g2[1][1] - 3.0) < 0.05, str(g2))
    z = y.copy()
    z[int(0.5 * rate):int(0.52 * rate), 0] = 0   # only one channel silent
    check("one-channel silence is no gap", len(audio.gaps(z, rate)) == 1)


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("t_ns,len,seq,ts,ssrc,pt,nframes,pcm_frames,errors\n")
        for r in rows:
            f.write(",".join("" if v is None else str(v) for v in r) + "\n")


def synth_rows(n, rate=44100, frames=640, seq0=65530, ts0=(1 << 32) - 1000, jitter_ms=1.0,
               t0=5_000_000_000):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        t = t0 + int(i * frames / rate * 1e9 + rng.uniform(-jitter_ms, jitter_ms) * 1e6)
        rows.append([t, 608, (seq0 + i) % 65536, (ts0 + i * frames) % (1 << 32), 1234, 96,
                     5, frames, 0])
    return rows


def test_packet_report(tmp):
    p = os.path.join(tmp, "log.csv")
    rows = synth_rows(200)
    write_csv(p, rows)
    r = audio.packet_report(p, 44100)
    check("report clean stream (with seq and ts wrap)",
          r["packets"] == 200 and r["pcm_frames"] == 128000 and r["seq_continuous"]
          and r["ts_continuous"] and r["errors"] == 0 and r["max_len"] == 608
          and r["ssrc_constant"], str({k: r[k] for k in ("seq_breaks", "ts_breaks")}))
    check("report pacing within jitter", 0.5 < r["pacing_ms"] <= 2.0, "%.2f ms" % r["pacing_ms"])
    exp_dur = (rows[-1][0] - rows[0][0]) / 1e9
    check("report arrival times", abs(r["duration_of_arrival_s"] - exp_dur) < 1e-9
          and abs(r["first_arrival_s"] - 5.0) < 0.01)

    gap = [row[:] for row in rows]
    del gap[50]                               # lost packet: seq gap and ts jump
    write_csv(p, gap)
    r = audio.packet_report(p, 44100)
    check("report seq gap", not r["seq_continuous"] and r["seq_breaks"] == [50], str(r["seq_breaks"]))
    check("report ts gap", not r["ts_continuous"] and r["ts_breaks"] == [50], str(r["ts_breaks"]))

    tsd = [row[:] for row in rows]
    for row in tsd[120:]:
        row[3] = (row[3] + 17) % (1 << 32)   # ts discontinuity, seq fine
    write_csv(p, tsd)
    r = audio.packet_report(p, 44100)
    check("report ts discontinuity only", r["seq_continuous"] and not r["ts_continuous"]
          and r["ts_breaks"] == [120], str(r["ts_breaks"]))

    late = [row[:] for row in rows]
    late[100][0] += 30_000_000               # one packet 30 ms late
    # not RTP, arriving with packet 10 (it carries no audio, so it does not move the clock)
    late.insert(10, [late[10][0], 13, None, None, None, None, None, 0, 1])
    write_csv(p, late)
    r = audio.packet_report(p, 44100)
    check("report late packet", 28 < r["pacing_late_ms"] < 32 and r["pacing_early_ms"] < 2,
          "late %.2f early %.2f" % (r["pacing_late_ms"], r["pacing_early_ms"]))
    check("report non-RTP line", r["non_rtp"] == 1 and r["errors"] == 1 and r["seq_continuous"]
          and r["packets"] == 201)

    pairs = [row[:] for row in rows]
    for i in range(1, len(pairs), 2):
        pairs[i][0] = pairs[i - 1][0] + 50_000   # sent with the one before it, one packet early
    write_csv(p, pairs)
    r = audio.packet_report(p, 44100)
    pkt_ms = 640 * 1000 / 44100
    check("report pairs sent together: on time, the second one packet early",
          r["pacing_ms"] <= 2.5 and abs(r["pacing_early_ms"] - pkt_ms) < 2.5,
          "pacing %.2f early %.2f" % (r["pacing_ms"], r["pacing_early_ms"]))
    pairs[100][0] += 30_000_000              # and one late among them
    write_csv(p, pairs)
    r = audio.packet_report(p, 44100)
    check("report pairs: a late one still shows", 28 < r["pacing_late_ms"] < 32,
          "late %.2f" % r["pacing_late_ms"])

    # Three a wakeup (a2dp/stream.c EARLY_NS at 14.5 ms packets), the last
    # one of the stream early too.
    triples = [row[:] for row in rows[:199]]
    for i in range(len(triples)):
        triples[i][0] = triples[i - i % 3][0] + (i % 3) * 50_000
    write_csv(p, triples)
    r = audio.packet_report(p, 44100)
    check("report triples sent together: on time, the third two packets early",
          r["pacing_ms"] <= 2.5 and abs(r["pacing_early_ms"] - 2 * pkt_ms) < 2.5 and
          audio.early_within_bound(r, 2.5),
          "pacing %.2f early %.2f" % (r["pacing_ms"], r["pacing_early_ms"]))
    triples[99][0] += 30_000_000             # and one due one late among them
    write_csv(p, triples)
    r = audio.packet_report(p, 44100)
    check("report triples: a late one still shows", 28 < r["pacing_late_ms"] < 32,
          "late %.2f" % r["pacing_late_ms"])
    triples = [row[:] for row in rows]
    for i in range(len(triples)):
        triples[i][0] = triples[i - i % 4][0] + (i % 4) * 50_000
    write_csv(p, triples)
    r = audio.packet_report(p, 44100)
    check("report four together: the fourth beyond the 30 ms bound",
          not audio.early_within_bound(r, 2.5), "early %.2f" % r["pacing_early_ms"])

    slow = synth_rows(100, jitter_ms=0)
    for i, row in enumerate(slow):
        row[0] += int(i * 0.5e6)             # sender 3.5 % slow: drift grows to ~50 ms
    write_csv(p, slow)
    r = audio.packet_report(p, 44100)
    check("report drift", 20 < r["pacing_ms"] < 30, "%.2f ms" % r["pacing_ms"])

    write_csv(p, [])
    r = audio.packet_report(p, 44100)
    check("report empty log", r["packets"] == 0 and r["pcm_frames"] == 0)


def arrivals(seconds=3.1, speed=1.0, late=lambda t: 0.0, rate=44100, seed=3):
    """Reads of 10 ms of audio each, arriving at audio time / speed plus
    late(audio time) plus up to 4 ms of jitter (20 ms now and then)."""
    rng = np.random.default_rng(seed)
    frames = rate // 100
    n = int(seconds * 100)
    audio_t = np.arange(1, n + 1) * 0.01
    t = audio_t / speed + np.array([late(a) for a in audio_t])
    t += rng.uniform(0, 0.004, n) + (rng.random(n) < 0.02) * 0.02
    return np.maximum.accumulate(t), [frames] * n


def test_arrival_pacing():
    """systest.pacing_of / in_real_time, the system suite's "arrived in real
    time", on arrivals with known answers."""
    def judge(name, expect, **kw):
        t, frames = arrivals(**kw)
        p = systest.pacing_of(t, frames, 44100)
        check("arrival: %s %s" % (name, "passes" if expect else "fails"),
              systest.in_real_time(p) == expect,
              "rate %.4f over %.2f s (%.0f%%), strays %.0f ms" % (
                  p["rate_ratio"], p["steady_s"], 100 * p["steady_share"], p["pacing_ms"]))
        return p

    p = judge("steady", True)
    check("arrival: steady rate within 0.3%, all of it steady",
          abs(p["rate_ratio"] - 1) < 0.003 and p["steady_share"] > 0.98, str(p))
    # What CI saw: up to 156 ms late in the first second, caught up after.
    judge("late start, caught up",
          True, late=lambda a: 0.156 * a / 0.6 if a < 0.6 else max(0.0, 0.156 - (a - 0.6) * 0.3))
    # What a later run saw: 113 ms late at the start, then 160 ms at 1.5 s.
    judge("two stalls, each caught up", True,
          late=lambda a: (0.113 if a < 0.4 else 0.0) + (0.16 if 1.4 < a < 1.9 else 0.0))
    judge("one 150 ms stall mid-stream, never caught up", True,
          late=lambda a: 0.15 if a > 1.5 else 0.0)
    judge("2% fast", True, speed=1.02)
    judge("4% fast", False, speed=1.04)
    judge("3.5% slow", False, speed=0.965)
    judge("44.1 kHz paced as 48 kHz", False, speed=48000 / 44100)
    judge("as fast as it goes", False, speed=20.0)
    judge("a 300 ms stall", False, late=lambda a: 0.3 if 1.0 < a < 1.3 else 0.0)
    # The reader came 0.4 s after the audio: its first read drains a backlog.
    t, frames = arrivals()
    t = np.concatenate(([0.4], 0.4 + t))
    frames = [int(0.4 * 44100)] + list(frames)
    p = systest.pacing_of(t, frames, 44100)
    check("arrival: a reader 0.4 s late, a backlog at its first read, passes",
          systest.in_real_time(p), str(p))
    t[len(t) // 2:] += 0.3
    p = systest.pacing_of(t, frames, 44100)
    check("arrival: ... but a 300 ms stall after it still fails", not systest.in_real_time(p), str(p))


def test_speed():
    rate = 48000
    t0 = time.monotonic()
    ref = audio.sweep(rate, 10.0)
    got = np.concatenate((np.zeros((73, 2), np.int16), ref))[: len(ref)]
    lag = audio.align(ref, got)
    audio.snr_db(ref, got, lag, rate)
    audio.gaps(got, rate)
    dt = time.monotonic() - t0
    check("analysis of 10 s 48 kHz stereo fast", dt < 1.0, "%.3f s" % dt)


# ---------------------------------------------------------------- part 2

SBCENC_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sbc/sbc.h>
/* sbcenc RATE CHANNELS BITPOOL: s16le interleaved PCM on stdin -> raw SBC frames on stdout.
 * 16 blocks, 8 subbands, loudness, joint stereo (mono for 1 channel). The last
 * partial block is zero-padded. Prints "frame_length codesize" on stderr. */
int main(int argc, char **argv)
{
	sbc_t sbc;
	unsigned char in[4096], out[1024];
	size_t codesize, n;
	ssize_t written;
	int rate, ch;

	if (argc != 4)
		return 2;
	rate = atoi(argv[1]);
	ch = atoi(argv[2]);
	sbc_init(&sbc, 0);
	sbc.frequency = rate == 48000 ? SBC_FREQ_48000 : rate == 32000 ? SBC_FREQ_32000 :
			rate == 16000 ? SBC_FREQ_16000 : SBC_FREQ_44100;
	sbc.mode = ch == 1 ? SBC_MODE_MONO : SBC_MODE_JOINT_STEREO;
	sbc.blocks = SBC_BLK_16;
	sbc.subbands = SBC_SB_8;
	sbc.allocation = SBC_AM_LOUDNESS;
	sbc.bitpool = atoi(argv[3]);
	sbc.endian = SBC_LE;
	codesize = sbc_get_codesize(&sbc);
	fprintf(stderr, "%zu %zu\n", sbc_get_frame_length(&sbc), codesize);
	while ((n = fread(in, 1, codesize, stdin)) > 0) {
		if (n < codesize)
			memset(in + n, 0, codesize - n);
		if (sbc_encode(&sbc, in, codesize, out, sizeof(out), &written) <= 0)
			return 1;
		fwrite(out, 1, written, stdout);
	}
	sbc_finish(&sbc);
	return 0;
}
"""


def build_sink():
    os.makedirs(BUILD, exist_ok=True)
    # As the Makefile links it: the sink, the plugins' shared code (make built
    # it), libsbc, and libfreeaptx's and libavcodec's decoders.
    cflags = subprocess.run(["pkg-config", "--cflags", "--libs", "sbc", "dbus-1", "alsa",
                             "libavcodec", "libavutil"], capture_output=True,
                            text=True, check=True).stdout.split()
    shared_dirs = ["bluez", "codecs", "a2dp", "hfp", "common"]  # the Makefile's SHARED_DIRS
    cmd = ["gcc", "-Wall", "-Wextra", "-O2"] + ["-I" + os.path.join(ROOT, d) for d in shared_dirs] + [
           os.path.join(ROOT, "tests/sink/rtp_sink.c"), os.path.join(BUILD, "libalsabt.a")] + \
        cflags + ["-lfreeaptx", "-lm", "-pthread", "-o", SINK]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return check("build rtp_sink warning-free", p.returncode == 0 and not p.stderr.strip(),
                 p.stderr.strip()[:500])


def build_encoder(tmp):
    src = os.path.join(tmp, "sbcenc.c")
    exe = os.path.join(tmp, "sbcenc")
    with open(src, "w") as f:
        f.write(SBCENC_C)
    libs = subprocess.run(["pkg-config", "--cflags", "--libs", "sbc"], capture_output=True,
                          text=True, check=True).stdout.split()
    p = subprocess.run(["gcc", "-O2", "-Wall", src, "-o", exe] + libs, capture_output=True, text=True)
    check("build throwaway SBC encoder", p.returncode == 0, p.stderr.strip()[:300])
    return exe


def sbc_frame_len(h):
    """Length of the SBC frame whose header starts at h (A2DP 1.3 12.6.2)."""
    blocks = 4 * (((h[1] >> 4) & 3) + 1)
    mode = (h[1] >> 2) & 3
    subbands = 8 if h[1] & 1 else 4
    bitpool = h[2]
    ch = 1 if mode == 0 else 2
    if mode in (0, 1):
        bits = blocks * ch * bitpool
    elif mode == 2:
        bits = blocks * bitpool
    else:
        bits = subbands + blocks * bitpool
    return 4 + (4 * subbands * ch) // 8 + (bits + 7) // 8


def encode(exe, pcm, rate, bitpool=53):
    p = subprocess.run([exe, str(rate), str(pcm.shape[1]), str(bitpool)],
                       input=pcm.astype("<i2").tobytes(), capture_output=True, check=True)
    flen = int(p.stderr.split()[0])
    data = p.stdout
    frames = []
    off = 0
    while off < len(data):
        n = sbc_frame_len(data[off:off + 4])
        frames.append(data[off:off + n])
        off += n
    return frames, flen


def rtp(seq, ts, payload, ssrc=0x11223344, pt=96):
    return struct.pack("!BBHII", 0x80, pt, seq & 0xffff, ts & 0xffffffff, ssrc) + payload


def media(frames, count=None):
    return bytes([len(frames) if count is None else count]) + b"".join(frames)


class Sink:
    def __init__(self, tmp, name, mtu=None):
        self.wav = os.path.join(tmp, name + ".wav")
        self.log = os.path.join(tmp, name + ".csv")
        self.sock, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        args = [SINK, "--fd", str(other.fileno()), "--wav", self.wav, "--log", self.log]
        if mtu:
            args += ["--mtu", str(mtu)]
        self.proc = subprocess.Popen(args, pass_fds=(other.fileno(),), stderr=subprocess.PIPE,
                                     text=True)
        other.close()

    def send(self, pkt):
        self.sock.send(pkt)

    def close(self, timeout=10):
        self.sock.close()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr = err
        return self.proc.returncode

    def rows(self):
        with open(self.log) as f:
            lines = f.read().splitlines()
        return lines[0], [l.split(",") for l in lines[1:]]


def peak_hz(x, rate):
    x = x.astype(float) * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x))
    k = int(np.argmax(spec))
    # parabolic interpolation of the peak
    if 0 < k < len(spec) - 1:
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * rate / len(x)


def test_sink_sine(tmp, enc):
    rate = 44100
    n = 100 * 128
    t = np.arange(n) / rate
    pcm = np.stack((0.5 * np.sin(2 * np.pi * 1000 * t), 0.3 * np.sin(2 * np.pi * 2500 * t)), 1)
    pcm = np.round(pcm * 32767).astype(np.int16)
    frames, flen = encode(enc, pcm, rate)
    check("encoder frames", len(frames) == 100 and all(len(f) == flen == 119 for f in frames),
          "%d frames of %d bytes" % (len(frames), flen))

    s = Sink(tmp, "sine")
    s.send(b"this is not an RTP packet")
    seq, ts = 65533, (1 << 32) - 1280       # wrap both during the stream
    for i in range(0, 100, 5):
        s.send(rtp(seq, ts, media(frames[i:i + 5])))
        seq += 1
        ts += 5 * 128
    rc = s.close()
    check("sink exits 0 at EOF", rc == 0, s.stderr.strip())

    wav, wrate = audio.read_wav(s.wav)
    check("sink wav format", wrate == 44100 and wav.shape[1] == 2, "%d Hz %d ch" % (wrate, wav.shape[1]))
    check("sink wav frame count", wav.shape[0] == 12800, str(wav.shape[0]))
    fl, fr = peak_hz(wav[1024:, 0], rate), peak_hz(wav[1024:, 1], rate)
    check("sink decoded sine frequencies (L 1000 Hz, R 2500 Hz)",
          abs(fl - 1000) < 5 and abs(fr - 2500) < 5, "L %.1f Hz R %.1f Hz" % (fl, fr))

    head, rows = s.rows()
    check("sink csv header", head == "t_ns,len,seq,ts,ssrc,pt,nframes,pcm_frames,errors", head)
    check("sink csv one line per packet", len(rows) == 21, str(len(rows)))
    bad = rows[0]
    check("sink non-RTP packet is an error", bad[1] == "25" and bad[2:7] == [""] * 5
          and bad[7:] == ["0", "1"], ",".join(bad))
    ok = True
    for i, r in enumerate(rows[1:]):
        exp = [str(13 + 5 * 119), str((65533 + i) % 65536), str((2**32 - 1280 + 640 * i) % 2**32),
               str(0x11223344), "96", "5", "640", "0"]
        if r[1:] != exp:
            ok = False
            print("   row %d: %s expected %s" % (i, r[1:], exp))
    check("sink csv seq/ts/ssrc/pt/nframes/pcm/errors", ok)
    t = [int(r[0]) for r in rows]
    check("sink arrival times monotonic", all(b >= a for a, b in zip(t, t[1:])))
    r = audio.packet_report(s.log, rate)
    check("packet_report on sink log", r["packets"] == 21 and r["pcm_frames"] == 12800
          and r["seq_continuous"] and r["ts_continuous"] and r["errors"] == 1
          and r["max_len"] == 608 and r["non_rtp"] == 1, str(r))


def test_sink_errors(tmp, enc):
    rate = 48000
    pcm = audio.sweep(rate, 0.2)
    frames, flen = encode(enc, pcm, rate)
    s = Sink(tmp, "errors", mtu=500)
    sent = []

    def send(payload, seq):
        p = rtp(seq, seq * 512, payload)
        sent.append(len(p))
        s.send(p)

    send(media(frames[0:3]), 0)                    # ok: 3 frames
    send(media(frames[3:5], count=3), 1)           # announces 3, has 2 -> error
    send(media(frames[5:8], count=2), 2)           # announces 2, has 3 -> error (left over)
    corrupt = bytearray(frames[8])
    corrupt[3] ^= 0xff                             # CRC byte
    send(media([frames[9], bytes(corrupt), frames[10]]), 3)   # one bad frame, others decoded
    send(media(frames[11:16]), 4)                  # 5 x 119 + 13 > mtu 500 -> error, decoded
    s.send(rtp(5, 0, b""))                         # RTP without payload header
    send(media([frames[16][:50]]), 6)              # truncated frame
    mono, _ = encode(enc, pcm[:, :1].copy(), rate)
    send(media(mono[0:2]), 7)                      # channel change -> 2 errors, not written
    # fragmented frame in three pieces: S with 2 left, middle, L
    f = frames[17]
    send(bytes([0x80 | 0x40 | 2]) + f[:40], 8)
    send(bytes([0x80 | 1]) + f[40:80], 9)
    send(bytes([0x80 | 0x20 | 0]) + f[80:], 10)
    send(media(frames[18:20]), 11)                 # ok
    rc = s.close()
    check("sink survives bad packets", rc == 0, s.stderr.strip())
    _, rows = s.rows()
    errs = [int(r[8]) for r in rows]
    pcmf = [int(r[7]) for r in rows]
    check("sink error counts", errs == [0, 1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 0], str(errs))
    check("sink pcm frames per packet", pcmf == [384, 256, 256, 256, 640, 0, 0, 0, 0, 0, 128, 256],
          str(pcmf))
    wav, wrate = audio.read_wav(s.wav)
    check("sink wav after errors", wrate == 48000 and wav.shape == (sum(pcmf), 2),
          "%d Hz %s" % (wrate, wav.shape))


def test_sink_partial_and_sigterm(tmp, enc):
    rate = 48000
    pcm = audio.sweep(rate, 0.5)
    frames, _ = encode(enc, pcm, rate)
    s = Sink(tmp, "partial")
    for i in range(0, 40, 4):
        s.send(rtp(i // 4, i * 128, media(frames[i:i + 4])))
    deadline = time.monotonic() + 5
    n = 0
    while time.monotonic() < deadline:
        try:
            with open(s.log) as f:
                n = len(f.read().splitlines()) - 1
        except OSError:
            pass
        if n >= 10:
            break
        time.sleep(0.01)
    wav, wrate = audio.read_wav(s.wav)
    check("partial wav readable while running", wrate == 48000 and wav.shape == (40 * 128, 2),
          str(wav.shape))
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        rc = None
    s.sock.close()
    s.proc.stderr.close()
    check("sink exits 0 on SIGTERM", rc == 0, str(rc))
    wav, wrate = audio.read_wav(s.wav)
    size = os.path.getsize(s.wav)
    check("wav finalised after SIGTERM", wav.shape == (40 * 128, 2) and size == 44 + 40 * 128 * 4)


def measure_sbc(tmp, enc):
    """End-to-end libsbc quality through the sink, for the record (loose bounds)."""
    for rate in (44100, 48000):
        for name, ref in (("sweep", audio.sweep(rate, 3.0)), ("noise", audio.noise(rate, 3.0))):
            frames, _ = encode(enc, ref, rate)
            s = Sink(tmp, "m%s%d" % (name, rate))
            for i in range(0, len(frames), 5):
                s.send(rtp(i // 5, i * 128, media(frames[i:i + 5])))
            s.close()
            got, _ = audio.read_wav(s.wav)
            lag = audio.align(ref, got)
            snr = audio.snr_db(ref, got, lag, rate)
            gp = audio.gaps(got, rate)
            floor = 15 if name == "sweep" else 5
            check("libsbc bitpool 53 joint stereo %s %d Hz: lag 73, SNR > %d dB, no gaps"
                  % (name, rate, floor), lag == 73 and snr > floor and not gp,
                  "lag %d, SNR %.1f dB, gaps %s" % (lag, snr, gp))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_generators(tmp)
        test_align_snr()
        test_gaps()
        test_packet_report(tmp)
        test_arrival_pacing()
        test_speed()
        if build_sink():
            enc = build_encoder(tmp)
            test_sink_sine(tmp, enc)
            test_sink_errors(tmp, enc)
            test_sink_partial_and_sigterm(tmp, enc)
            measure_sbc(tmp, enc)
    finish()


if __name__ == "__main__":
    main()
