"""ALSA PCM semantics of pcm_bt that aplay cannot exercise, driven by
build/pcm_client against the mock bluetoothd; every case is checked as audio
(decoded at the sink, aligned by the codec delay, compared with what was
played) and as timing against CLOCK_MONOTONIC (the client's event lines and
the sink's per-packet CSV share that clock).

  1. pause/resume            6. pacing of a write-then-sleep and a non-blocking app
  2. drain completeness      7. poll wakes when avail >= avail_min
  3. underrun and recovery   8. MMAP + non-blocking + drain
  4. the speaker vanishing   5. snd_pcm_delay against the sink

Measured values (2-core Debian 12 VM; bitpool 53, 5 SBC frames = 640 samples
a packet at 44.1 kHz, buffer 8820 / period 2205 frames) are next to each
threshold. Run: /usr/bin/python3 tests/integration/test_pcm_semantics.py
"""
import csv
import os
import re
import sys
import time

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import BUILD, TIME_SCALE, Env, check, finish  # noqa: E402

ADDR = '00:1B:66:AA:BB:CC'
CONNECTED = ['hci0/' + ADDR + ',connected']
PLUG = 'bluetooth:DEV=' + ADDR
RAW = 'bluetooth_raw:DEV=' + ADDR
CLIENT = os.path.join(BUILD, 'pcm_client')
RATE = 44100
PACING_STALL_MS = 40.0          # any packet: a vCPU of this machine may stall 10-45 ms
CODEC_DELAY = 73
CODEC_FRAME = 128
EAGAIN, EPIPE, ENODEV = 11, 32, 19


def info(text):
    print('# ' + text, flush=True)


# ---------------------------------------------------------------- helpers

def _value(v):
    if v.startswith('0x'):
        return int(v, 16)
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def parse(text):
    """pcm_client's lines -> [(KIND, {field: value})]; msg= takes the rest of the line."""
    out = []
    for line in text.splitlines():
        kind, _, rest = line.partition(' ')
        if not kind.isupper():
            continue
        fields = {}
        m = re.search(r'(?:^| )msg=(.*)$', rest)
        if m:
            fields['msg'] = m.group(1)
            rest = rest[:m.start()]
        for k, v in re.findall(r'(\w+)=(\S+)', rest):
            fields[k] = _value(v)
        out.append((kind, fields))
    return out


def lines(ev, kind):
    return [f for k, f in ev if k == kind]


def first(ev, kind, default=None):
    found = lines(ev, kind)
    return found[0] if found else default


def write_input(env, sig, name='in.wav'):
    path = os.path.join(env.tmp, name)
    audio.write_wav(path, sig, RATE)
    return path


def client_argv(device, wav, *args, timeout=15):
    return [CLIENT, '-D', device, '-i', wav, '--timeout', str(timeout)] + list(args)


def run_client(env, device, wav, *args, timeout=15):
    r = env.run(client_argv(device, wav, *args, timeout=timeout), timeout=timeout + 5)
    return r, parse(r.stdout)


class Capture:
    """What the sink of the newest stream decoded and logged."""

    def __init__(self, env):
        caps = env.captures()
        self.ok = bool(caps)
        self.got = np.zeros((0, 2), np.int16)
        self.t = np.zeros(0)
        self.frames = np.zeros(0, np.int64)
        self.rep = None
        if not caps:
            return
        wav, log = caps[-1]
        k = int(re.search(r'capture-(\d+)\.wav$', wav).group(1))
        env.wait_event(r'^SinkExit %d ' % k, timeout=3.0)   # files finalised
        self.got, rate = audio.read_wav(wav)
        assert rate == RATE, rate
        with open(log, newline='') as f:
            rows = list(csv.DictReader(f))
        self.t = np.array([int(r['t_ns']) / 1e9 for r in rows])
        self.frames = np.array([int(r['pcm_frames']) for r in rows], np.int64)
        self.rep = audio.packet_report(log, RATE)

    def arrived(self, t):
        """Frames that had arrived at the sink by CLOCK_MONOTONIC time t."""
        return int(self.frames[self.t <= t].sum())

    def packet_frames(self):
        return int(np.bincount(self.frames).argmax()) if len(self.frames) else 0


def tail_tone(seconds, tail=0.1, seed=3):
    """Noise whose last `tail` seconds are a distinct loud 1 kHz tone."""
    sig = audio.noise(RATE, seconds, amp=0.3, seed=seed).astype(np.float64)
    n = int(round(RATE * tail))
    t = np.arange(n) / RATE
    sig[-n:, 0] = 0.9 * 32767 * np.sin(2 * np.pi * 1000 * t)
    sig[-n:, 1] = 0.9 * 32767 * np.cos(2 * np.pi * 1000 * t)
    return np.round(sig).astype(np.int16), n


