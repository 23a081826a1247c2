"""pcm_bt for capture: a phone (the mock's scripted A2DP Source, feeding RTP
SBC, aptX, aptX HD or AAC from tests/tools/phone_source in real time) plays
into the real arecord, checked as audio: aligned, SNR against the codec's
library alone, duration, gaps; packet loss (SBC, aptX HD, AAC fragments),
packets out of order, bursts (the phone's packets held back, then sent at
once), AAC frames spanning packets, a pause and resume (ON_PAUSE=silence and =wait), the link lost, the
delay, file descriptors and threads after close, and the open-time errors.

Packets at MTU 672: 5 SBC frames of 128 samples, 640 frames (14.5 ms).
"""
import atexit
import os
import re
import shutil
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import BUILD, TIME_SCALE, Env, check, finish  # noqa: E402

PHONE = '00:1B:66:AA:BB:CC'
DEV = 'bluetooth:DEV=' + PHONE
# The audio checks run with a 120 ms jitter buffer: it rides out a stall of
# about 100 ms of either process on a loaded machine (the default 60 ms, about
# 45 ms). The delay test uses the default.
AUDIO_DEV = DEV + ',JITTER_MS=120'
RATE = 44100
CONFIG = bytes.fromhex('21150235')   # what we select from the phone's ffff0235
PACKET = 640
JITTER = 60 * RATE // 1000           # the default JITTER_MS, in frames
SWEEP_MIN_DB = 60.0                  # measured 65.2 dB, as libsbc alone
# The search window of the alignment: open + jitter buffer, well within 1 s.
LAG_GUESS, LAG_SEARCH = RATE // 2, RATE // 2
TICK_MS = 20                         # the capture's tick at arecord's default period


def phone_env(tmp_wav, phone_args='', pause=None, devices=None, seps=(), mock_args=()):
    """seps: the phone's source SEPs ("codec:caps" hex), else SBC alone."""
    extra = ['--phone', os.path.join(BUILD, 'phone_source'),
             '--phone-args=--wav %s %s' % (tmp_wav, phone_args)]
    if pause:
        extra += ['--phone-pause', pause]
    for sep in seps:
        extra += ['--phone-sep', sep]
    extra += list(mock_args)
    return Env(devices=devices or ['hci0/%s,phone' % PHONE], sink=None, extra_args=extra)


INPUTS = '/tmp/alsabt-capture-%d' % os.getpid()
atexit.register(shutil.rmtree, INPUTS, True)


def prepared(name, seconds=3.0):
    """A sweep written where the phone reads it (the phone's arguments are
    fixed before an Env, and its directory, exist; removed at exit)."""
    d = INPUTS
    os.makedirs(d, exist_ok=True)
    sig = audio.sweep(RATE, seconds)
    path = os.path.join(d, name + '.wav')
    audio.write_wav(path, sig, RATE)
    return sig, path


def arecord(env, seconds, dev=AUDIO_DEV, timeout=None, flags=()):
    out = env.tmp + '/out.wav'
    r = env.run(['arecord', '-q', *flags, '-D', dev, '-f', 'cd', '-s', str(int(seconds * RATE)), out],
                timeout=timeout or seconds + 10)
    got = audio.read_wav(out)[0] if os.path.exists(out) else np.zeros((0, 2), np.int16)
    return r, got


def seg_snr(sig, got, lag, a, b):
    """SNR of sig[a:b] against got, at lag."""
    return audio.snr_db(sig[a:b], got[a + lag:], 0, RATE) if b > a else float('nan')


