"""Audio analysis for the integration tests and the benchmark (numpy + stdlib only).

Sample arrays are int16 (or float) numpy arrays shaped (frames, channels).
A 1-D array is treated as mono. "Lag" is in frames: got[n] ~= ref[n - lag].
"""
import csv
import wave

import numpy as np

SBC_DELAY = 73  # libsbc encoder + decoder delay with 8 subbands, in frames
# How long before its time the plugin may send a packet (a2dp/stream.c EARLY_NS)
EARLY_MS = 30.0


def _2d(x):
    x = np.asarray(x)
    return x[:, None] if x.ndim == 1 else x


def write_wav(path, samples, rate):
    """Writes int16 samples (N x ch, or N for mono) as a PCM WAV file. Returns None."""
    s = _2d(samples)
    if s.dtype != np.int16:
        s = np.clip(np.round(s), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(s.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(s.astype("<i2").tobytes())


def read_wav(path):
    """Reads a 16-bit PCM WAV. Returns (int16 array N x ch, rate).

    Works on a file still being written by rtp_sink: only whole frames present
    on disk are returned.
    """
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError("%s: %d-byte samples, expected 16-bit" % (path, w.getsampwidth()))
        ch = w.getnchannels()
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
    n = len(data) // (2 * ch)
    a = np.frombuffer(data[: n * 2 * ch], dtype="<i2").astype(np.int16)
    return a.reshape(n, ch), rate


def _fade(n, rate, fade_ms=5.0):
    """Raised-cosine fade-in/out envelope of length n."""
    env = np.ones(n)
    k = min(int(rate * fade_ms / 1000), n // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        env[:k] = ramp
        env[n - k:] = ramp[::-1]
    return env


def sweep(rate, seconds, f0=200, f1=8000, amp=0.5, channels=2):
    """Logarithmic sine sweep f0 -> f1 Hz, int16, shape (N, channels).

    Channel k is the same sweep with its phase advanced by k * 90 degrees: the
    left channel is sin(phi(t)), the right cos(phi(t)). Swapped channels thus
    give an SNR of about -3 dB instead of a high one. A 5 ms raised-cosine
    fade-in and fade-out avoids clicks (snr_db skips the ends anyway).
    """
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    k = np.log(f1 / f0)
    phi = 2 * np.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1)
    env = amp * 32767 * _fade(n, rate)
    out = np.empty((n, channels))
    for c in range(channels):
        out[:, c] = env * np.sin(phi + c * np.pi / 2)
    return np.round(out).astype(np.int16)


def noise(rate, seconds, amp=0.3, channels=2, seed=1):
    """Deterministic white noise, uniform in [-amp, amp] of full scale, int16 (N, channels).

    Each channel is an independent sequence from the same seeded generator.
    """
    n = int(round(rate * seconds))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-amp, amp, size=(n, channels)) * 32767
    return np.round(x).astype(np.int16)


def align(ref, got, expected_lag=SBC_DELAY, search=2048):
    """Lag (int, frames) of got relative to ref, by FFT cross-correlation of channel 0.

    Only lags in [expected_lag - search, expected_lag + search] are considered;
    the one with the largest (positive) correlation wins.
    """
    r = _2d(ref)[:, 0].astype(np.float64)
    g = _2d(got)[:, 0].astype(np.float64)
    if len(r) == 0 or len(g) == 0:
        raise ValueError("align: empty signal")
    nfft = 1 << int(np.ceil(np.log2(len(r) + len(g))))
    c = np.fft.irfft(np.fft.rfft(g, nfft) * np.conj(np.fft.rfft(r, nfft)), nfft)
    # c[k] = sum_n g[n + k] * r[n]; negative k wrap to the end.
    lo = max(expected_lag - search, -(len(r) - 1))
    hi = min(expected_lag + search, len(g) - 1)
    if lo > hi:
        raise ValueError("align: search window outside the signals")
    lags = np.arange(lo, hi + 1)
    return int(lags[np.argmax(c[lags % nfft])])


def snr_db(ref, got, lag, rate=None, trim_ms=20):
    """SNR (float, dB) of got against ref shifted by lag, all channels.

    10*log10(sum(ref^2) / sum((ref - got)^2)) over the overlapping part, minus
    trim_ms at each end (if rate is None, 1024 frames, about 20 ms at 48 kHz).
    inf when identical; nan when nothing overlaps.
    """
    r = _2d(ref)
    g = _2d(got)
    if r.shape[1] != g.shape[1]:
        raise ValueError("snr_db: %d vs %d channels" % (r.shape[1], g.shape[1]))
    # ref index i pairs with got index i + lag
    start = max(0, -lag)
    stop = min(len(r), len(g) - lag)
    trim = 1024 if rate is None else int(round(rate * trim_ms / 1000))
    start += trim
    stop -= trim
    if stop <= start:
        return float("nan")
    rr = r[start:stop].astype(np.float64)
    gg = g[start + lag:stop + lag].astype(np.float64)
    num = np.sum(rr * rr)
    den = np.sum((rr - gg) ** 2)
    if den == 0:
        return float("inf")
    if num == 0:
        return float("-inf")
    return float(10 * np.log10(num / den))



def placed(sig, lag, n):
    """sig at lag in n frames (cut at both ends), as float."""
    sig = _2d(sig)
    out = np.zeros((n, sig.shape[1]))
    a, b = max(0, lag), min(n, lag + len(sig))
    if b > a:
        out[a:b] = sig[a - lag:b - lag]
    return out


def fit_sum(got, sigs, hints):
    """The lag of each of sigs in got, their sum: each is found in what is
    left once the ones before are taken out. hints: (expected lag, search)
    each. Returns (lags, what is left)."""
    rest = _2d(got).astype(np.float64)
    lags = []
    for sig, (expect, search) in zip(sigs, hints):
        lag = align(sig, rest.astype(np.int64), expected_lag=expect, search=search)
        lags.append(lag)
        rest = rest - placed(sig, lag, len(rest))
    return lags, rest


def sum_snr(got, sigs, lags, a=0, b=None):
    """SNR (dB) of got[a:b] against the sum of sigs at their lags."""
    got = _2d(got)
    ref = sum(placed(s, lag, len(got)) for s, lag in zip(sigs, lags))
    g = got[a:b].astype(np.float64)
    r = ref[a:b]
    err = np.sum((g - r) ** 2)
    return float('inf') if err == 0 else float(10 * np.log10(np.sum(r * r) / err))

def gaps(got, rate, min_ms=5):
    """Runs of exact digital silence (every channel 0) of at least min_ms, inside the audio.

    Runs touching the first or last frame are not reported (start-up and drain).
    Returns a list of (start_s, len_ms) floats.
    """
    g = _2d(got)
    silent = np.all(g == 0, axis=1).astype(np.int8)
    if len(silent) == 0:
        return []
    d = np.diff(np.concatenate(([0], silent, [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)  # exclusive
    min_len = rate * min_ms / 1000.0
    out = []
    for s, e in zip(starts, ends):
        if s == 0 or e == len(silent):
            continue
        if e - s >= min_len:
            out.append((s / rate, (e - s) * 1000.0 / rate))
    return out


def _int_or_none(v):
    v = v.strip()
    return int(v) if v else None


def packet_report(csv_path, rate):
    """Summary of an rtp_sink CSV log (rate: the stream's sample rate). Returns a dict:

    packets              int   lines in the log (RTP or not)
    pcm_frames           int   total decoded PCM frames
    errors               int   sum of the errors column
    non_rtp              int   packets that did not parse as RTP
    max_len              int   largest packet, bytes
    seq_continuous       bool  every RTP seq == previous + 1 (mod 2^16)
    seq_breaks           list  indices i (of RTP packets) where seq[i] broke
    ts_continuous        bool  ts[i+1] - ts[i] == pcm_frames[i] (mod 2^32) for all i
    ts_breaks            list  indices i where ts[i] broke
    ssrc_constant        bool
    first_arrival_s, last_arrival_s, duration_of_arrival_s   float, CLOCK_MONOTONIC
    pacing_ms            float max |arrival - expected| once the median offset is
                               removed; expected = t0 + frames before the packet / rate
    pacing_p95_ms        float the same, 95th percentile (what a short stall of the
                         test machine, e.g. a virtual CPU's steal time, leaves alone)
    pacing_late_ms       float largest lateness (>= 0) against that offset
    pacing_early_ms      float largest earliness (>= 0): up to EARLY_MS when
                               the plugin sends packets with the one that is due
    packet_ms            float the longest packet's audio
    Each packet's arrival is taken as the latest of its own and those of the
    packets that could have gone with it (a wakeup may send the ones due
    within EARLY_MS with the one that is due).
    """
    t, ln, seq, ts, ssrc, pcm, err = [], [], [], [], [], [], []
    with open(csv_path, newline="") as f:
        rd = csv.DictReader(f)
        for row in rd:
            t.append(int(row["t_ns"]))
            ln.append(int(row["len"]))
            seq.append(_int_or_none(row["seq"]))
            ts.append(_int_or_none(row["ts"]))
            ssrc.append(_int_or_none(row["ssrc"]))
            pcm.append(int(row["pcm_frames"]))
            err.append(int(row["errors"]))

    rep = {
        "packets": len(t),
        "pcm_frames": int(sum(pcm)),
        "errors": int(sum(err)),
        "non_rtp": sum(1 for s in seq if s is None),
        "max_len": max(ln) if ln else 0,
        "seq_continuous": True,
        "seq_breaks": [],
        "ts_continuous": True,
        "ts_breaks": [],
        "ssrc_constant": True,
        "first_arrival_s": None,
        "last_arrival_s": None,
        "duration_of_arrival_s": 0.0,
        "pacing_ms": 0.0,
        "pacing_p95_ms": 0.0,
        "pacing_late_ms": 0.0,
        "pacing_early_ms": 0.0,
        "packet_ms": 0.0,
    }
    if not t:
        return rep

    # Continuity over RTP packets only; a non-RTP packet is already an error.
    idx = [i for i, s in enumerate(seq) if s is not None]
    for a, b in zip(idx, idx[1:]):
        if (seq[b] - seq[a]) % 65536 != 1:
            rep["seq_breaks"].append(b)
        if (ts[b] - ts[a]) % (1 << 32) != pcm[a]:
            rep["ts_breaks"].append(b)
    rep["seq_continuous"] = not rep["seq_breaks"]
    rep["ts_continuous"] = not rep["ts_breaks"]
    rep["ssrc_constant"] = len({ssrc[i] for i in idx}) <= 1

    tn = np.array(t, dtype=np.int64)
    rel = (tn - tn[0]) / 1e9
    rep["first_arrival_s"] = tn[0] / 1e9
    rep["last_arrival_s"] = tn[-1] / 1e9
    rep["duration_of_arrival_s"] = float(rel[-1])

    before = np.concatenate(([0], np.cumsum(np.array(pcm, dtype=np.int64))[:-1]))
    dev = rel - before / float(rate)
    # The plugin may send the packets due within EARLY_MS with the one that
    # is due (a2dp/stream.c, send_early_packet): each packet is measured by
    # the latest of it and the packets after it that could have gone with
    # it, which is the clock whether or not they went together; a late
    # packet still shows. How early a packet came is reported apart, against
    # the same reference.
    packet_s = max(pcm) / float(rate)
    ahead = int(np.ceil(EARLY_MS / 1000.0 / packet_s)) + 1 if packet_s > 0 else 1
    later = dev.copy()
    for k in range(1, ahead + 1):
        if len(dev) > k:
            later[:-k] = np.maximum(later[:-k], dev[k:])
    # The last ones have no packets after them: they are measured by the
    # latest of the stream's last few, the last due packet among them.
    later[-ahead:] = np.maximum(later[-ahead:], dev[-(ahead + 1):].max())
    ref = np.median(later)
    late = later - ref
    rep["pacing_ms"] = float(np.max(np.abs(late)) * 1000)
    rep["pacing_p95_ms"] = float(np.percentile(np.abs(late), 95) * 1000)
    rep["pacing_late_ms"] = float(max(0.0, late.max()) * 1000)
    rep["pacing_early_ms"] = float(max(0.0, -(dev - ref).min()) * 1000)
    rep["packet_ms"] = float(max(pcm) * 1000.0 / rate)
    return rep


def early_within_bound(rep, tolerance_ms):
    """No packet came more than EARLY_MS (+ tolerance) before it was due."""
    return rep["pacing_early_ms"] <= EARLY_MS + tolerance_ms


# ------------------------------------------------------- the codecs alone
# What a codec gives on a signal by itself (its library's encoder then its
# decoder, no plugin, no transport): the reference the end-to-end SNR is
# held to. The libraries are the ones the test sink decodes with.

def _to_s16(samples24):
    """24-bit ints -> int16, rounded as the test sink rounds."""
    q = (samples24.astype(np.int64) + 128) >> 8
    return np.clip(q, -32768, 32767).astype(np.int16)


def aptx_alone(sig, hd):
    """int16 (N, 2) through libfreeaptx's encoder and decoder; int16 (M, 2).

    The input goes in as the top 16 of 24 bits, as the plugin feeds it. The
    decoder starts once it has synchronised, dropping its start-up delay, so
    the output is aligned with the input (lag 0)."""
    import ctypes
    lib = ctypes.CDLL('libfreeaptx.so.0')
    lib.aptx_init.restype = ctypes.c_void_p
    lib.aptx_init.argtypes = [ctypes.c_int]
    lib.aptx_finish.argtypes = [ctypes.c_void_p]
    size_t = ctypes.c_size_t
    lib.aptx_encode.restype = size_t
    lib.aptx_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, size_t, ctypes.c_void_p,
                                size_t, ctypes.POINTER(size_t)]
    lib.aptx_decode_sync.restype = size_t
    lib.aptx_decode_sync.argtypes = [ctypes.c_void_p, ctypes.c_char_p, size_t, ctypes.c_void_p,
                                     size_t, ctypes.POINTER(size_t), ctypes.POINTER(ctypes.c_int),
                                     ctypes.POINTER(size_t)]
    s = _2d(sig)
    n = len(s) // 4 * 4 + 4 * 32          # whole codewords, then silence pushes the tail out
    x = np.zeros((n, 2), dtype=np.int32)
    x[:len(s)] = s.astype(np.int32) * 256
    raw = x.reshape(-1).astype('<i4').view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    cw = 6 if hd else 4
    enc_out = ctypes.create_string_buffer(n // 4 * cw)
    written = size_t(0)
    ctx = lib.aptx_init(1 if hd else 0)
    lib.aptx_encode(ctx, raw, len(raw), enc_out, len(enc_out), ctypes.byref(written))
    lib.aptx_finish(ctx)
    coded = enc_out.raw[:written.value]
    dec_out = ctypes.create_string_buffer(len(coded) // cw * 4 * 2 * 3 + 6)
    synced, dropped = ctypes.c_int(0), size_t(0)
    ctx = lib.aptx_init(1 if hd else 0)
    lib.aptx_decode_sync(ctx, coded, len(coded), dec_out, len(dec_out), ctypes.byref(written),
                         ctypes.byref(synced), ctypes.byref(dropped))
    lib.aptx_finish(ctx)
    b = np.frombuffer(dec_out.raw[:written.value // 3 * 3], dtype=np.uint8).reshape(-1, 3)
    v = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16 |
         b[:, 2].astype(np.int32) << 24) >> 8
    return _to_s16(v)[: len(v) // 2 * 2].reshape(-1, 2)


class _Sbc(__import__('ctypes').Structure):
    import ctypes as _c
    _fields_ = [('flags', _c.c_ulong), ('frequency', _c.c_uint8), ('blocks', _c.c_uint8),
                ('subbands', _c.c_uint8), ('mode', _c.c_uint8), ('allocation', _c.c_uint8),
                ('bitpool', _c.c_uint8), ('endian', _c.c_uint8), ('priv', _c.c_void_p),
                ('priv_alloc_base', _c.c_void_p)]


def sbc_alone(sig, config):
    """int16 (N, ch) through libsbc at an A2DP configuration (4 bytes, as
    SetConfiguration carries it); int16 (M, ch), delayed by SBC_DELAY."""
    import ctypes
    lib = ctypes.CDLL('libsbc.so.1')
    size_t = ctypes.c_size_t
    lib.sbc_get_codesize.restype = size_t
    lib.sbc_encode.restype = ctypes.c_ssize_t
    lib.sbc_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, size_t, ctypes.c_void_p, size_t,
                               ctypes.POINTER(ctypes.c_ssize_t)]
    lib.sbc_decode.restype = ctypes.c_ssize_t
    lib.sbc_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, size_t, ctypes.c_void_p, size_t,
                               ctypes.POINTER(size_t)]
    enc, dec = _Sbc(), _Sbc()
    cfg = bytes(config)
    lib.sbc_init_a2dp(ctypes.byref(enc), ctypes.c_ulong(0), cfg, size_t(4))
    enc.bitpool = cfg[3]                   # sbc_init_a2dp leaves 32
    lib.sbc_init(ctypes.byref(dec), ctypes.c_ulong(0))
    s = _2d(sig)
    code = lib.sbc_get_codesize(ctypes.byref(enc))
    data = s.astype('<i2').tobytes() + bytes(code * 2)
    frame, pcm = ctypes.create_string_buffer(1024), ctypes.create_string_buffer(4096)
    out = []
    for pos in range(0, len(data) - code + 1, code):
        w = ctypes.c_ssize_t(0)
        lib.sbc_encode(ctypes.byref(enc), data[pos:pos + code], code, frame, 1024, ctypes.byref(w))
        got = size_t(0)
        lib.sbc_decode(ctypes.byref(dec), frame.raw[:w.value], w.value, pcm, 4096, ctypes.byref(got))
        out.append(pcm.raw[:got.value])
    lib.sbc_finish(ctypes.byref(enc))
    lib.sbc_finish(ctypes.byref(dec))
    return np.frombuffer(b''.join(out), dtype='<i2').reshape(-1, s.shape[1]).astype(np.int16)


def aac_alone(sig, rate, bitrate, build):
    """int16 (N, 2) through libavcodec's AAC encoder and decoder alone
    (BUILD/aac_alone, no LATM, no transport), primed with a frame of silence
    as the plugin primes it; int16 (M, 2), delayed by 2048 samples."""
    import os
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, 'in.raw'), os.path.join(d, 'out.raw')
        _2d(sig).astype('<i2').tofile(src)
        subprocess.run([os.path.join(build, 'aac_alone'), src, dst, str(rate), str(bitrate)],
                       check=True, timeout=60)
        return np.fromfile(dst, dtype='<i2').reshape(-1, 2).astype(np.int16)