# ---------------------------------------------------------------- 1. pause

def test_pause_resume():
    """3 s sweep, paused once 1.0 s of it is written, for 1.0 s."""
    with Env(devices=CONNECTED) as env:
        sig = audio.sweep(RATE, 3.0)
        r, ev = run_client(env, PLUG, write_input(env, sig), '--pause-at', '1.0',
                           '--pause-for', '1.0', '--delay-log', os.devnull)
        cap = Capture(env)
        pause, resume = first(ev, 'PAUSE'), first(ev, 'RESUME')
        start, end = first(ev, 'START'), first(ev, 'DRAIN_END')
        check('pause: client ran, pause and resume succeeded',
              r.rc == 0 and pause and resume and pause['rc'] == 0 and resume['rc'] == 0,
              '%r %s' % (r, r.stdout[-400:] + r.stderr[-300:]))
        if not (cap.ok and len(cap.t) and pause and resume and start and end):
            check('pause: the sink received audio and the client drained', False,
                  'capture %s, events %s' % (cap.ok, [k for k, _ in ev if k != 'DELAY']))
            return
        lag = audio.align(sig, cap.got)
        snr = audio.snr_db(sig, cap.got, lag, RATE)
        gaps = audio.gaps(cap.got[lag:lag + len(sig)], RATE)
        extra = len(cap.got) - (len(sig) + CODEC_DELAY)
        holes = np.diff(cap.t)
        hole = float(holes.max()) if len(holes) else 0.0
        paused = resume['t'] - pause['t']
        wall = end['t'] - start['t']
        info('pause: lag %d, SNR %.1f dB, %d frames decoded for %d written (+%d past the '
             'codec delay), hole %.4f s for a pause of %.4f s, START->DRAIN_END %.3f s'
             % (lag, snr, len(cap.got), len(sig), extra, hole, paused, wall))
        check('pause: aligned by the codec delay', lag == CODEC_DELAY, 'lag %d' % lag)
        # measured 65.2 dB, as without a pause
        check('pause: decoded audio equals the sweep (SNR > 50 dB)', snr > 50, '%.1f dB' % snr)
        check('pause: no gaps in the audio', not gaps, str(gaps[:3]))
        # Every written frame is heard (N + codec delay), and no more than the
        # padding of the last packet to whole codec frames plus the one codec
        # frame of silence drain sends to push the encoder's tail out:
        # measured +107 (132480 decoded for 132300 written).
        check('pause: duration exact to the codec frame (nothing lost, nothing added)',
              0 <= extra < 2 * CODEC_FRAME, '%+d frames' % extra)
        # measured 1.0145 s: the pause plus the one packet interval (14.5 ms)
        check('pause: packet arrivals show a hole of 1.0 s +- 0.1',
              abs(hole - 1.0) <= 0.1 * TIME_SCALE, '%.4f s' % hole)
        check('pause: the hole matches PAUSE->RESUME', abs(hole - paused) < 0.05 * TIME_SCALE,
              'hole %.4f, paused %.4f' % (hole, paused))
        check('pause: RTP seq and timestamps continuous',
              cap.rep['seq_continuous'] and cap.rep['ts_continuous'],
              str((cap.rep['seq_breaks'][:5], cap.rep['ts_breaks'][:5])))
        # measured 4.003 s
        check('pause: total wall time 4 s +- 0.3', abs(wall - 4.0) <= 0.3 * TIME_SCALE, '%.3f s' % wall)


# ---------------------------------------------------------------- 2. drain

