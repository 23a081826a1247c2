"""Several programs on one speaker (MIX=1), against the mock bluetoothd: the
sink decodes their sum; one program closing, killed or stopped leaves the
others playing with no gap; the mixer killed ends every program with an
error; reopening within the linger plays at once, with no new connection;
another user cannot connect; where no mixer can run, the program plays alone.

Each program plays a sweep of its own (rising, falling, over other bands),
so each is found in the sum by cross-correlation, then taken out of it.
"""
import os
import re
import signal
import socket
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import TIME_SCALE, Env, check, finish  # noqa: E402
from test_pcm_semantics import Capture, first, lines, parse, run_client, PACING_STALL_MS  # noqa: E402

ADDR = '00:1B:66:AA:BB:CC'
DEV = 'hci0/' + ADDR
RATE = 44100
CODEC_DELAY = 73
SUM_MIN_DB = 40.0        # the sum of two sweeps through SBC, bitpool 53
MIXED = 'bluetooth:DEV=%s,MIX=1' % ADDR
MIXED_RAW = 'bluetooth_raw:DEV=%s,MIX=1' % ADDR


def signal_of(k, seconds, amp=0.2):
    """Program k's sweep: a band and a direction of its own."""
    bands = [(200, 6000), (7000, 300), (400, 9000), (9500, 500),
             (250, 4000), (5000, 220), (600, 10000), (8000, 700)]
    f0, f1 = bands[k % len(bands)]
    return audio.sweep(RATE, seconds, f0=f0, f1=f1, amp=amp)


def write(env, name, sig):
    path = os.path.join(env.tmp, name + '.wav')
    audio.write_wav(path, sig, RATE)
    return path


SANITIZER_REPORT = re.compile(r'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|'
                              r'WARNING: ThreadSanitizer|ERROR: ThreadSanitizer')


class mixed_env(Env):
    """The mock speaker, connected; the mixer's stderr (its errors, and in
    a sanitizer build the sanitizer's reports) kept in a log that is checked
    once the mixer has ended."""

    def __init__(self, **kw):
        super().__init__(devices=[DEV + ',connected'], **kw)
        fd, self.mixer_log = tempfile.mkstemp(prefix='alsabt-mixer-', suffix='.log')
        os.close(fd)

    def _start(self):
        super()._start()
        self.environ['ALSABT_MIXER_LOG'] = self.mixer_log

    def close(self):
        pids = self.mixer_pids() if self.address else []
        super().close()                 # the bus goes: a mixer left ends
        deadline = time.monotonic() + 5.0 * TIME_SCALE
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists('/proc/%d' % p)]
            time.sleep(0.05)
        if os.path.exists(self.mixer_log):
            with open(self.mixer_log, errors='replace') as f:
                text = f.read()
            os.unlink(self.mixer_log)
            bad = SANITIZER_REPORT.search(text)
            if bad or pids:
                check('the mixer ended cleanly (no sanitizer report, gone with the bus)',
                      False, 'left %s; %s' % (pids, text[max(0, bad.start() - 200) if bad else 0:][:1500]))


def start(env, wav, dev=MIXED):
    return env.spawn(['aplay', '-q', '-D', dev, wav])


def acquires(env):
    """Acquire calls (not their '-> ok' lines)."""
    return [e for e in env.events() if e.startswith('Acquire /')]


def registrants(env):
    """The bus names that registered endpoints: one per connection to the speaker."""
    return {e.split()[1] for e in env.events() if e.startswith('RegisterEndpoint :')}


def the_capture(env, name):
    caps = env.captures()
    check(name + ': one stream to the speaker for all the programs', len(caps) == 1,
          '%d streams' % len(caps))
    got, rate = audio.read_wav(caps[-1][0])
    return got


