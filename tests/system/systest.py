"""Host side of the alsa-bt system tests: one VM run, then the analysis.

    from systest import Run, analyse
    run = Run(build_dir)                      # a share dir, signals go there
    run.play('sweep', samples, rate)          # play:sweep with aplay -D bluetooth:...
    run.volume('vol', samples, rate)          # the volume step while vol plays
    run.phone('ph', samples, rate, seconds)   # hci1 the phone plays, our capture records
    res = run.boot(timeout=600)               # the VM: stack, pair, the steps
    res.step('sweep')                         # {"key": "value"} of steps/sweep.out + .capture
    analyse(ref, rate, capture_wav)           # lag, SNR, gaps, pacing...

Used by test_system.py (make check-system) and demo.py (make demo).
"""
import csv
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
sys.path.insert(0, HERE)

import numpy as np      # noqa: E402
import audio            # noqa: E402
import vm               # noqa: E402

GUEST_SCRIPT = os.path.join(HERE, 'guest', 'run.sh')
SINK_ADDR = '00:AA:01:01:00:01'       # hci1, bluez-alsa's A2DP sink
SRC_ADDR = '00:AA:01:00:00:00'        # hci0, where our PCM registers its endpoint
DEVARGS = 'DEV=%s,ADAPTER=hci0,TIMEOUT=20000' % SINK_ADDR
# Host programs the guest runs (it sees the host's root read-only).
GUEST_NEEDS = ['/usr/libexec/bluetooth/bluetoothd', '/usr/bin/btvirt', '/usr/bin/bluealsa',
               '/usr/bin/aplay', '/usr/bin/arecord', '/usr/bin/amixer', '/usr/bin/dbus-daemon', '/usr/bin/dbus-send',
               '/usr/bin/dbus-monitor', '/usr/bin/chrt', '/usr/bin/timeout', '/bin/ps',
               '/sbin/modprobe', '/usr/bin/python3',
               '/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_bluealsa.so']