def check_drain(name, env, r, ev, sig, tail_n, nonblock, sink_s=0.0):
    """sink_s: the Delay the speaker reports; drain waits for that too."""
    cap = Capture(env)
    begin, end, call = first(ev, 'DRAIN_BEGIN'), first(ev, 'DRAIN_END'), first(ev, 'DRAIN_CALL')
    params = first(ev, 'PARAMS')
    check(name + ': client and drain succeeded',
          r.rc == 0 and end is not None and end['rc'] == 0,
          '%r %s' % (r, r.stdout[-400:] + r.stderr[-300:]))
    if not (cap.ok and begin and end and params and len(cap.got)):
        check(name + ': the sink received audio', False, 'no capture or no drain lines')
        return
    lag = audio.align(sig, cap.got)
    start = len(sig) - tail_n
    tail_snr = audio.snr_db(sig[start:], cap.got, lag + start, RATE)
    whole_snr = audio.snr_db(sig, cap.got, lag, RATE)
    buffered = (params['buffer'] - begin['avail']) / RATE
    took = end['t'] - begin['t']
    last = float(cap.t[-1])
    info('%s: lag %d, tail SNR %.1f dB (whole %.1f dB), %d frames buffered at drain = %.3f s, '
         'drain took %.3f s, DRAIN_END - last packet %.4f s, first drain call rc %s in %.4f s'
         % (name, lag, tail_snr, whole_snr, params['buffer'] - begin['avail'], buffered, took,
            end['t'] - last, call and call['rc'], call and call['took']))
    check(name + ': aligned by the codec delay', lag == CODEC_DELAY, 'lag %d' % lag)
    # measured 67.4 dB on the tone (white noise gets 12-15 dB through SBC)
    check(name + ': the last 100 ms (the tone) arrived (tail SNR > 10 dB)', tail_snr > 10,
          '%.1f dB' % tail_snr)
    check(name + ': every written frame was decoded', len(cap.got) >= len(sig) + lag,
          '%d < %d' % (len(cap.got), len(sig) + lag))
    if sink_s:
        # A speaker that stops at the end of the stream (PipeWire does) would
        # otherwise drop the audio it holds: the end of the song.
        check(name + ': DRAIN_END once the speaker played what it holds (its Delay after '
              'the last packet)', end['t'] >= last + sink_s - 0.01,
              'DRAIN_END %.4f s after the last packet, sink Delay %.3f s' % (end['t'] - last, sink_s))
    else:
        check(name + ': DRAIN_END after the last packet arrived', end['t'] >= last,
              'DRAIN_END %.6f, last packet %.6f' % (end['t'], last))
    # measured: 0.142-0.186 s buffered, drain 0.020 s longer (the packet in
    # flight and the codec-delay flush frame); DRAIN_END 2.9 ms after the last
    # packet (the flush frame's duration)
    check(name + ': drain took the buffered audio (and the speaker\'s Delay), not a fixed sleep',
          buffered + sink_s - 0.02 <= took <= buffered + sink_s + 0.3 * TIME_SCALE,
          'took %.3f s for %.3f s buffered, sink Delay %.3f s' % (took, buffered, sink_s))
    if nonblock:
        # A non-blocking drain returns -EAGAIN at once and completes through
        # poll (alsa-lib's ioplug leaves this to the plugin's drain callback;
        # the kernel and dmix do the same).
        check(name + ': non-blocking drain returns -EAGAIN instead of blocking',
              call is not None and call['rc'] == -EAGAIN and call['took'] < 0.05 * TIME_SCALE,
              'first snd_pcm_drain() returned %s after %.3f s with %.3f s buffered'
              % (call and call['rc'], call and call['took'], buffered))
        # ...and wakes the poller about once a packet, not in a busy loop
        # (measured with a non-blocking drain: 14 polls for 0.16 s).
        pkt_s = cap.packet_frames() / RATE
        check(name + ': non-blocking drain polls without busy-looping',
              end['polls'] <= 2 * took / pkt_s + 5, '%d polls in %.3f s' % (end['polls'], took))


def test_drain():
    # Opened with SND_PCM_NONBLOCK (what apps do), and opened blocking then
    # switched with snd_pcm_nonblock(): both are non-blocking PCMs.
    for label, args, delay in (('blocking', [], None), ('non-blocking', ['--nonblock'], None),
                               ('snd_pcm_nonblock()', ['--nonblock-call'], None),
                               ('blocking, sink Delay 150 ms', [], 1500)):
        name = 'drain %s' % label
        with Env(devices=CONNECTED, delay=delay) as env:
            sig, tail_n = tail_tone(2.0)
            r, ev = run_client(env, PLUG, write_input(env, sig), *args,
                               '--delay-log', os.devnull, '--poll-log', os.devnull)
            check_drain(name, env, r, ev, sig, tail_n, nonblock=bool(args),
                        sink_s=(delay or 0) / 10000.0)


# ---------------------------------------------------------------- 3. underrun