def test_sum():
    """Two programs, the second 0.5 s after the first: the speaker gets their sum."""
    with mixed_env() as env:
        a, b = signal_of(0, 3.0), signal_of(1, 1.5)
        pa = start(env, write(env, 'a', a))
        time.sleep(0.5 * TIME_SCALE)
        pb = start(env, write(env, 'b', b))
        ra, rb = pa.wait(20), pb.wait(20)
        check('sum: both programs play (no "busy")', ra.rc == 0 and rb.rc == 0,
              'rc %s %s: %s | %s' % (ra.rc, rb.rc, ra.stderr[-300:], rb.stderr[-300:]))
        got = the_capture(env, 'sum')
        lags, _ = audio.fit_sum(got, [a, b], [(CODEC_DELAY, 64), (int(0.5 * RATE), RATE)])
        check('sum: the first program at the codec delay', lags[0] == CODEC_DELAY,
              'lag %d' % lags[0])
        snr = audio.sum_snr(got, [a, b], lags)
        check('sum: the speaker plays the sum (SNR >= %g dB)' % SUM_MIN_DB, snr >= SUM_MIN_DB,
              '%.1f dB; lags %s' % (snr, lags))
        check('sum: one connection, one transport', len(acquires(env)) == 1 and
              len(registrants(env)) == 1,
              'Acquire x%d, endpoints of %s' % (len(acquires(env)), registrants(env)))


def test_first_closes():
    """The first program ends while the second plays: the second, no gap."""
    with mixed_env() as env:
        a, b = signal_of(2, 1.0), signal_of(3, 3.0)
        pa = start(env, write(env, 'a', a))
        time.sleep(0.3 * TIME_SCALE)
        pb = start(env, write(env, 'b', b))
        ra, rb = pa.wait(20), pb.wait(20)
        check('first closes: both exit 0', ra.rc == 0 and rb.rc == 0,
              '%s | %s' % (ra.stderr[-200:], rb.stderr[-200:]))
        got = the_capture(env, 'first closes')
        lags, rest = audio.fit_sum(got, [b, a], [(int(0.3 * RATE), RATE), (CODEC_DELAY, 64)])
        snr = audio.sum_snr(got, [b, a], lags)
        check('first closes: the sum all through, the second without a gap (SNR >= %g dB)'
              % SUM_MIN_DB, snr >= SUM_MIN_DB, '%.1f dB, lags %s' % (snr, lags))
        check('first closes: no silence inside', not audio.gaps(got, RATE),
              str(audio.gaps(got, RATE)[:5]))


def test_killed():
    """The first program is killed (SIGKILL) mid-song: the other plays on."""
    with mixed_env() as env:
        # long enough that both play on past the kill at any time scale
        a, b = signal_of(4, 2.0 + 2 * TIME_SCALE), signal_of(5, 2.0 + 1.5 * TIME_SCALE)
        pa = start(env, write(env, 'a', a))
        time.sleep(0.3 * TIME_SCALE)
        pb = start(env, write(env, 'b', b))
        time.sleep(1.0 * TIME_SCALE)
        pa.signal(signal.SIGKILL)
        t_kill = time.monotonic()
        rb = pb.wait(30)
        pa.wait(5)
        check('killed: the other exits 0', rb.rc == 0, rb.stderr[-300:])
        got = the_capture(env, 'killed')
        cap = Capture(env)
        lag_b = audio.align(b, got, expected_lag=int(0.3 * RATE), search=RATE)
        # From what had reached the sink at the kill, plus three packets (the
        # one going, two sent early) and a stall: b alone.
        after = cap.arrived(t_kill) + CODEC_DELAY + 3 * cap.packet_frames() + \
            int(PACING_STALL_MS * RATE / 1000)
        snr = audio.sum_snr(got, [b], [lag_b], after, lag_b + len(b) - 1024)
        check('killed: the other plays on alone, no gap (SNR >= %g dB)' % SUM_MIN_DB,
              snr >= SUM_MIN_DB, '%.1f dB from %.2f s' % (snr, after / RATE))
        check('killed: no silence inside', not audio.gaps(got, RATE),
              str(audio.gaps(got, RATE)[:5]))