def test_clean(flags):
    """RW blocking, or mmap non-blocking (-M -N)."""
    sig, path = prepared('clean')
    name = 'clean ' + (' '.join(flags) or 'RW')
    with phone_env(path) as env:
        r, got = arecord(env, 4, flags=flags)
        check(name + ': arecord succeeded', r.rc == 0 and not r.timed_out, r.stderr[-500:])
        check(name + ': 4 s captured', len(got) == 4 * RATE, f'{len(got)} frames')
        check(name + ': took real time (4 s + open)', 3.95 <= r.elapsed <= 4.0 + 1.5 * TIME_SCALE,
              f'{r.elapsed:.2f} s')
        if len(got) < RATE:
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        snr = audio.snr_db(sig, got, lag, RATE)
        ref = audio.sbc_alone(sig, CONFIG)
        ref_snr = audio.snr_db(sig, ref, audio.align(sig, ref), RATE)
        print(f'{name}: lag {lag} frames, SNR {snr:.1f} dB, libsbc alone {ref_snr:.1f} dB')
        check(name + f': SNR >= {SWEEP_MIN_DB} dB and within 1 dB of libsbc alone',
              snr >= SWEEP_MIN_DB and snr >= ref_snr - 1.0, f'{snr:.1f} vs {ref_snr:.1f} dB')
        # Each half second at the same lag: the lag is constant (no slips).
        worst = min(seg_snr(sig, got, lag, a, a + RATE // 2) for a in range(0, 3 * RATE, RATE // 2))
        check(name + ': the lag is constant (every 0.5 s >= 55 dB at one lag)', worst >= 55.0,
              f'worst {worst:.1f} dB')
        check(name + ': the whole signal arrived', len(got) >= lag + len(sig),
              f'{len(got)} < {lag + len(sig)}')
        body = got[lag:lag + len(sig)]
        check(name + ': no gaps', not audio.gaps(body, RATE), str(audio.gaps(body, RATE)[:3]))
        check(name + ': silence before the phone streams', not len(got[:lag - 200]) or
              abs(got[:lag - 200]).max() == 0, f'max {abs(got[:lag - 200]).max()}')


# The phone's source SEPs per codec, SBC offered too (so the choice is ours),
# and the configuration our sink endpoint selects from them.
PHONE_SBC = '00:ffff0235'
CODECS = {
    'aptx': (['ff:4f000000010032', PHONE_SBC], '4f000000010022'),
    'aptx_hd': (['ff:d7000000240032' + '00000000', PHONE_SBC], 'd7000000240022' + '00000000'),
    # MPEG-2/4 LC, 44.1 and 48 kHz, stereo, VBR up to 320 kb/s.
    'aac': (['02:c0018484e200', PHONE_SBC], '80010404e200'),
}
# SNR floors, 3 dB under what each codec gives here (measured: aptX 50.7,
# aptX HD 64.6, AAC at 148 kb/s 55.8, at 128 kb/s over MTU 200 42.8, at 96
# kb/s 34.8, each the same as the codec's library alone); the capture must
# also be within 1 dB of the library alone.
CODEC_MIN_DB = {'aptx': 47.0, 'aptx_hd': 61.0, 'aac': 52.0, 'aac128': 39.0, 'aac96': 31.0}


def aac_phone_bitrate(mtu=672):
    """What phone_source encodes AAC at: the configuration's 320 kb/s, capped
    to fit the MTU (as Android and PipeWire cap it)."""
    return min(320000, (mtu - 12 - 16) * 8 * RATE // 1024 * 2 // 3)


def codec_reference(name, sig, bitrate=None):
    if name.startswith('aptx'):
        return audio.aptx_alone(sig, name == 'aptx_hd')
    return audio.aac_alone(sig, RATE, bitrate or aac_phone_bitrate(), BUILD)


def configured(env):
    """The configuration of the stream, from the mock's SetConfiguration."""
    for e in env.events():
        m = re.match(r'SetConfiguration \S+ ([0-9a-f]+)$', e)
        if m:
            return m.group(1)
    return None


def test_codec(name, phone_args='', bitrate=None, label=None, floor=None, fragmented=False):
    """The phone offers this codec and SBC: we choose the codec; a sweep it
    plays arrives as audio, as good as the codec alone gives it."""
    seps, config = CODECS[name]
    label = label or name
    sig, path = prepared('codec-' + name)
    with phone_env(path, phone_args, seps=seps) as env:
        r, got = arecord(env, 4)
        check(label + ': arecord succeeded', r.rc == 0 and not r.timed_out, r.stderr[-500:])
        check(label + ': the codec chosen over SBC, configured ' + config,
              configured(env) == config, str(configured(env)))
        if fragmented:
            # phone-K.csv: index,seq,timestamp,frames (0: more of the frame follows),...
            rows = [ln.split(',') for f in sorted(os.listdir(env.tmp)) if re.match(r'phone-\d+\.csv$', f)
                    for ln in open(os.path.join(env.tmp, f)).read().splitlines()]
            frames = sum(r[3] != '0' for r in rows)
            check(label + ': every frame sent in 2 packets or more (marker on the last)',
                  frames > 100 and len(rows) >= 2 * frames, f'{len(rows)} packets, {frames} frames')
        check(label + ': 4 s captured in real time', len(got) == 4 * RATE and
              3.95 <= r.elapsed <= 4.0 + 1.5 * TIME_SCALE, f'{len(got)} frames, {r.elapsed:.2f} s')
        if len(got) < RATE:
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        snr = audio.snr_db(sig, got, lag, RATE)
        ref = codec_reference(name, sig, bitrate)
        ref_lag = audio.align(sig, ref, 0, 4096)
        ref_snr = audio.snr_db(sig, ref, ref_lag, RATE)
        floor = floor or CODEC_MIN_DB[name]
        print(f'{label}: lag {lag} frames, SNR {snr:.1f} dB, the codec alone {ref_snr:.1f} dB')
        check(label + f': SNR >= {floor} dB and within 1 dB of the codec alone',
              snr >= floor and snr >= ref_snr - 1.0, f'{snr:.1f} vs {ref_snr:.1f} dB')
        worst = min(seg_snr(sig, got, lag, a, a + RATE // 2) for a in range(0, 3 * RATE, RATE // 2))
        check(label + f': the lag is constant (every 0.5 s >= {floor - 5} dB at one lag)',
              worst >= floor - 5, f'worst {worst:.1f} dB')
        check(label + ': the whole signal arrived', len(got) >= lag + len(sig),
              f'{len(got)} < {lag + len(sig)}')
        body = got[lag:lag + len(sig)]
        check(label + ': no gaps', not audio.gaps(body, RATE), str(audio.gaps(body, RATE)[:3]))


def test_codec_loss(name, drops, unit, phone_args='', label=None, floor=None, gap=(1.0, 1.0),
                    settle=0.1):
    """Packets the phone's radio loses (drops: sent-packet indices, each
    taking one unit of `unit` frames): one silence per loss, of gap[0] to
    gap[1] units (aptX resynchronises during the next packet), the rest
    aligned at one lag from `settle` s after each (aptX's ADPCM takes about
    0.15 s to come back to level)."""
    seps, config = CODECS[name]
    label = label or name + ' loss'
    sig, path = prepared('loss-' + name)
    listed = ','.join(str(k) for k in drops)
    with phone_env(path, phone_args + ' --drop ' + listed, seps=seps) as env:
        r, got = arecord(env, 4)
        check(label + ': arecord succeeded, 4 s', r.rc == 0 and len(got) == 4 * RATE,
              f'{len(got)} frames; ' + r.stderr[-500:])
        if len(got) < RATE:
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        gaps = audio.gaps(got[lag:lag + len(sig)], RATE, min_ms=5)
        lens = [g[1] for g in gaps]
        lo, hi = (g * unit * 1000.0 / RATE for g in gap)
        print(f'{label}: lag {lag}, gaps {gaps}')
        check(label + f': one silence per lost packet, {lo:.1f} to {hi:.1f} ms (+- 1 ms)',
              len(gaps) == len(drops) and all(lo - 1.0 < x < hi + 1.0 for x in lens),
              f'gaps {gaps}')
        # Away from the losses (the codec needs a little to settle again).
        keep = np.ones(len(sig), bool)
        for g0, _ in gaps:
            a = int(g0 * RATE)
            keep[max(0, a - 2 * unit):a + int(settle * RATE)] = False
        idx = np.flatnonzero(keep)
        idx = idx[idx + lag < len(got)]
        ref, cap = sig[idx].astype(float), got[idx + lag].astype(float)
        snr = 10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - cap) ** 2), 1e-9))
        floor = floor or CODEC_MIN_DB[name]
        print(f'{label}: SNR away from the losses {snr:.1f} dB')
        check(label + f': the rest aligned at one lag (>= {floor} dB)', snr >= floor, f'{snr:.1f} dB')


def test_plug_conversion():
    """SBC (S16) read as S32 through the plug: the plug takes the capture
    with mmap access, where alsa-lib hands the same frames to transfer until
    they are committed. No overrun, the audio whole (the same holds for
    aptX HD's S32 read as -f cd)."""
    sig, path = prepared('plug')
    with phone_env(path) as env:
        out = env.tmp + '/out.raw'
        r = env.run(['arecord', '-q', '-D', AUDIO_DEV, '-t', 'raw', '-f', 'S32_LE', '-c', '2',
                     '-r', str(RATE), '-s', str(4 * RATE), out], timeout=14)
        got = (np.fromfile(out, '<i4').reshape(-1, 2) >> 16).astype(np.int16) \
            if os.path.exists(out) else np.zeros((0, 2), np.int16)
        check('S32 through the plug: no overrun, 4 s', r.rc == 0 and 'overrun' not in r.stderr and
              len(got) == 4 * RATE, f'{len(got)} frames; {r.stderr[-300:]}')
        if len(got) < RATE:
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        snr = audio.snr_db(sig, got, lag, RATE)
        body = got[lag:lag + len(sig)]
        print(f'S32 through the plug: lag {lag}, SNR {snr:.1f} dB')
        check(f'S32 through the plug: SNR >= {SWEEP_MIN_DB} dB, no gaps',
              snr >= SWEEP_MIN_DB and not audio.gaps(body, RATE), f'{snr:.1f} dB')


def lost_region(lag, k, n):
    """Where packets k..k+n-1 would have been in the capture (the codec's 73
    frames are in lag, and on the phone's side of the packet boundaries)."""
    start = lag - audio.SBC_DELAY + k * PACKET
    return start, start + n * PACKET


def test_loss():
    sig, path = prepared('loss')
    drops = [(40, 2), (100, 1), (160, 3)]
    listed = ','.join(str(k + i) for k, n in drops for i in range(n))
    with phone_env(path, '--drop ' + listed) as env:
        r, got = arecord(env, 4)
        check('loss: arecord succeeded', r.rc == 0, r.stderr[-500:])
        check('loss: the capture keeps its length', len(got) == 4 * RATE, f'{len(got)}')
        if len(got) < RATE:
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        silent = []
        for k, n in drops:
            a, b = lost_region(lag, k, n)
            silent.append(bool(np.all(got[a + 8:b - 8] == 0)))
        check('loss: silence exactly where packets were lost', all(silent), str(silent))
        gaps = audio.gaps(got[lag:lag + len(sig)], RATE, min_ms=5)
        want = [n * PACKET * 1000.0 / RATE for k, n in drops]
        lens = [g[1] for g in gaps]
        check('loss: one gap per loss, of the lost length (+-1 ms)',
              len(gaps) == len(drops) and all(abs(a - b) < 1.0 for a, b in zip(lens, want)),
              f'gaps {gaps}, want {want} ms')
        # Away from the losses (two packets either side), the rest is aligned.
        snr = aligned_snr(sig, got, lag, drops)
        print(f'loss: lag {lag}, SNR away from the losses {snr:.1f} dB, gaps {gaps}')
        check('loss: the rest aligned at one lag (>= 55 dB)', snr >= 55.0, f'{snr:.1f} dB')


def aligned_snr(sig, got, lag, skip=()):
    """SNR of the capture at one lag, leaving out the packets in skip
    ((k, n): packets k..k+n-1, two either side too)."""
    keep = np.ones(len(sig), bool)
    for k, n in skip:
        a, b = lost_region(0, k - 2, n + 4)
        keep[max(0, a + audio.SBC_DELAY):b + audio.SBC_DELAY] = False
    idx = np.flatnonzero(keep)
    idx = idx[idx + lag < len(got)]
    ref, cap = sig[idx].astype(float), got[idx + lag].astype(float)
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - cap) ** 2), 1e-9))