def test_underrun():
    """1 s written, 1 s without writing (underrun), prepare, 1 s more."""
    with Env(devices=CONNECTED) as env:
        sig = audio.sweep(RATE, 2.0)
        part = RATE
        r, ev = run_client(env, PLUG, write_input(env, sig), '--sleep-at', '1.0',
                           '--sleep-for', '1.0', '--delay-log', os.devnull)
        cap = Capture(env)
        xrun, wake = first(ev, 'XRUN'), first(ev, 'WAKE')
        check('underrun: client finished', r.rc == 0, '%r %s' % (r, r.stdout[-400:] + r.stderr[-300:]))
        check('underrun: XRUN reported as -EPIPE by the write',
              xrun is not None and xrun['err'] == -EPIPE and xrun['where'] in ('write', 'wait'),
              str(xrun))
        check('underrun: reported on the first write after the pause in writing',
              xrun is not None and wake is not None and 0 <= xrun['t'] - wake['t'] < 0.05,
              '%s %s' % (xrun, wake))
        check('underrun: snd_pcm_prepare recovered and playback restarted',
              len(lines(ev, 'RECOVERED')) == 1 and len(lines(ev, 'START')) == 2,
              str([k for k, _ in ev if k != 'DELAY']))
        if not cap.ok or not len(cap.got):
            check('underrun: the sink received audio', False, 'no capture')
            return
        p1, p2 = sig[:part], sig[part:]
        lag1 = audio.align(p1, cap.got, search=256)
        # The underrun sends what was written, padded to a whole codec frame.
        expect2 = CODEC_DELAY + -(-part // CODEC_FRAME) * CODEC_FRAME
        lag2 = audio.align(p2, cap.got, expected_lag=expect2, search=4096)
        snr1 = audio.snr_db(p1, cap.got, lag1, RATE)
        snr2 = audio.snr_db(p2, cap.got, lag2, RATE)
        info('underrun: part 1 lag %d SNR %.1f dB, part 2 lag %d (expected %d) SNR %.1f dB, '
             'seq breaks %s' % (lag1, snr1, lag2, expect2, snr2, cap.rep['seq_breaks'][:5]))
        check('underrun: part 1 aligned by the codec delay', lag1 == CODEC_DELAY, 'lag %d' % lag1)
        # measured 65 dB each
        check('underrun: part 1 decodes (SNR > 40 dB)', snr1 > 40, '%.1f dB' % snr1)
        check('underrun: part 2 decodes (SNR > 40 dB)', snr2 > 40, '%.1f dB' % snr2)
        check('underrun: nothing of part 1 lost, part 2 follows it after codec-frame padding',
              0 <= lag2 - lag1 - part < CODEC_FRAME, 'part 2 at %d, part 1 ends at %d'
              % (lag2, lag1 + part))
        check('underrun: RTP seq continuous across the underrun', cap.rep['seq_continuous'],
              str(cap.rep['seq_breaks'][:5]))


# ---------------------------------------------------------------- 4. vanish

def vanish_during(env, argv):
    """Starts argv, calls Vanish 1 s later; returns (Result, Vanish time, exit time)."""
    p = env.spawn(argv)
    time.sleep(1.0)
    t_vanish = time.monotonic()
    env.mock('Vanish')
    r = p.wait(10)
    return r, t_vanish, p.start + r.elapsed


def test_vanish():
    sig = audio.sweep(RATE, 5.0)
    for nonblock in (False, True):
        name = 'vanish (pcm_client %s)' % ('non-blocking' if nonblock else 'blocking')
        with Env(devices=CONNECTED) as env:
            args = ['--vanish-check', '--delay-log', os.devnull, '--poll-log', os.devnull]
            if nonblock:
                args.append('--nonblock')
            r, t_v, t_exit = vanish_during(env, client_argv(PLUG, write_input(env, sig), *args))
            ev = parse(r.stdout)
            err = first(ev, 'ERROR')
            state = first(ev, 'STATE')
            info('%s: ERROR %s %.3f s after Vanish, state after it %s, exit %.3f s after'
                 % (name, err and (err['where'], err['err'], err['msg']),
                    err['t'] - t_v if err else -1, state and state['state'], t_exit - t_v))
            check(name + ': never hangs, exits 1', not r.timed_out and r.rc == 1, repr(r))
            check(name + ': ERROR reported within 1.0 s of the Vanish',
                  err is not None and 0 <= err['t'] - t_v < 1.0 * TIME_SCALE,
                  '%s (Vanish at %.3f)' % (err, t_v))
            check(name + ': the error is -ENODEV or -EPIPE',
                  err is not None and err['err'] in (-ENODEV, -EPIPE),
                  'got %s (%s) from %s; PCM state afterwards %s'
                  % (err and err['err'], err and err['msg'], err and err['where'],
                     state and state['state']))
            check(name + ': exits within 1.0 s of the Vanish', t_exit - t_v < 1.0 * TIME_SCALE,
                  '%.3f s' % (t_exit - t_v))
    with Env(devices=CONNECTED) as env:
        r, t_v, t_exit = vanish_during(env, ['aplay', '-D', PLUG, write_input(env, sig)])
        info('vanish (aplay): rc %s, exit %.3f s after Vanish; %s'
             % (r.rc, t_exit - t_v, r.stderr.strip().splitlines()[-1:]))
        check('vanish (aplay): never hangs, exits non-zero (not by a signal)',
              not r.timed_out and r.rc is not None and r.rc > 0, repr(r))
        check('vanish (aplay): exits within 1.0 s of the Vanish', t_exit - t_v < 1.0 * TIME_SCALE,
              '%.3f s' % (t_exit - t_v))


# ---------------------------------------------------------------- 5. delay

def delay_run(delay):
    """2 s sweep on the raw device; (DELAY records, Capture, client events)."""
    with Env(devices=CONNECTED, delay=delay) as env:
        log = os.path.join(env.tmp, 'delay.log')
        r, ev = run_client(env, RAW, write_input(env, audio.sweep(RATE, 2.0)),
                           '--delay-log', log)
        cap = Capture(env)
        with open(log) as f:
            recs = lines(parse(f.read()), 'DELAY')
        return r, recs, cap, ev


def test_delay():
    base = None
    for delay in (None, 1500):
        name = 'delay (sink Delay %s)' % ('none' if delay is None else '150 ms')
        r, recs, cap, ev = delay_run(delay)
        check(name + ': client ran', r.rc == 0 and cap.ok and len(cap.t),
              '%r %s' % (r, r.stdout[-300:] + r.stderr[-300:]))
        if not (cap.ok and len(cap.t)):
            continue
        pkt = cap.packet_frames()
        running = [d for d in recs if d['state'] == 'RUNNING' and isinstance(d['frames'], int)]
        prestart = [d for d in recs if d['state'] == 'PREPARED']
        # delay - (written - arrived): what the delay counts beyond the frames
        # not yet at the sink. Lower bound: packets logged by the sink up to
        # 3 ms after t count as arrived (the sink's own wake-up latency).
        over_lo = np.array([d['frames'] - (d['written'] - cap.arrived(d['t'] + 0.003))
                            for d in running])
        over_hi = np.array([d['frames'] - (d['written'] - cap.arrived(d['t'])) for d in running])
        sink = 0 if delay is None else round(delay * RATE / 10000)
        info('%s: %d samples, delay - (written - arrived) in [%d, %d] (median %d), '
             'packet %d, codec %d, sink %d; before START %s'
             % (name, len(running), over_lo.min() if len(running) else 0,
                over_hi.max() if len(running) else 0,
                np.median(over_hi) if len(running) else 0, pkt, CODEC_DELAY, sink,
                prestart[-1]['frames'] if prestart else None))
        check(name + ': enough samples during steady playback', len(running) >= 15,
              '%d' % len(running))
        if not len(running):
            continue
        # measured: min 700 / 7314 (never below the sink Delay + codec delay)
        check(name + ': delay >= frames written but not yet at the sink',
              over_lo.min() >= 0, 'min %d' % over_lo.min())
        # measured: max 713 / 7328 = 1 packet + 73 + sink Delay, when a
        # wakeup sent one packet; a wakeup now sends those due within 30 ms
        # with it (a2dp/stream.c EARLY_NS, two at MTU 672): at the sink, not
        # yet played, up to three packets. For 95% of the samples. A single one may count up to one stall
        # more: the mock's socket is AF_UNIX, where a packet the sink has
        # received (its kernel timestamp) but not yet read still counts in
        # our queue, and this machine's vCPUs now and then stall for 10-45 ms
        # (seen in CI under TSan: one sample of 36 at +43 ms).
        bound = 3 * pkt + CODEC_DELAY + sink + 32
        stall = max(pkt, round(PACING_STALL_MS * RATE / 1000)) * TIME_SCALE
        check(name + ': delay <= that + 3 packets + codec delay + sink Delay + 32 '
              '(95%%; all within %d frames more, one stall)' % stall,
              np.percentile(over_hi, 95) <= bound and over_hi.max() <= bound + stall,
              '95%% %d, max %d; bound %d' % (np.percentile(over_hi, 95), over_hi.max(), bound))
        cur = (prestart[-1]['frames'] if prestart else None, over_hi)
        if delay is None:
            base = cur
            continue
        if base is None or base[0] is None or cur[0] is None:
            check(name + ': delay grows by the sink Delay', False, 'no baseline')
            continue
        grow_pre = cur[0] - base[0]
        grow_run = float(np.median(cur[1]) - np.median(base[1]))
        info('%s: delay grew by %d frames before START, %.1f during playback (expected %d)'
             % (name, grow_pre, grow_run, sink))
        # Before START the delay is exact (buffer + codec delay + sink Delay):
        # measured +6615 every run.
        check(name + ': delay grows by 6615 frames (150 ms at 44.1 kHz) +- 5',
              abs(grow_pre - 6615) <= 5, 'before START %+d' % grow_pre)
        # During playback the samples fall at slightly different phases of
        # the packet clock in the two runs: measured +6613.5 .. +6618 on an
        # idle machine, +6635 with both cores loaded (0.5 ms of jitter). And
        # a sample either counts the packet the sink is receiving as arrived
        # or not yet: the samples sit in groups a packet apart, and a loaded
        # machine moves the median from one to the other (seen in a CI-style
        # run: median 7325 where most were 7965, +5977 here), or, the groups
        # balanced, between them (+6930.5). So what is compared is where the
        # samples sit within a packet (packet_phase), and the growth is asked
        # to be 6615 give or take 64, to a whole packet; the bounds above
        # hold each sample to within three packets.
        moved = packet_phase(cur[1], pkt) - packet_phase(base[1], pkt)
        off = abs((moved - 6615 + pkt / 2) % pkt - pkt / 2)
        check(name + ': the same growth during playback (+- 64, 1.5 ms, to a whole packet)',
              off <= 64 * TIME_SCALE, 'during playback %+.1f (medians), %.1f from 6615 '
              'within a packet' % (grow_run, off))


def packet_phase(samples, pkt):
    """Where samples sit within a packet, in frames: their circular mean
    modulo pkt, the same whichever group a packet apart each one is in."""
    a = np.exp(2j * np.pi * np.asarray(samples, dtype=float) / pkt)
    return float(np.angle(a.mean())) * pkt / (2 * np.pi)


# ---------------------------------------------------------------- 6. pacing

PACING_MAX_MS = 5.0             # 95% of the packets


def pacing_run(env, sig, args):
    """One 2 s play; (Result, events, Capture)."""
    # --start-after: the mock spawns the sink at Acquire, inside
    # snd_pcm_open; a START right after the open lands the first packet in
    # the sink's start-up (measured 3.6-5.6 ms late under ASan), which is
    # not the plugin's pacing.
    r, ev = run_client(env, PLUG, write_input(env, sig), *args, '--start-after', '0.3',
                       '--delay-log', os.devnull, '--poll-log', os.devnull)
    return r, ev, Capture(env)


def test_pacing():
    for label, args in (('write-then-sleep', ['--write-then-sleep']),
                        ('non-blocking', ['--nonblock'])):
        name = 'pacing (%s)' % label
        with Env(devices=CONNECTED) as env:
            sig = audio.sweep(RATE, 2.0)
            r, ev, cap = pacing_run(env, sig, args)
            # Measured 0.1-3.8 ms over 40 runs, plain and ASan; the spikes are
            # the I/O thread's timer wake-up delayed on the 2 busy cores (a
            # debug build showed sends 1.1-3.5 ms after their due time). With
            # another job hogging the machine (a VM test run alongside) one
            # run in three had a single packet 14-64 ms late: so one late run
            # is played again, and both are reported; a pacing defect of the
            # plugin fails both.
            if cap.rep and cap.rep['pacing_p95_ms'] >= PACING_MAX_MS:
                info('%s: pacing %.2f ms, playing it again' % (name, cap.rep['pacing_ms']))
                r, ev, cap = pacing_run(env, sig, args)
            check(name + ': client ran without underruns', r.rc == 0 and not lines(ev, 'XRUN'),
                  '%r %s' % (r, r.stdout[-300:] + r.stderr[-300:]))
            start, end = first(ev, 'START'), first(ev, 'DRAIN_END')
            if not (cap.ok and len(cap.t) and start and end):
                check(name + ': the sink received audio and the client drained', False,
                      'capture %s, events %s' % (cap.ok, [k for k, _ in ev if k != 'DELAY']))
                continue
            rep = cap.rep
            secs = len(sig) / RATE
            played = (rep['pcm_frames'] - int(cap.frames[-1])) / RATE
            wall = end['t'] - start['t']
            lag = audio.align(sig, cap.got)
            snr = audio.snr_db(sig, cap.got, lag, RATE)
            info('%s: pacing %.2f ms, arrivals span %.4f s for %.4f s of packets, '
                 'START->DRAIN_END %.3f s for %.3f s, SNR %.1f dB'
                 % (name, rep['pacing_ms'], rep['duration_of_arrival_s'], played, wall, secs, snr))
            check(name + ': packet arrival pacing < 5 ms (95%; every packet < 40 ms; none '
                  'more than 30 ms early)',
                  rep['pacing_p95_ms'] < PACING_MAX_MS * TIME_SCALE and
                  rep['pacing_ms'] < PACING_STALL_MS * TIME_SCALE and
                  audio.early_within_bound(rep, PACING_MAX_MS * TIME_SCALE),
                  '%.2f ms (95%%), %.2f ms at most, %.2f ms early (a packet %.2f ms)'
                  % (rep['pacing_p95_ms'], rep['pacing_ms'], rep['pacing_early_ms'],
                     rep['packet_ms']))
            # measured within 0.2 ms
            check(name + ': arrivals span the audio they carry (+- 10 ms)',
                  abs(rep['duration_of_arrival_s'] - played) < 0.01 * TIME_SCALE,
                  '%.4f s for %.4f s' % (rep['duration_of_arrival_s'], played))
            # measured 2.006 s for 2.0 s (the last packet plus the flush frame)
            check(name + ': elapsed = real time (START->DRAIN_END, +- 50 ms)',
                  abs(wall - secs) < 0.05 * TIME_SCALE, '%.3f s for %.3f s' % (wall, secs))
            check(name + ': audio intact (SNR > 50 dB, no gaps)',
                  snr > 50 and not audio.gaps(cap.got[lag:lag + len(sig)], RATE),
                  '%.1f dB' % snr)


# ---------------------------------------------------------------- 7. avail_min

def test_avail_min():
    avail_min = 3000
    with Env(devices=CONNECTED) as env:
        sig = audio.sweep(RATE, 2.0)
        log = os.path.join(env.tmp, 'poll.log')
        r, ev = run_client(env, RAW, write_input(env, sig), '--nonblock', '--avail-min',
                           str(avail_min), '--poll-log', log, '--delay-log', os.devnull)
        cap = Capture(env)
        with open(log) as f:
            polls = lines(parse(f.read()), 'POLL')
        check('avail_min: client ran', r.rc == 0, '%r %s' % (r, r.stdout[-300:] + r.stderr[-300:]))
        params, start, drain = first(ev, 'PARAMS'), first(ev, 'START'), first(ev, 'DRAIN_BEGIN')
        if not (params and start and drain and cap.ok and len(cap.t)):
            check('avail_min: the sink received audio', False, 'no capture')
            return
        pkt = cap.packet_frames()
        real = [p for p in polls if 'avail' in p and p['revents'] & 0x4]
        spurious = [p for p in polls if 'avail' in p and not p['revents'] & 0x4]
        timeouts = [p for p in polls if 'timeout' in p]
        steady = [p for p in real if start['t'] < p['t'] < drain['t']]
        iv = np.diff([p['t'] for p in steady])
        # Consumed three packets a wakeup (the due one and the two after it,
        # early: a2dp/stream.c EARLY_NS at 14.5 ms packets).
        expect = -(-avail_min // (3 * pkt)) * 3 * pkt
        n_expect = (len(sig) - params['buffer']) / expect
        info('avail_min %d: %d POLLOUT wakeups (avail %s), %d without POLLOUT (avail %s), '
             '%d timeouts; median interval %.1f ms (expected %.1f ms = %d frames), %d wakeups '
             'while playing (expected about %.1f)'
             % (params['avail_min'], len(real), sorted({p['avail'] for p in real}),
                len(spurious), sorted({p['avail'] for p in spurious}), len(timeouts),
                np.median(iv) * 1000 if len(iv) else 0, expect * 1000 / RATE, expect,
                len(steady), n_expect))
        check('avail_min: set as asked', params['avail_min'] == avail_min, str(params))
        # measured 3795-4505: two wakeups of three packets (the pointer follows the clock)
        check('avail_min: every POLLOUT wakeup has avail >= avail_min',
              real and all(p['avail'] >= avail_min for p in real),
              str([p for p in real if p['avail'] < avail_min][:5]))
        # A wakeup without POLLOUT (revents 0) is allowed: the client polls
        # again, as any ALSA application must. Measured: exactly one per
        # POLLOUT wakeup, ~40 us after it (the plugin re-arms its event fd
        # whenever it reports POLLOUT, and the application has filled the
        # buffer by the next poll). More than that would be a busy loop.
        check('avail_min: wakeups without POLLOUT at most one per real wakeup',
              len(spurious) <= len(real) + 2, '%d spurious, %d real' % (len(spurious), len(real)))
        check('avail_min: poll never timed out (1 s)', not timeouts, str(timeouts[:3]))
        check('avail_min: wakeups at the rate audio is consumed',
              len(iv) > 5 and avail_min / RATE <= np.median(iv) <= (expect + pkt) / RATE
              and abs(len(steady) - n_expect) <= 3,
              'median %.1f ms, %d wakeups (expected %.1f)'
              % (np.median(iv) * 1000 if len(iv) else 0, len(steady), n_expect))
        lag = audio.align(sig, cap.got)
        snr = audio.snr_db(sig, cap.got, lag, RATE)
        check('avail_min: audio intact (SNR > 50 dB)', snr > 50, '%.1f dB' % snr)


# ---------------------------------------------------------------- 8. mmap

def test_mmap_nonblock_drain():
    with Env(devices=CONNECTED) as env:
        sig, tail_n = tail_tone(2.0, seed=4)
        r, ev = run_client(env, RAW, write_input(env, sig), '--mmap', '--nonblock',
                           '--delay-log', os.devnull, '--poll-log', os.devnull)
        params = first(ev, 'PARAMS')
        check('mmap+nonblock: MMAP access in non-blocking mode',
              params is not None and params['access'] == 'mmap' and params['nonblock'] == 1,
              str(params))
        check('mmap+nonblock: no underrun', not lines(ev, 'XRUN'), str(lines(ev, 'XRUN')))
        check_drain('mmap+nonblock drain', env, r, ev, sig, tail_n, nonblock=True)
        cap = Capture(env)
        if cap.ok and len(cap.got):
            lag = audio.align(sig, cap.got)
            snr = audio.snr_db(sig[:-tail_n], cap.got, lag, RATE)
            # measured 12.7 dB: white noise through SBC at bitpool 53
            check('mmap+nonblock: the noise body decodes (SNR > 11 dB)', snr > 11,
                  '%.1f dB' % snr)
            check('mmap+nonblock: RTP seq and timestamps continuous',
                  cap.rep['seq_continuous'] and cap.rep['ts_continuous'], '')


# ---------------------------------------------------------------- 9. a failed reconfiguration

def wait_output(proc, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, proc.output(), re.M):
            return True
        if not proc.running():
            return bool(re.search(pattern, proc.output(), re.M))
        time.sleep(0.02)
    return False


def test_failed_reconfigure():
    """hw_params at another rate than the open's connects again.  When that
    fails, what the application may still do (snd_pcm_dump, poll, hw_params
    again) must neither crash nor poll a closed descriptor (they did: the
    stream was gone, its event fd closed); hw_params again then plays."""
    sig = audio.sweep(48000, 1.0)
    with Env(devices=CONNECTED) as env:
        wav = os.path.join(env.tmp, 'in48.wav')
        audio.write_wav(wav, sig, 48000)
        go, retry = os.path.join(env.tmp, 'go'), os.path.join(env.tmp, 'retry')
        # TIMEOUT: the connect retries a failing ConnectProfile until then
        proc = env.spawn(client_argv(RAW + ',TIMEOUT=1500', wav, '--params-after', go,
                                     '--retry-params', retry,
                                     '--delay-log', os.devnull, '--poll-log', os.devnull))
        opened = wait_output(proc, r'^OPEN ', 10 * TIME_SCALE)
        env.mock('SetFault', 'ConnectProfile',
                 'error:org.bluez.Error.Failed:br-connection-create-socket')
        open(go, 'w').close()
        failed = wait_output(proc, r'^POLLED ', 10 * TIME_SCALE)
        env.mock('SetFault', 'ConnectProfile', '')
        open(retry, 'w').close()
        r = proc.wait(15 * TIME_SCALE)
        ev = parse(r.stdout)
        hf, polled = first(ev, 'HW_PARAMS_FAILED'), first(ev, 'POLLED')
        check('failed reconfiguration: hw_params fails with an errno', opened and failed and
              hf is not None and hf['err'] < 0, '%s %s; %s' % (opened, failed, r.stdout[-300:]))
        check('... snd_pcm_dump and the poll descriptors do not crash; no stale descriptor',
              polled is not None and polled['rc'] >= 0 and polled['revents'] & 0x20 == 0,
              '%s; %s' % (polled, r.stderr[-300:]))
        check('... hw_params again connects and plays: exit 0', r.rc == 0 and not r.timed_out,
              '%r; %s' % (r, r.stderr[-300:]))
        caps = env.captures()
        got, rate = audio.read_wav(caps[-1][0]) if caps else (np.zeros((0, 2)), 0)
        lag = audio.align(sig, got) if len(got) and rate == 48000 else 0
        snr = audio.snr_db(sig, got, lag, 48000) if len(got) else float('nan')
        check('... the sweep at 48 kHz reached the speaker (SNR >= 55 dB)',
              rate == 48000 and snr >= 55, '%s Hz, %.1f dB, %d frames' % (rate, snr, len(got)))


def main():
    if not os.access(CLIENT, os.X_OK):
        check('build/pcm_client exists (run make)', False, CLIENT)
        finish()
    t0 = time.monotonic()
    for test in (test_pause_resume, test_drain, test_underrun, test_vanish, test_delay,
                 test_pacing, test_avail_min, test_mmap_nonblock_drain, test_failed_reconfigure):
        t = time.monotonic()
        try:
            test()
        except Exception as e:     # one broken case must not hide the others
            import traceback
            traceback.print_exc()
            check(test.__name__ + ' ran to the end', False, '%s: %s' % (type(e).__name__, e))
        info('%s: %.1f s' % (test.__name__, time.monotonic() - t))
    info('total %.1f s' % (time.monotonic() - t0))
    finish()


if __name__ == '__main__':
    main()