def test_stopped():
    """The first program is stopped (SIGSTOP) for 1 s: only it underruns."""
    with mixed_env() as env:
        a, b = signal_of(6, 4.0), signal_of(7, 3.0)
        pa = start(env, write(env, 'a', a))
        time.sleep(0.3 * TIME_SCALE)
        pb = start(env, write(env, 'b', b))
        time.sleep(0.5 * TIME_SCALE)
        pa.signal(signal.SIGSTOP)
        time.sleep(1.0 * TIME_SCALE)
        pa.signal(signal.SIGCONT)
        ra, rb = pa.wait(20), pb.wait(20)
        check('stopped: the other exits 0', rb.rc == 0, rb.stderr[-300:])
        check('stopped: the stopped one underran and went on', ra.rc == 0 and
              'underrun' in ra.stderr, 'rc %s: %s' % (ra.rc, ra.stderr[-300:]))
        got = the_capture(env, 'stopped')
        lag_b = audio.align(b, got, expected_lag=int(0.3 * RATE), search=RATE)
        # b at one lag from start to end: check its first and last second.
        first = audio.align(b[:RATE], got, expected_lag=lag_b, search=4096)
        last = audio.align(b[-RATE:], got, expected_lag=lag_b + len(b) - RATE, search=4096)
        check('stopped: the other at one lag all through (no gap, nothing lost)',
              first == lag_b and last == lag_b + len(b) - RATE,
              'lags %d, %d, %d' % (lag_b, first, last - len(b) + RATE))


def test_delay_and_drain():
    """One program's snd_pcm_delay and drain while another plays on: the
    delay counts its own frames not yet heard, the drain ends when its own
    last frame has been played."""
    with mixed_env() as env:
        a, b = signal_of(0, 4.0), signal_of(1, 2.0)
        pa = start(env, write(env, 'a', a))
        time.sleep(0.4 * TIME_SCALE)
        log = os.path.join(env.tmp, 'delay.log')
        r, ev = run_client(env, MIXED_RAW, write(env, 'b', b), '--delay-log', log)
        pa.wait(20)
        cap = Capture(env)
        check('delay: the program ran', r.rc == 0 and cap.ok, r.stdout[-300:] + r.stderr[-300:])
        if not cap.ok:
            return
        (lag_a, lag_b), _ = audio.fit_sum(cap.got, [a, b],
                                          [(CODEC_DELAY, 64), (int(0.4 * RATE), RATE)])
        offset = lag_b - CODEC_DELAY           # b's first frame in the stream
        with open(log) as f:
            recs = [d for d in lines(parse(f.read()), 'DELAY')
                    if d['state'] == 'RUNNING' and isinstance(d['frames'], int)]
        mine = lambda t: max(0, cap.arrived(t) - offset)     # noqa: E731
        over_lo = np.array([d['frames'] - (d['written'] - mine(d['t'] + 0.003)) for d in recs])
        over_hi = np.array([d['frames'] - (d['written'] - mine(d['t'])) for d in recs])
        pkt = cap.packet_frames()
        bound = 3 * pkt + CODEC_DELAY + 32     # as playing alone: the mix adds nothing
        stall = max(pkt, round(PACING_STALL_MS * RATE / 1000)) * TIME_SCALE
        check('delay: enough samples', len(recs) >= 15, '%d' % len(recs))
        if len(recs) < 15:
            return
        print('# delay: beyond its frames not yet at the sink: %d..%d, median %.0f (packet %d)'
              % (over_lo.min(), over_hi.max(), np.median(over_hi), pkt))
        check('delay: >= its frames written but not yet at the sink', over_lo.min() >= 0,
              'min %d' % over_lo.min())
        check('delay: <= that + 3 packets + codec delay (95%; all within a stall more)',
              np.percentile(over_hi, 95) <= bound and
              over_hi.max() <= bound + stall,
              '95%% %d, max %d, bound %d' % (np.percentile(over_hi, 95), over_hi.max(), bound))
        end = first(ev, 'DRAIN_END')
        cum = np.cumsum(cap.frames)
        idx = int(np.searchsorted(cum, offset + len(b)))
        if end is None or idx >= len(cap.t):
            check('drain: ended, and its last frame reached the sink', False, str(end))
            return
        t_last = float(cap.t[idx])
        check('drain: ends once its last frame has been played, while the other plays on',
              t_last - 0.003 <= end['t'] <= t_last + 3 * pkt / RATE + 0.05 * TIME_SCALE,
              'DRAIN_END %.4f s after its last frame reached the sink' % (end['t'] - t_last))