def test_reordered():
    """Packets sent out of order (--late K:N: packet K after packet K+N).
    A Bluetooth link delivers in order; a source that does not is kept to
    time: the packet after the missing one leaves the missing one's time as
    silence, and the missing one, late, is dropped before it is decoded
    (SBC's decoder has state). One, two and twelve places late: one gap of
    a packet each, the rest aligned at one lag."""
    sig, path = prepared('reordered')
    late = [(40, 1), (100, 2), (160, 12)]
    with phone_env(path, '--late ' + ','.join('%d:%d' % kn for kn in late)) as env:
        r, got = arecord(env, 4)
        check('reordered: arecord succeeded', r.rc == 0, r.stderr[-500:])
        if len(got) < 3 * RATE:
            check('reordered: audio captured', False, f'{len(got)} frames')
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        gaps = audio.gaps(got[lag:lag + len(sig)], RATE, min_ms=5)
        silent = [bool(np.all(got[a + 8:b - 8] == 0))
                  for a, b in (lost_region(lag, k, 1) for k, _ in late)]
        want = PACKET * 1000.0 / RATE
        snr = aligned_snr(sig, got, lag, [(k, 1) for k, _ in late])
        print(f'reordered: lag {lag}, gaps {gaps}, SNR away from them {snr:.1f} dB')
        check('reordered: silence of one packet where each late one belonged',
              all(silent) and len(gaps) == len(late) and all(abs(g[1] - want) < 1.0 for g in gaps),
              f'silent {silent}, gaps {gaps}, want {len(late)} of {want:.1f} ms')
        check('reordered: the rest aligned at one lag (>= 55 dB)', snr >= 55.0, f'{snr:.1f} dB')