def missing_programs(root='/'):
    """What the guest will need from its root (the host's, or the second
    stack's) and cannot find there."""
    miss = [p for p in GUEST_NEEDS if not os.path.lexists(os.path.join(root, p.lstrip('/')))]
    if root == '/':
        try:
            import subprocess
            r = subprocess.run(['/usr/bin/python3', '-c', 'import dbus, gi.repository.GLib'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            if r.returncode:
                miss.append('python3-dbus/python3-gi')
        except Exception:
            miss.append('python3-dbus/python3-gi')
    return miss


def parse_kv(path):
    """'key value' lines -> dict (later lines win); {} if the file is missing."""
    d = {}
    try:
        with open(path, errors='replace') as f:
            for line in f:
                line = line.rstrip('\n')
                if not line or line.startswith('#'):
                    continue
                k, _, v = line.partition(' ')
                d[k] = v
    except OSError:
        pass
    return d


class Result:
    """What one VM run left in the share."""

    def __init__(self, share, vmres, wall):
        self.share, self.vm, self.wall = share, vmres, wall
        self.steps = []                 # [(name, rc, start, end)] in guest uptime seconds
        try:
            with open(os.path.join(share, 'steps.txt')) as f:
                for line in f:
                    p = line.split()
                    if len(p) == 4:
                        self.steps.append((p[0], int(p[1]), float(p[2]), float(p[3])))
        except OSError:
            pass
        m = re.search(r'root ready at ([0-9.]+) s', vmres.console)
        self.root_ready_s = float(m.group(1)) if m else None
        m = re.search(r'script exited (\d+) at ([0-9.]+) s', vmres.console)
        self.script_end_s = float(m.group(2)) if m else None

    def step(self, name):
        d = parse_kv(os.path.join(self.share, 'steps', name + '.out'))
        d.update(parse_kv(os.path.join(self.share, 'steps', name + '.capture')))
        return d

    def step_rc(self, name):
        for n, rc, _, _ in self.steps:
            if n == name:
                return rc
        return None

    def step_time(self, name):
        for n, _, a, b in self.steps:
            if n == name:
                return b - a
        return None

    def log(self, name):
        try:
            with open(os.path.join(self.share, 'logs', name), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def guest_log(self):
        try:
            with open(os.path.join(self.share, 'guest.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''


class Run:
    """Collects the steps of one VM boot; boot() runs them."""

    def __init__(self, build, share=None, steps=('stack', 'pair'), stack='bookworm'):
        self.build = os.path.realpath(build)
        self.stack = stack
        self.share = share or tempfile.mkdtemp(prefix='alsabt-system-%s-' % stack)
        self.steps = list(steps)
        self.plays = {}
        self.refs = {}
        self.max_audio_s = 0.0
        self.extra_s = 0.0          # audio not in refs

    def _write(self, name, samples, rate):
        path = os.path.join(self.share, name + '.wav')
        audio.write_wav(path, samples, rate)
        self.refs[name] = (samples, rate)
        self.max_audio_s = max(self.max_audio_s, len(samples) / float(rate))
        return name + '.wav'

    def play(self, name, samples, rate, device=None, wav_name=None, seconds=None):
        """aplay of samples through our plugin (or of wav_name, a file already
        in the share, `seconds` long); what the sink hears is captured."""
        if wav_name is None:
            wav_name = self._write(name, samples, rate)
        else:
            self.max_audio_s = max(self.max_audio_s, seconds)
            self.extra_s += seconds
        spec = wav_name + (' ' + device if device else '')
        self.plays[name] = spec
        self.steps.append('play:' + name)

    def pwplay(self, name, samples, rate, codec=None):
        """Like play, for a run with SINK=pipewire: pw-record records PipeWire's
        bluez input.  codec: aplay -D bluetooth:...,CODEC=codec."""
        self.plays[name] = '%s %d%s' % (self._write(name, samples, rate), rate,
                                         ' ' + codec if codec else '')
        self.steps.append('pwplay:' + name)

    def phone(self, name, samples, rate, seconds, args=''):
        """phone:NAME (guest/run.sh step_phone): hci1 plays the phone (bluez-alsa's
        A2DP source, or PipeWire's with SINK=pipewire) and plays samples; our
        capture on hci0 records `seconds` of it (arecord -D bluetooth:DEV=<hci1>,
        ADAPTER=hci0[,args]) into captures/NAME.wav."""
        self.plays[name] = '%s %d %d%s' % (self._write(name, samples, rate), rate, seconds,
                                           ' ' + args if args else '')
        self.max_audio_s = max(self.max_audio_s, seconds)
        self.extra_s += seconds
        self.steps.append('phone:' + name)

    def voice(self, name, samples, rate, direction):
        """voice:NAME (guest/run.sh step_voice): samples over the headset's
        SCO link between our Audio Gateway and bluez-alsa's Hands-Free on
        hci1; direction 'play' (aplay through ours, the headset records) or
        'record' (the headset plays, arecord through ours)."""
        self.plays[name] = '%s %d %s' % (self._write(name, samples, rate), rate, direction)
        self.extra_s += 20
        self.steps.append('voice:' + name)

    def pwvoice(self, name, samples, rate, direction):
        """pwvoice:NAME (guest/run.sh step_pwvoice, a boot with SINK=pipewire
        PW_HFP=1 HEADSET=1): samples over SCO between our Audio Gateway and
        PipeWire's Hands-Free on hci1; direction 'play' (aplay through ours,
        pw-record records PipeWire's bluez input) or 'record' (pw-play into
        PipeWire's bluez output, arecord through ours)."""
        self.plays[name] = '%s %d %s' % (self._write(name, samples, rate), rate, direction)
        self.extra_s += 40 + len(samples) / float(rate)
        self.steps.append('pwvoice:' + name)

    def mix(self, name, a, b, rate):
        """mix:NAME (guest/run.sh step_mix): a and b played at once, 0.5 s
        apart, through the speaker's mixer (MIX=1); the sink records the sum."""
        self.plays[name] = '%s %s' % (self._write(name + '_a', a, rate),
                                      self._write(name + '_b', b, rate))
        self.extra_s += 10 + len(a) / float(rate) + 0.5
        self.steps.append('mix:' + name)

    def fault(self, kind):
        """fault:KIND (guest/run.sh step_fault): a song, the fault, the recovery."""
        self.steps.append('fault:' + kind)
        self.extra_s += 15

    def volume(self, name, samples, rate):
        self.steps.append('volume:' + self._write(name, samples, rate))
        self.refs['volume'] = (samples, rate)

    def cpu(self, name, samples, rate, kind):
        """cpu:NAME (guest/run.sh step_cpu, make bench): one way of playing
        (KIND null, encoder, alsabt, bluealsa), its CPU counted per cgroup."""
        self.plays[name] = '%s %s' % (self._write(name, samples, rate), kind)
        self.steps.append('cpu:' + name)

    def rxcpu(self, name, samples, rate, kind):
        """rxcpu:NAME (guest/run.sh step_rxcpu, make bench): one way of
        receiving (KIND rx_null, rx_decoder, rx_alsabt, rx_bluealsa) what the
        phone on hci1 plays (samples), its CPU counted per cgroup."""
        self.plays[name] = '%s %s' % (self._write(name, samples, rate), kind)
        self.extra_s += 30
        self.steps.append('rxcpu:' + name)

    def boot(self, timeout=None, env=None, cpus=1, icount=False):
        if any(c in self.share for c in ' "$\\`'):
            raise vm.VMError('share path %r must not need quoting' % self.share)
        stack = vm.prepare(self.stack)
        cap = int(self.max_audio_s + 60)
        env = dict(env or {})
        for k in ('BLUETOOTHD_DEBUG', 'BTMON', 'WP_DEBUG'):   # ALSABT_BTMON=1 ...
            if os.environ.get('ALSABT_' + k):
                env[k] = os.environ['ALSABT_' + k]
        with open(os.path.join(self.share, 'job.env'), 'w') as f:
            f.write('REPO=%s\nBUILD=%s\nSTACK=%s\nSTEPS="%s"\nCAPTURE_MAX_S=%d\nAPLAY_MAX_S=%d\n'
                    % (REPO, self.build, self.stack, ' '.join(self.steps), cap, cap))
            for name, spec in self.plays.items():
                f.write('PLAY_%s="%s"\n' % (name, spec))
            for k, v in env.items():
                f.write('%s="%s"\n' % (k, v))
        if timeout is None:
            # boot + stack + pair ~ 40 s under TCG; each step its audio + ~10 s
            timeout = 120 + 20 * len(self.steps) + 2 * (self.extra_s + sum(
                len(s) / float(r) for s, r in self.refs.values()))
        # The guest runs a copy: bash reads a script as it goes, so an edit
        # of the tree during a run would otherwise change the run.
        shutil.copytree(os.path.dirname(GUEST_SCRIPT), os.path.join(self.share, 'guest'),
                        dirs_exist_ok=True)
        t0 = time.monotonic()
        res = vm.run_vm(stack, self.share, '/run/share/guest/run.sh', int(timeout),
                        extra_paths=[REPO, self.build], cpus=cpus, icount=icount)
        return Result(self.share, res, time.monotonic() - t0)

    def cleanup(self):
        shutil.rmtree(self.share, ignore_errors=True)


# ---------------------------------------------------------------- analysis

def _window_snr(ref, got, s, w, lag):
    if s + lag < 0 or s + lag + w > len(got):
        return float('-inf')
    r = ref[s:s + w].astype(np.float64)
    g = got[s + lag:s + lag + w].astype(np.float64)
    num, den = np.sum(r * r), np.sum((r - g) ** 2)
    return float('inf') if den == 0 else float(10 * np.log10(num / den)) if num else float('nan')


def piecewise_lags(ref, got, lag, rate, window_s=0.25, search=3000):
    """Follows the alignment window by window (window_s of ref each): each
    window is aligned anew near the current lag, and the lag moves only if
    the new one matches clearly better (3 dB), so that a periodic stretch
    cannot mislead it.  A change of lag means frames were lost (it falls) or
    repeated (it grows) there.  Returns [(t_s, lag)] at each change, the
    first included (lag None: the rest of ref is not in got)."""
    w = int(rate * window_s)
    cur = lag
    changes = [(0.0, lag)]
    for s in range(0, len(ref) - w + 1, w):
        seg = ref[s:s + w]
        if not np.any(seg):
            continue
        lo = max(0, s + cur - search)
        hi = min(len(got), s + cur + w + search)
        if hi - lo < w or s + cur + w > len(got):
            changes.append((round(s / float(rate), 3), None))
            break
        new = lo + audio.align(seg, got[lo:hi], expected_lag=s + cur - lo, search=search) - s
        if new != cur and _window_snr(ref, got, s, w, new) > _window_snr(ref, got, s, w, cur) + 3:
            changes.append((round(s / float(rate), 3), new))
            cur = new
    return changes


# The rate of arrival is fitted over the reads that came on time: within a
# band this wide (peak to peak) around the median offset from a steady
# real-time clock; they must hold at least STEADY_MIN of the audio.  A
# stalled guest (CPU taken by the host, the chain behind the sink catching up
# after) makes reads late, never early, and only for a while: the reads on
# either side of a stall still show the plugin's clock, on one line.  A wrong
# rate drifts out of the band: 3% leaves 80 ms in 2.7 s, 8.8% (44.1 kHz paced
# as 48 kHz) in 0.9 s.  (The longest unbroken stretch in the band, used
# before, failed a stream with two stalls: 1.24 s of 3.13 s.)
STEADY_BAND_S = 0.08
STEADY_MIN = 0.4
# What "in real time" allows (test_system.py says why).
ARRIVAL_STRAY_MS = 250
STARTUP_S = 0.5
ARRIVAL_RATE_TOL = 0.03


def in_real_time(p):
    """Did the audio of pacing_of() p arrive in real time?"""
    return bool(p) and p['pacing_ms'] < ARRIVAL_STRAY_MS and \
        abs(p['rate_ratio'] - 1) < ARRIVAL_RATE_TOL and p['steady_share'] >= STEADY_MIN


def pacing_of(t, frames, rate):
    """The arrival of the audio against a steady real-time clock: t the time
    each read returned (s), frames what it brought.  Strays (ms, after
    removing the median offset) over the whole stream; the rate of arrival
    (arrival time per audio time: 1.0 is real time) fitted over the reads
    that came on time, and how much audio those hold."""
    t = np.asarray(t, dtype=float)
    frames = np.asarray(frames, dtype=float)
    after = np.cumsum(frames) / rate          # audio received by each read
    # The first STARTUP_S of audio is the sink's start-up, not the link's
    # pace: the recorder (python under TCG) once first read 0.9 s after its
    # Open, and bluez-alsa handed it 0.6 s of waiting audio over the next
    # 0.2 s.  The clock starts once that much has been read.
    k = int(np.searchsorted(after, STARTUP_S))
    k = min(k, len(t) - 1)
    dev = (t - t[k]) - (after - after[k])
    dev[:k] = 0.0
    dev -= np.median(dev)
    on = np.abs(dev) <= STEADY_BAND_S / 2
    steady_s = float(np.sum(frames[on]) / rate)
    slope = np.polyfit(after[on], t[on], 1)[0] if np.count_nonzero(on) >= 2 else float('nan')
    return {'pacing_ms': float(np.max(np.abs(dev)) * 1000),
            'rate_ratio': float(slope),
            'steady_s': steady_s,
            'steady_share': steady_s / after[-1] if after[-1] > 0 else 0.0,
            'late_ms': float(max(0.0, dev.max()) * 1000),
            'early_ms': float(max(0.0, -dev.min()) * 1000),
            'arrival_span_s': float(t[-1] - t[0]),
            'audio_s': float(after[-1])}


def read_pacing(csv_path, rate, channels=2):
    """pacing_of() for bt.py capture's reads.csv; None without two reads."""
    t, nbytes = [], []
    try:
        with open(csv_path, newline='') as f:
            for row in csv.DictReader(f):
                t.append(float(row['t_s']))
                nbytes.append(int(row['bytes']))
    except (OSError, ValueError, KeyError):
        return None
    if len(t) < 2:
        return None
    return pacing_of(t, np.array(nbytes) / (2.0 * channels), rate)


def analyse(ref, rate, cap_wav, search_s=1.0):
    """Compares what the sink heard with what was played. Returns a dict:
    rate, frames, lag (frames; got[n] ~ ref[n - lag]), lag_changes (piecewise),
    stable, snr_db, complete (the whole signal is there), extra_s (audio
    beyond the signal), gaps (digital silence inside), pacing (read_pacing)."""
    got, grate = audio.read_wav(cap_wav)
    ref = audio._2d(ref)
    a = {'rate': grate, 'frames': len(got), 'ref_frames': len(ref), 'channels': got.shape[1]}
    if grate != rate or got.shape[1] != ref.shape[1] or len(got) == 0:
        a.update(lag=None, stable=False, snr_db=float('nan'), complete=False, gaps=[],
                 lag_changes=[], extra_s=0.0)
        return a
    # The lag of the start (a later loss must not pull it), then followed.
    n0 = min(len(ref), rate // 2)
    lag = audio.align(ref[:n0], got[:n0 + int(rate * search_s)], expected_lag=0,
                      search=int(rate * search_s))
    a['lag'] = lag
    a['snr_db'] = audio.snr_db(ref, got, lag, rate=rate)
    ch = piecewise_lags(ref, got, lag, rate)
    a['lag_changes'] = ch
    a['stable'] = len(ch) == 1 and ch[0][1] == lag
    a['complete'] = 0 <= lag and lag + len(ref) <= len(got)
    a['extra_s'] = (len(got) - lag - len(ref)) / float(rate)
    # Digital silence inside the played part where the played signal had
    # sound (the start-up and the drain are the sink's, pauses the file's).
    inner = got[max(0, lag):max(0, lag) + len(ref)].copy()
    quiet = np.all(ref[:len(inner)] == 0, axis=1)
    inner[quiet[:len(inner)]] = 1
    a['gaps'] = audio.gaps(inner, rate)
    a['pacing'] = read_pacing(cap_wav[:-4] + '.reads.csv', rate, got.shape[1])
    return a


def frac_windows(ref, got, lag, rate, window_s=0.25, search=8.0, step=0.02, ctx=256):
    """Fractional-delay windows: for each window_s of ref (mono), the delay
    tau (got[lag + n] ~ gain * ref[n - tau], tau within +-search frames, to
    step), its gain and SNR; [(t_s, lag + tau, gain, snr_db)]."""
    ref = np.asarray(ref, float).reshape(len(ref), -1)[:, 0]
    got = np.asarray(got, float).reshape(len(got), -1)[:, 0]
    w = int(rate * window_s)
    taus = np.arange(-search, search + step / 2, step)
    out = []
    pad = np.zeros(ctx)
    refp = np.concatenate([pad, ref, pad])
    taper = np.ones(w + 2 * ctx)
    h = np.hanning(2 * (ctx // 2))
    taper[:ctx // 2] = h[:ctx // 2]
    taper[-(ctx // 2):] = h[ctx // 2:]
    L = w + 2 * ctx
    k = np.arange(L // 2 + 1)
    ph = np.exp(-2j * np.pi * np.outer(taus, k) / L)
    for s in range(0, len(ref) - w + 1, w):
        r = ref[s:s + w]
        if not r.any():
            continue
        g0 = lag + s
        if g0 < 0 or g0 + w > len(got):
            break
        g = got[g0:g0 + w]
        x = refp[s:s + L] * taper
        ys = np.fft.irfft(np.fft.rfft(x)[None, :] * ph, n=L)[:, ctx:ctx + w]
        num = ys @ g
        den = np.einsum('ij,ij->i', ys, ys) + 1e-9
        score = num * num / den
        i = int(np.argmax(score))
        # again around the best, 100 times finer
        fine = taus[i] + np.arange(-step, step + step / 200, step / 100)
        y2 = np.fft.irfft(np.fft.rfft(x)[None, :] *
                          np.exp(-2j * np.pi * np.outer(fine, k) / L), n=L)[:, ctx:ctx + w]
        num = y2 @ g
        den = np.einsum('ij,ij->i', y2, y2) + 1e-9
        j = int(np.argmax(num * num / den))
        gain = num[j] / den[j]
        res = g - gain * y2[j]
        snr = 10 * np.log10((gain * gain * den[j]) / (res @ res + 1e-9))
        out.append((s / float(rate), lag + fine[j], gain, snr))
    return out


def follow_windows(ref, got, rate, window_s=0.25):
    """For audio that is not sample-exact (resampled on the way, started
    late): where each window_s of got (channel 0, from its first sound) is
    found in ref, by normalised cross-correlation over all of ref.  Returns
    [(t_got_s, t_ref_s, correlation)]."""
    r = audio._2d(ref)[:, 0].astype(np.float64)
    g = audio._2d(got)[:, 0].astype(np.float64)
    w = int(rate * window_s)
    nz = np.flatnonzero(g)
    out = []
    if len(nz) == 0 or len(r) < w:
        return out
    nfft = 1 << int(np.ceil(np.log2(len(r) + w)))
    fr = np.fft.rfft(r, nfft)
    energy = np.concatenate(([0.0], np.cumsum(r * r)))
    for s in range(int(nz[0]), len(g) - w + 1, w):
        seg = g[s:s + w]
        if not seg.any():
            continue
        c = np.fft.irfft(fr * np.conj(np.fft.rfft(seg, nfft)), nfft)[:len(r) - w + 1]
        k = int(np.argmax(c))
        norm = np.sqrt(np.sum(seg * seg) * (energy[k + w] - energy[k]))
        out.append((s / float(rate), k / float(rate), float(c[k] / norm) if norm else 0.0))
    return out


def fmt_analysis(a):
    if a.get('lag') is None:
        return 'rate %s, %d frames (expected %d Hz, %d frames)' % (
            a['rate'], a['frames'], a.get('ref_rate', 0), a['ref_frames'])
    p = a.get('pacing') or {}
    return ('lag %d frames, SNR %.1f dB, %d of %d frames (+%.2f s after), %s, gaps %s, '
            'arrival strays %.0f ms' % (
                a['lag'], a['snr_db'], a['frames'], a['ref_frames'], a['extra_s'],
                'stable' if a['stable'] else 'lag changes %s' % a['lag_changes'][:6],
                a['gaps'][:3] or 'none', p.get('pacing_ms', float('nan'))))