def two_playing(env):
    """Two 4 s programs, the second 0.3 s after the first, both 0.7 s in."""
    pa = start(env, write(env, 'a', signal_of(0, 4.0)))
    time.sleep(0.3 * TIME_SCALE)
    pb = start(env, write(env, 'b', signal_of(1, 4.0)))
    time.sleep(0.7 * TIME_SCALE)
    return pa, pb


def test_mixer_killed():
    """The mixer is killed: every program gets an error within a second."""
    with mixed_env() as env:
        pa, pb = two_playing(env)
        pids = env.mixer_pids()
        check('mixer killed: one mixer runs', len(pids) == 1, str(pids))
        t = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        ra, rb = pa.wait(5), pb.wait(5)
        took = time.monotonic() - t
        check('mixer killed: both programs end with an error', ra.rc != 0 and rb.rc != 0 and
              not ra.timed_out and not rb.timed_out,
              'rc %s %s: %s | %s' % (ra.rc, rb.rc, ra.stderr[-200:], rb.stderr[-200:]))
        check('mixer killed: within 1 s', took < 1.0 * TIME_SCALE, '%.2f s' % took)
        check('mixer killed: they say the mixer has gone', 'mixer' in ra.stderr,
              ra.stderr[-300:])
        r = env.run(['aplay', '-q', '-D', MIXED, write(env, 'c', signal_of(2, 0.5))],
                    timeout=20)
        check('mixer killed: the next program plays (a new mixer)', r.rc == 0, r.stderr[-300:])


def test_speaker_vanishes():
    """The speaker goes mid-song: every program gets "No such device" and
    says why in one line (the mixer sends the reason as a notice and with
    the error; the program says it once)."""
    with mixed_env() as env:
        pa, pb = two_playing(env)
        t = time.monotonic()
        env.mock('Vanish')
        ra, rb = pa.wait(5), pb.wait(5)
        took = time.monotonic() - t
        check('speaker vanishes: both programs end with "No such device"',
              all(r.rc != 0 and not r.timed_out and 'No such device' in r.stderr for r in (ra, rb)),
              'rc %s %s: %s | %s' % (ra.rc, rb.rc, ra.stderr[-200:], rb.stderr[-200:]))
        check('speaker vanishes: within 1 s', took < 1.0 * TIME_SCALE, '%.2f s' % took)
        for who, r in (('first', ra), ('second', rb)):
            said = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
            check('speaker vanishes: the %s program says why in one line' % who,
                  len(said) == 1 and 'speaker' in said[0], str(said))


def rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) / 32768 + 1e-12)


def amixer(env, *args):
    return env.run(['amixer', '-D', 'bluetooth:DEV=' + ADDR, *args], timeout=10)