def held(log, hold_at, hold_for):
    """How long the phone held its packets, from its log: from the time the
    first held packet was due to the time it went; and how long the burst
    took to go (ms each). A packet's due time is the phone's start plus its
    RTP timestamp; the start is the earliest (sent - timestamp) of all, as
    no packet goes before its time."""
    rows = [r for r in (ln.split(',') for ln in open(log).read().split()) if len(r) == 6]
    ts0 = int(rows[0][2])
    sent = [(int(r[4]), (int(r[2]) - ts0) * 1e9 / RATE) for r in rows]
    t0 = min(t - due for t, due in sent)
    burst = [(t, due) for t, due in sent if hold_at * 1e9 <= due < (hold_at + hold_for) * 1e9]
    return (burst[0][0] - t0 - burst[0][1]) / 1e6, (burst[-1][0] - burst[0][0]) / 1e6


def test_burst(hold_ms):
    """The phone's packets held for hold_ms, then sent at once (a radio
    retransmitting, then catching up). Within the buffer (120 ms): no gap,
    one lag. Beyond it: the buffer runs dry and silence stands in for the
    late audio; when the burst comes, the audio whose time passed is dropped
    and the rest keeps the lag it had (within a packet). The silence is
    measured against the hold the phone's log shows: a phone woken late
    holds longer, and that is not the capture's doing."""
    sig, path = prepared('burst%d' % hold_ms)
    name = 'burst of %d ms' % hold_ms
    log = os.path.join(INPUTS, 'burst%d.csv' % hold_ms)
    with phone_env(path, '--hold-at 1.0 --hold-for %.3f --log %s' % (hold_ms / 1000.0, log)) as env:
        r, got = arecord(env, 4)
        check(name + ': arecord succeeded', r.rc == 0, r.stderr[-500:])
        if len(got) < 3 * RATE:
            check(name + ': audio captured', False, f'{len(got)} frames')
            return
        lag1 = audio.align(sig[:RATE], got, LAG_GUESS, LAG_SEARCH)
        skip = 3 * RATE // 2
        lag2 = audio.align(sig[skip:], got, lag1 + skip, RATE // 4) - skip
        gaps = audio.gaps(got[lag1:lag1 + len(sig)], RATE, min_ms=2)
        shift = (lag2 - lag1) * 1000.0 / RATE
        s1 = seg_snr(sig, got, lag1, 0, RATE)
        s2 = seg_snr(sig, got, lag2, skip, len(sig) - PACKET)
        print(f'{name}: lag {lag1} then {lag2} ({shift:+.1f} ms), SNR {s1:.1f} / {s2:.1f} dB, '
              f'gaps {gaps}')
        check(name + ': the audio before and after it (>= %.0f dB each)' % SWEEP_MIN_DB,
              s1 >= SWEEP_MIN_DB and s2 >= SWEEP_MIN_DB, f'{s1:.1f} / {s2:.1f} dB')
        if hold_ms < 120:
            check(name + ': absorbed: no gap, one lag', not gaps and lag1 == lag2,
                  f'gaps {gaps}, shift {shift:.1f} ms')
        else:
            # Silence comes a tick at a time (jitter.h): the gap is the late
            # audio's time to a tick either way, and longer by how long the
            # burst took to go (a phone preempted in its middle).
            hold, spread = held(log, 1.0, hold_ms / 1000.0)
            want = hold - 120
            said = f'the phone held {hold:.1f} ms, its burst took {spread:.1f} ms'
            print(f'{name}: {said}')
            slack = (TICK_MS + 5) * TIME_SCALE
            check(name + ': one silence where the late audio was (%.0f ms, +- a tick)' % want,
                  len(gaps) == 1 and -slack <= gaps[0][1] - want <= slack + spread,
                  f'gaps {gaps}, {said}')
            check(name + ': the audio after it keeps its lag (within a packet)',
                  0 <= lag2 - lag1 <= PACKET, f'shift {shift:.1f} ms')


def test_reader_stopped():
    """The whole reading process stopped (SIGSTOP) for 0.3 s, its I/O thread
    with it, at the default depth (60 ms): the phone's packets wait in the
    socket, and are read before the clock's catch-up is delivered, so the
    capture has no gap and keeps one lag."""
    sig, path = prepared('stopped')
    with phone_env(path) as env:
        out = env.tmp + '/out.wav'
        p = env.spawn(['arecord', '-q', '-D', DEV, '-f', 'cd', '-s', str(3 * RATE), out])
        time.sleep(1.2 * TIME_SCALE)
        p.signal(signal.SIGSTOP)
        time.sleep(0.3)
        p.signal(signal.SIGCONT)
        r = p.wait(10 * TIME_SCALE)
        got = audio.read_wav(out)[0] if os.path.exists(out) else np.zeros((0, 2), np.int16)
        check('reader stopped: arecord succeeded, no overrun', r.rc == 0 and not r.stderr,
              r.stderr[-300:])
        if len(got) < 2 * RATE:
            check('reader stopped: audio captured', False, f'{len(got)} frames')
            return
        lag = audio.align(sig, got, LAG_GUESS, LAG_SEARCH)
        end = min(len(sig), len(got) - lag)
        gaps = audio.gaps(got[lag:lag + end], RATE, min_ms=2)
        snr = seg_snr(sig, got, lag, 0, end)
        print(f'reader stopped: lag {lag}, SNR {snr:.1f} dB over {end / RATE:.2f} s, gaps {gaps}')
        check('reader stopped: no gap', not gaps, str(gaps))
        check('reader stopped: one lag throughout (SNR >= %.0f dB)' % SWEEP_MIN_DB,
              snr >= SWEEP_MIN_DB, f'{snr:.1f} dB')


def test_pause(wait, clock_runs=False):
    """The phone stops for 1 s at 1 s (its transport idle) and resumes; its
    RTP timestamps continue where they were, or jump by the pause."""
    sig, path = prepared('pause')
    name = 'pause, ON_PAUSE=%s%s' % ('wait' if wait else 'silence',
                                     ', timestamps jump' if clock_runs else '')
    dev = AUDIO_DEV + (',ON_PAUSE=wait' if wait else '')
    args = '--pause-at 1.0 --pause-for 1.0 --clock-runs %d' % clock_runs
    with phone_env(path, args, pause='1.0:1.0') as env:
        # The phone sends 3 s of audio: waiting, only that much ever comes.
        r, got = arecord(env, 5 if not wait else 2.5, dev=dev)
        ev = env.events()
        check(name + ': arecord succeeded, no overrun', r.rc == 0 and 'overrun' not in r.stderr,
              r.stderr[-500:])
        check(name + ': the transport went idle and pending again',
              any(re.match(r'State .* idle', e) for e in ev) and
              sum(bool(re.match(r'State .* pending', e)) for e in ev) >= 2, str(ev[-12:]))
        if len(got) < RATE:
            check(name + ': audio captured', False, f'{len(got)} frames')
            return
        first = sig[:RATE]
        lag1 = audio.align(first, got, LAG_GUESS, LAG_SEARCH)
        skip = RATE + RATE // 4        # the second part, from 1.25 s of the signal
        lag2 = audio.align(sig[skip:], got, lag1 + (0 if wait else RATE) + skip, RATE // 2) - skip
        s1 = seg_snr(sig, got, lag1, 0, RATE - PACKET)
        s2 = seg_snr(sig, got, lag2, RATE + PACKET, min(3 * RATE, len(got) - lag2))
        shift = (lag2 - lag1) * 1000.0 / RATE
        gaps = audio.gaps(got[lag1:], RATE, min_ms=50)
        print(f'{name}: lag {lag1} then {lag2} (+{shift:.1f} ms), SNR {s1:.1f} / {s2:.1f} dB, '
              f'gaps {gaps}, {r.elapsed:.2f} s')
        check(name + ': audio before and after the pause (>= 55 dB each)',
              s1 >= 55.0 and s2 >= 55.0, f'{s1:.1f} / {s2:.1f} dB')
        if wait:
            check(name + ': no silence: the capture waited', not gaps and abs(shift) < 20,
                  f'gaps {gaps}, shift {shift:.1f} ms')
            check(name + ': arecord took the pause longer (2.5 s of audio in >= 3.4 s)',
                  r.elapsed >= 3.4, f'{r.elapsed:.2f} s')
        else:
            check(name + ': 5 s captured in real time', len(got) == 5 * RATE and
                  r.elapsed <= 5.0 + 1.5 * TIME_SCALE, f'{len(got)} frames, {r.elapsed:.2f} s')
            check(name + ': one silence of the pause, the audio after it shifted by it (1 s +- 100 ms)',
                  len(gaps) == 1 and abs(shift - 1000) < 100 * TIME_SCALE and
                  abs(gaps[0][1] - shift) < 30 * TIME_SCALE, f'gaps {gaps}, shift {shift:.1f} ms')


def test_link_lost():
    sig, path = prepared('lost', seconds=6.0)
    with phone_env(path) as env:
        p = env.spawn([os.path.join(BUILD, 'capture_client'), '-D', DEV, '-d', '10'])
        env.wait_event(r'^TryAcquire -> ok', timeout=5 * TIME_SCALE)
        time.sleep(1.0)
        t0 = time.monotonic()
        env.mock('Vanish')
        r = p.wait(5 * TIME_SCALE)
        took = time.monotonic() - t0
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        print(f'link lost: the client exited {took * 1000:.0f} ms after Vanish')
        err = re.search(r'ERROR t=\S+ where=(\S+) err=(-?\d+)', r.stdout)
        check('link lost: the read fails with -ENODEV', r.rc == 1 and err and err.group(2) == '-19',
              r.stdout[-300:] + r.stderr[-300:])
        check('link lost: within 1 s', took < 1.0 * TIME_SCALE, f'{took:.2f} s')
        check('link lost: one line says so', len(lines) == 1 and 'ended the audio stream' in lines[0],
              str(lines))
        check_counts('link lost', r.stdout)


def test_link_lost_arecord():
    """The same through the real arecord, which blocks in snd_pcm_readi."""
    sig, path = prepared('lost', seconds=6.0)
    with phone_env(path) as env:
        p = env.spawn(['arecord', '-q', '-D', DEV, '-f', 'cd', '-d', '10', env.tmp + '/out.wav'])
        env.wait_event(r'^TryAcquire -> ok', timeout=5 * TIME_SCALE)
        time.sleep(1.0)
        t0 = time.monotonic()
        env.mock('Vanish')
        r = p.wait(5 * TIME_SCALE)
        took = time.monotonic() - t0
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        print(f'link lost, arecord: exited {took * 1000:.0f} ms after Vanish: {r.stderr.strip()!r}')
        check('link lost, arecord: exits non-zero with "No such device" within 1 s',
              r.rc not in (0, None) and r.rc > 0 and 'No such device' in r.stderr and
              took < 1.0 * TIME_SCALE, f'rc {r.rc}, {took:.2f} s, {r.stderr[-300:]}')
        check('link lost, arecord: one line from the plugin says why',
              len(lines) == 1 and 'ended the audio stream' in lines[0], str(lines))


def test_stream_ended():
    """The phone ends the stream without losing the link (it reconfigures:
    another codec or rate; or it disconnects the profile), or bluetoothd
    stops: the read ends with "No such device" and one line, within 1 s,
    and the program's descriptors and threads are released."""
    sig, path = prepared('ended', seconds=6.0)
    for name, act in (('the phone reconfigures', lambda env: env.mock('EndStreams')),
                      ('bluetoothd stops', lambda env: env.stop_mock())):
        with phone_env(path) as env:
            p = env.spawn([os.path.join(BUILD, 'capture_client'), '-D', DEV, '-d', '10'])
            env.wait_event(r'^TryAcquire -> ok', timeout=5 * TIME_SCALE)
            time.sleep(0.5)
            t0 = time.monotonic()
            act(env)
            r = p.wait(5 * TIME_SCALE)
            took = time.monotonic() - t0
            lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
            err = re.search(r'ERROR t=\S+ where=(\S+) err=(-?\d+)', r.stdout)
            print(f'{name}: the client exited {took * 1000:.0f} ms after; {lines}')
            check(name + ': the read fails with -ENODEV within 1 s',
                  r.rc == 1 and err and err.group(2) == '-19' and took < 1.0 * TIME_SCALE,
                  f'{took:.2f} s ' + r.stdout[-300:] + r.stderr[-300:])
            check(name + ': one line says so', len(lines) == 1, str(lines))
            check_counts(name, r.stdout)


def check_counts(name, out):
    before = re.search(r'BEFORE t=\S+ fds=(\d+) threads=(\d+)', out)
    after = re.search(r'CLOSED t=\S+ fds=(\d+) threads=(\d+)', out)
    check(name + ': fds and threads after close as before the open',
          before and after and before.groups() == after.groups(),
          f'{before and before.groups()} -> {after and after.groups()}')


def delays(out):
    return [int(m) for m in re.findall(r'DELAY t=\S+ frames=(-?\d+)', out)]


def test_delay_and_close():
    sig, path = prepared('delay')
    for jitter_ms in (60, 200):
        with phone_env(path) as env:
            r = env.run([os.path.join(BUILD, 'capture_client'), '-D',
                         DEV + ',JITTER_MS=%d' % jitter_ms, '-d', '2.5'], timeout=20)
            name = f'JITTER_MS={jitter_ms}'
            check(name + ': capture_client ran', r.rc == 0, r.stdout[-300:] + r.stderr[-300:])
            d = delays(r.stdout)
            # Once the phone streams (the second half), the delay is the jitter
            # buffer (depth .. depth + packets) plus what waits to be read.
            late = sorted(d[len(d) // 2:])
            med = late[len(late) // 2] if late else -1
            target = jitter_ms * RATE // 1000
            print(f'{name}: delay median {med} frames ({med * 1000 / RATE:.1f} ms)')
            check(name + ': snd_pcm_delay counts the jitter buffer (depth - 2 packets .. depth + '
                  '20 ms period + 3 packets)',
                  target - 2 * PACKET <= med <= target + 882 + 3 * PACKET, f'{med} frames')
            check_counts(name, r.stdout)


def delay_reports(env):
    """(value, outcome) of each write of our transport's Delay, from the mock's log."""
    out, value = [], None
    for line in env.mock_log().splitlines():
        m = re.match(r'\[[\d.]+\] SetProperty (?:\S+ Delay (\d+) |-> (\S+))', line)
        if m and m.group(1):
            value = int(m.group(1))
        elif m and value is not None:
            out.append((value, m.group(2)))
            value = None
    return out


def test_delay_report():
    """The phone is told our delay (the jitter buffer and one 5 ms tick) once
    the transport is ours; with a BlueZ that cannot take it (before 5.79),
    the capture is not disturbed."""
    sig, path = prepared('report', seconds=1.5)
    for jitter_ms, readonly in ((60, False), (200, False), (60, True)):
        name = f'Delay report, JITTER_MS={jitter_ms}' + (', read-only' if readonly else '')
        with phone_env(path, mock_args=['--sink-delay-readonly'] if readonly else []) as env:
            r, got = arecord(env, 1.5, dev=DEV + ',JITTER_MS=%d' % jitter_ms)
            reports = delay_reports(env)
            print(f'{name}: {reports}')
            check(name + ': arecord captured 1.5 s', r.rc == 0 and len(got) == int(1.5 * RATE),
                  r.stderr[-300:])
            want = [(jitter_ms * 10 + 50, 'PropertyReadOnly' if readonly else 'ok')]
            check(name + ': one write of Delay, %d (1/10 ms)' % want[0][0],
                  [(v, o.split('.')[-1].rstrip(':')) for v, o in reports] == want, str(reports))
            check(name + ': no line from the plugin', 'ALSA lib' not in r.stderr, r.stderr[-300:])


def test_overrun():
    """A reader that stops for 0.5 s with a 0.2 s buffer: an overrun, as a
    card reports it, and the capture goes on after snd_pcm_prepare."""
    sig, path = prepared('overrun')
    with phone_env(path) as env:
        r = env.run([os.path.join(BUILD, 'capture_client'), '-D', AUDIO_DEV, '-d', '2',
                     '--stall-at', '0.5', '--stall-for', '0.5'], timeout=20)
        check('overrun: reported as -EPIPE, recovered, read to the end',
              r.rc == 0 and 'XRUN' in r.stdout and 'err=-32' in r.stdout and
              'RECOVERED' in r.stdout, r.stdout[-300:] + r.stderr[-300:])
        check_counts('overrun', r.stdout)


def test_rewind_forward():
    """snd_pcm_rewind reads the same frames again (they were skipped, left as
    whatever the buffer held); snd_pcm_forward skips frames without an
    overrun for them later."""
    import numpy as np
    sig, path = prepared('rewind', seconds=3.0)
    with phone_env(path) as env:
        raw = os.path.join(env.tmp, 'rewind.raw')
        r = env.run([os.path.join(BUILD, 'capture_client'), '-D', AUDIO_DEV, '-d', '2.5',
                     '-o', raw, '--rewind-at', '1.5', '--rewind', '1000'], timeout=20)
        m = re.search(r'REWIND t=\S+ frames=(-?\d+) at=(\d+)', r.stdout)
        got = np.fromfile(raw, dtype='<i2').reshape(-1, 2) if os.path.exists(raw) else None
        ok = r.rc == 0 and m and int(m.group(1)) > 0 and got is not None
        check('rewind: snd_pcm_rewind goes back', ok, r.stdout[-300:] + r.stderr[-300:])
        if ok:
            n, at = int(m.group(1)), int(m.group(2))
            again, before = got[at:at + n], got[at - n:at]
            check('rewind: the %d frames are read again, the same' % n,
                  np.any(before) and np.array_equal(again, before),
                  'first differing frame %s' % (np.argmax(np.any(again != before, axis=1))
                                                if again.shape == before.shape else again.shape))
    with phone_env(path) as env:
        r = env.run([os.path.join(BUILD, 'capture_client'), '-D', AUDIO_DEV, '-d', '2',
                     '--forward-at', '1.0', '--forward', '500'], timeout=20)
        check('forward: snd_pcm_forward skips, no overrun follows, read to the end',
              r.rc == 0 and 'FORWARD' in r.stdout and 'XRUN' not in r.stdout,
              'rc %s: %s; %s' % (r.rc, [ln for ln in r.stdout.splitlines()
                                        if ln.startswith(('FORWARD', 'XRUN', 'ERROR'))],
                                 r.stderr[-300:]))


def open_error(name, devices, dev, errno_text, pattern):
    _, path = prepared('err', seconds=0.5)
    with phone_env(path, devices=devices) as env:
        r, _ = arecord(env, 1, dev=dev)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check(f'{name}: fails with "{errno_text}"', r.rc != 0 and errno_text in r.stderr,
              r.stderr[-400:])
        check(f'{name}: one SNDERR line saying what to do',
              len(lines) == 1 and re.search(pattern, lines[0]), str(lines))
        check(f'{name}: within 1 s', r.elapsed < 1.0 * TIME_SCALE, f'{r.elapsed:.2f} s')


def test_errors():
    open_error('unknown phone', None, 'bluetooth:DEV=00:1B:66:AA:BB:CD', 'No such device',
               r'not known to BlueZ: pair it')
    open_error('no A2DP Source (a speaker)', ['hci0/%s' % PHONE], DEV,
               'Operation not supported', r'not an audio source')
    open_error('CODEC= with nothing we decode', None, DEV + ',CODEC=ldac',
               'Operation not supported', r'decodes only aptx_hd:aptx:aac:sbc:sbc_xq here')
    open_error('bad JITTER_MS', None, DEV + ',JITTER_MS=5', 'Invalid argument', r'jitter_ms')
    open_error('phone not paired', ['hci0/%s,phone,unpaired' % PHONE], DEV, 'Permission denied',
               r'not paired: run .bluetoothctl pair')
    test_no_answer()


def test_no_answer():
    """The phone never answers the connection: the open fails at TIMEOUT,
    saying what did not happen, and leaves nothing behind."""
    _, path = prepared('noanswer', seconds=0.5)
    with phone_env(path) as env:
        env.mock('SetFault', 'ConnectProfile', 'noreply')
        r = env.run([os.path.join(BUILD, 'capture_client'), '-D', DEV + ',TIMEOUT=1500', '-d', '1'],
                    timeout=10 * TIME_SCALE)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        err = re.search(r'ERROR t=(\S+) where=open err=(-?\d+)', r.stdout)
        print(f'no answer: {r.elapsed:.2f} s, {r.stdout.strip()[-200:]!r}, {lines}')
        check('the phone never answers: the open fails with -ETIMEDOUT at TIMEOUT (1.5 s)',
              r.rc != 0 and err and err.group(2) == '-110' and 1.4 < r.elapsed < 1.5 + 1.0 * TIME_SCALE,
              f'{r.elapsed:.2f} s ' + r.stdout[-300:] + r.stderr[-300:])
        check('the phone never answers: one line says so', len(lines) == 1, str(lines))


ONLY = os.environ.get('ALSABT_CAPTURE_ONLY')   # "codecs": the codec cases alone


def codec_tests():
    test_codec('aptx')
    test_codec('aptx_hd')
    test_codec('aac')
    # A small MTU: every AAC frame spans several packets (marker on the last).
    test_codec('aac', '--mtu 200 --bitrate 128000', bitrate=128000,
               label='aac, frames in 2-3 packets (MTU 200)', floor=CODEC_MIN_DB['aac128'],
               fragmented=True)
    # A phone that never sets AAC's marker bit, its frames all within the MTU
    # (at 96 kb/s): each packet is a whole frame.
    test_codec('aac', '--marker 0 --bitrate 96000', bitrate=96000, floor=CODEC_MIN_DB['aac96'],
               label='aac, no marker bits')
    # aptX HD: 110 codewords, 440 frames a packet; the lost one's silence,
    # and the next one's while libfreeaptx resynchronises (measured 17.9-19.9
    # ms); 62.6 dB from 0.3 s after each loss.
    test_codec_loss('aptx_hd', [40, 100, 160], 440, gap=(1.0, 2.2), settle=0.3, floor=59.0)
    # AAC over MTU 200: one fragment lost loses its whole frame (1024).
    test_codec_loss('aac', [81, 201], 1024, '--mtu 200 --bitrate 128000',
                    label='aac loss of one fragment', floor=CODEC_MIN_DB['aac128'] - 3)


if ONLY == 'codecs':
    codec_tests()
    finish()
    sys.exit(0)

test_clean(())
test_clean(('-M', '-N'))
test_plug_conversion()
codec_tests()
test_loss()
test_reordered()
test_burst(80)
test_burst(300)
test_reader_stopped()
test_pause(wait=False)
test_pause(wait=True)
test_pause(wait=False, clock_runs=True)
test_pause(wait=True, clock_runs=True)
test_link_lost()
test_link_lost_arecord()
test_stream_ended()
test_delay_and_close()
test_delay_report()
test_overrun()
test_rewind_forward()
test_errors()
finish()