def lags_at(got, sigs, lags, window):
    """The lags of sigs in got's window: each is looked for, near the lag it
    had, by the part of it that lag put in the window."""
    starts = [max(0, window.start - lag) for lag in lags]
    parts = [s[o:max(o, window.stop - lag)] for s, o, lag in zip(sigs, starts, lags)]
    found, _ = audio.fit_sum(got, parts, [(lag + o, RATE // 2) for lag, o in zip(lags, starts)])
    return [f - o for f, o in zip(found, starts)]


def test_volume():
    """The mixer (alsamixer, amixer) with the mix: a speaker without absolute
    volume has the sum scaled by the element's dB, changed while two programs
    play; mute silences the sum; a speaker with absolute volume is told the
    value and the sum is left alone."""
    want_db = -50.0 * (127 - 64) / 127            # the element's dB curve
    length = 2.0 + 2 * TIME_SCALE
    with mixed_env() as env:
        a, b = signal_of(6, length), signal_of(7, length)
        pa, pb = start(env, write(env, 'a', a)), start(env, write(env, 'b', b))
        time.sleep(1.0 * TIME_SCALE)
        r = amixer(env, 'set', 'A2DP', '64')
        check('volume: amixer set while two programs play', r.rc == 0, r.stderr)
        ra, rb = pa.wait(30), pb.wait(30)
        check('volume: both play on', ra.rc == 0 and rb.rc == 0,
              '%s | %s' % (ra.stderr[-200:], rb.stderr[-200:]))
        got = the_capture(env, 'volume')
        lags, _ = audio.fit_sum(got, [a, b], [(CODEC_DELAY, RATE // 2), (CODEC_DELAY, RATE // 2)])
        ref = sum(audio.placed(s, lag, len(got)) for s, lag in zip([a, b], lags))
        start_f = max(lags)
        early = slice(start_f + int(0.1 * RATE), start_f + int(0.7 * RATE))
        late = slice(start_f + int((length - 0.9) * RATE), start_f + int((length - 0.2) * RATE))
        snr = audio.sum_snr(got, [a, b], lags, early.start, early.stop)
        check('volume: the sum at full volume before the change (SNR >= 30 dB)', snr >= 30,
              '%.1f dB, lags %s' % (snr, lags))
        # A program starved of CPU underruns, and its audio after comes
        # later: the scale is measured at the lags the late window has.
        moved = lags_at(got, [a, b], lags, late)
        starved = [r.stderr.strip() for r in (ra, rb) if 'underrun' in r.stderr]
        if moved != lags:
            print('volume: lags %s, after the change %s; the programs said: %s'
                  % (lags, moved, starved or 'nothing'))
        check('volume: the lags hold through the change (unless a program underran)',
              moved == lags or starved, 'lags %s, then %s' % (lags, moved))
        ref = sum(audio.placed(s, lag, len(got)) for s, lag in zip([a, b], moved))
        level = rms_db(got[late]) - rms_db(ref[late])
        check('volume: after the change the sum is %.1f dB down, within 0.5 dB' % want_db,
              abs(level - want_db) < 0.5, '%.2f dB' % level)
        err = got[late] - ref[late] * 10 ** (want_db / 20)
        scaled = rms_db(ref[late] * 10 ** (want_db / 20)) - rms_db(err)
        check('volume: ... and is the sum scaled (SNR >= 25 dB)', scaled >= 25, '%.1f dB' % scaled)
        check('volume: nothing asked of a speaker without absolute volume',
              not any(e.startswith('SetVolume') for e in env.events()))
    with mixed_env(volume=100) as env:
        a, b = signal_of(0, length), signal_of(1, length)
        pa, pb = start(env, write(env, 'a', a)), start(env, write(env, 'b', b))
        time.sleep(1.0 * TIME_SCALE)
        amixer(env, 'set', 'A2DP', '64')
        asked = wait_events(env, lambda e: e.startswith('SetVolume 64 '))
        check('volume, AVRCP speaker: the speaker is asked for 64', asked,
              str([e for e in env.events() if 'Volume' in e]))
        r = amixer(env, 'set', 'A2DP', 'mute')
        check('volume, AVRCP speaker: mute', r.rc == 0, r.stderr)
        ra, rb = pa.wait(30), pb.wait(30)
        check('volume, AVRCP speaker: both play on', ra.rc == 0 and rb.rc == 0,
              '%s | %s' % (ra.stderr[-200:], rb.stderr[-200:]))
        got = the_capture(env, 'volume, AVRCP speaker')
        lags, _ = audio.fit_sum(got, [a, b], [(CODEC_DELAY, RATE // 2), (CODEC_DELAY, RATE // 2)])
        start_f = max(lags)
        early = slice(start_f + int(0.1 * RATE), start_f + int(0.7 * RATE))
        late = slice(start_f + int((length - 0.9) * RATE), start_f + int((length - 0.2) * RATE))
        snr = audio.sum_snr(got, [a, b], lags, early.start, early.stop)
        check('volume, AVRCP speaker: the sum unscaled (the speaker scales it; SNR >= 30 dB)',
              snr >= 30, '%.1f dB' % snr)
        muted = rms_db(got[late])
        check('volume, AVRCP speaker: muted, the sum is silent', muted < -80, '%.1f dBFS' % muted)


def wait_events(env, pred, timeout=2.0):
    deadline = time.monotonic() + timeout * TIME_SCALE
    while time.monotonic() < deadline:
        if any(pred(e) for e in env.events()):
            return True
        time.sleep(0.02)
    return any(pred(e) for e in env.events())


def test_reopen():
    """A program that closes and opens again within the linger plays at once,
    on the same connection; after the linger the mixer lets the speaker go."""
    with mixed_env() as env:
        wav = write(env, 'a', signal_of(0, 0.5))
        r1 = env.run(['aplay', '-q', '-D', MIXED + ',LINGER_MS=1000', wav], timeout=20)
        t = time.monotonic()
        r2 = env.run(['aplay', '-q', '-D', MIXED + ',LINGER_MS=1000', wav], timeout=20)
        took = time.monotonic() - t
        check('reopen: both play', r1.rc == 0 and r2.rc == 0, r1.stderr + r2.stderr)
        check('reopen: no new connection (one Acquire)', len(acquires(env)) == 1,
              'Acquire x%d' % len(acquires(env)))
        check('reopen: the second took the audio\'s time, not a connection\'s', took < 1.0 * TIME_SCALE,
              '%.2f s for 0.5 s' % took)
        deadline = time.monotonic() + 3.0 * TIME_SCALE
        while env.mixer_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        check('reopen: after the linger the mixer has ended', not env.mixer_pids(),
              str(env.mixer_pids()))
        check('reopen: ... and released the transport', env.wait_event('^Release', 1.0) is not None,
              str(env.events()[-5:]))


def test_eight():
    """Eight programs at once: all eight in the sum, one mixer, one stream."""
    with mixed_env() as env:
        sigs = [signal_of(k, 2.0, amp=0.1) for k in range(8)]
        procs = [start(env, write(env, 's%d' % k, s)) for k, s in enumerate(sigs)]
        rs = [p.wait(30) for p in procs]
        check('eight: all exit 0', all(r.rc == 0 for r in rs),
              ' | '.join(r.stderr[-100:] for r in rs if r.rc))
        got = the_capture(env, 'eight')
        lags, _ = audio.fit_sum(got, sigs, [(CODEC_DELAY + RATE // 4, RATE // 2)] * 8)
        snr = audio.sum_snr(got, sigs, lags)
        check('eight: the speaker plays the sum of all eight (SNR >= 30 dB)', snr >= 30,
              '%.1f dB, lags %s' % (snr, lags))


def test_other_user():
    """Another user cannot connect to a user's mixer."""
    with mixed_env() as env:
        p = start(env, write(env, 'a', signal_of(0, 2.0)))
        time.sleep(0.7 * TIME_SCALE)
        name = mixer_name(env)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.setgid(65534)
                os.setuid(65534)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(name)
                s.settimeout(2)
                s.send(b'\1' + b'\0' * 300)
                got = s.recv(512)
                os.write(w, b'answered' if got else b'closed')
            except OSError as e:
                os.write(w, ('refused %s' % e).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        said = os.read(r, 200).decode()
        os.close(r)
        check('other user: connection closed without an answer',
              said.startswith('closed') or said.startswith('refused'), said)
        check('other user: the owner plays on', p.wait(20).rc == 0)


def mixer_name(env):
    """The abstract socket name (mix/mix_spawn.c), as the mixer computes it."""
    h = 0xcbf29ce484222325
    for ch in env.address.encode():
        h = ((h ^ ch) * 0x100000001b3) & 0xffffffffffffffff
    return '\0alsa-bt/mix/%d/%016x/hci0/%s' % (os.getuid(), h, ADDR)


def test_notices():
    """What the speaker's code logs in the mixer (here: LDAC refused at the
    default MTU, SBC plays) reaches the program that opened it as its one
    line; a program that joins later does not hear it again."""
    sbc, ldac = '00:ffff0250', 'ff:2d010000aa003007'
    with mixed_env(sink_seps=[sbc, ldac]) as env:
        pa = start(env, write(env, 'a', signal_of(0, 2.0)))
        time.sleep(0.5 * TIME_SCALE)
        rb = env.run(['aplay', '-q', '-D', MIXED, write(env, 'b', signal_of(1, 0.5))], timeout=20)
        ra = pa.wait(20)
        la = [ln for ln in ra.stderr.splitlines() if ln.startswith('ALSA lib')]
        lb = [ln for ln in rb.stderr.splitlines() if ln.startswith('ALSA lib')]
        check('notices: the first program says why LDAC did not play, in one line',
              ra.rc == 0 and len(la) == 1 and 'MTU (672 bytes) is too small for LDAC' in la[0],
              ra.stderr[-400:])
        check('notices: the one that joined plays and says nothing', rb.rc == 0 and not lb,
              rb.stderr[-400:])


def sep_configured(env):
    """The speaker SEPs we were configured with, in order (sep1, sep2...)."""
    return [e.split()[1].split('/')[-2] for e in env.events() if e.startswith('SetConfiguration /org/bluez')]


def test_codec_choice():
    """The mixer element's codec choice, made while the speaker lingers, is
    what the next program plays with (as alone); with no change the next
    program takes the lingering speaker without connecting again."""
    seps = ['00:ffff0235', 'ff:4f000000010032']            # SBC (sep1), aptX (sep2)
    with mixed_env(sink_seps=seps) as env:
        wav = write(env, 'a', signal_of(0, 0.3))
        ok = [env.run(['aplay', '-q', '-D', MIXED, wav], timeout=20).rc == 0]
        ok.append(env.run(['aplay', '-q', '-D', MIXED, wav], timeout=20).rc == 0)
        same = sep_configured(env)
        r = env.run(['amixer', '-D', 'bluetooth:DEV=' + ADDR, 'cset', "name='A2DP Codec'", 'sbc'],
                    timeout=10)
        ok.append(env.run(['aplay', '-q', '-D', MIXED, wav], timeout=20).rc == 0)
        check('codec choice: all three played', all(ok) and r.rc == 0, r.stderr[-300:])
        check('codec choice: unchanged, the next program took the lingering speaker (aptX once)',
              same == ['sep2'], str(same))
        check('codec choice: SBC chosen while it lingered, the next program plays SBC',
              sep_configured(env) == ['sep2', 'sep1'], str(sep_configured(env)))


def test_fallback():
    """No mixer program: one line says so, and the program plays alone."""
    with mixed_env() as env:
        env.environ['ALSABT_MIXER'] = '/nonexistent/alsa-bt-mixer'
        r = env.run(['aplay', '-q', '-D', MIXED, write(env, 'a', signal_of(0, 0.5))], timeout=20)
        check('fallback: plays alone', r.rc == 0, r.stderr[-300:])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        check('fallback: one line says why', len(lines) == 1 and 'cannot mix' in lines[0],
              r.stderr[-300:])


test_sum()
test_first_closes()
test_killed()
test_stopped()
test_delay_and_drain()
test_mixer_killed()
test_speaker_vanishes()
test_reopen()
test_volume()
test_eight()
test_other_user()
test_notices()
test_codec_choice()
test_fallback()
finish()
