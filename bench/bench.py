#!/usr/bin/python3
"""make bench: what the Bluetooth plugin costs, in figures (no pass/fail).

    /usr/bin/python3 bench/bench.py [BUILD] [--only capture|voice|vm]

Runs the plugin against the mock bluetoothd of the integration tests
(tests/integration/harness.py) and bench/bench_encode.c, then prints a table:

 1. CPU per second of audio: aplay through the plugin (bluetooth_raw, no
    conversion) into the test sink, against libsbc alone encoding the same
    audio as fast as it can. Also instruction counts from callgrind.
 2. Latency at aplay's defaults: buffer and period chosen, and a click written
    at a known time against the arrival of the packet carrying it.
 3. Open -> first packet: aplay started -> first packet at the sink.
 4. Peak memory (max RSS) of aplay through the plugin and to -D null.
 5. Receiving from a phone (the capture PCM), per codec the test phone can
    send: CPU of arecord through the plugin per second of received audio,
    against arecord -D null and the bare decoder; instruction counts; latency
    from a packet's send to the snd_pcm_readi() that returns its first sample,
    at JITTER_MS 60 (the default) and 10 (the minimum).

 6. Side by side with bluez-alsa on the real stack in a VM, instructions
    counted (bench/side_by_side.py): CPU of every process per second of
    audio, aplay through bluez-alsa's plugin and daemon against aplay through
    ours, into the same bluez-alsa speaker, and the floor (aplay -D null,
    libsbc alone) in the same VM; then, in a second boot, receiving
    (bench/side_by_side_capture.py): arecord through bluez-alsa's plugin and
    sink daemon against arecord through ours, from the same phone, and the
    floor (arecord -D null, libsbc's decoder alone).

 7. A headset's voice (PROFILE=hfp, bench/voice.py): CPU of a program that
    loops a headset's microphone to its earpiece, per second of call, CVSD
    and mSBC, and the latency the plugin adds to that loop.

 8. Several programs on one speaker (MIX=1, bench/mix.py): CPU with 1, 2
    and 8 programs against one alone, the latency the mix adds, and reopen
    -> first packet with and without the mixer's linger.

--only capture runs section 5 alone, --only voice section 7, --only mix
section 8, --only vm section 6 (a quicker iteration).
bench/README.md says how each figure is obtained and how to read it.
Takes about 90 s, and the VM of section 6 some minutes more.
"""
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ARGS = sys.argv[1:]
ONLY = None
if '--only' in ARGS:
    i = ARGS.index('--only')
    ONLY = ARGS[i + 1] if i + 1 < len(ARGS) else None
    del ARGS[i:i + 2]
    if ONLY not in ('capture', 'voice', 'vm', 'mix'):
        sys.exit('usage: bench.py [BUILD] [--only capture|voice|vm|mix]')
BUILD = os.path.abspath(ARGS[0] if ARGS else os.path.join(REPO, 'build'))
os.environ['ALSABT_BUILD'] = BUILD          # read by harness at import
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
sys.path.insert(0, HERE)

import numpy as np                           # noqa: E402

import audio                                 # noqa: E402
from harness import Env                      # noqa: E402
import voice                                 # noqa: E402
import mix as mix_bench                      # noqa: E402

DEV = '00:1B:66:AA:BB:CC'
DEVICES = ['hci0/%s,connected' % DEV]
# Sections 1-7 measure one program playing alone (MIX=0), the path whose
# figures the README has beside bluez-alsa's; section 8 (mix.py) measures
# the mix, the default, against it.
RAW = 'bluetooth_raw:DEV=%s,MIX=0' % DEV
PLUG = 'bluetooth:DEV=%s,MIX=0' % DEV
RATE = 44100
BENCH = os.path.join(BUILD, 'bench_encode')
LONG_S, SHORT_S = 10, 1                      # CPU runs: steady state = difference
CG_LONG_S, CG_SHORT_S = 5, 1                 # callgrind runs of aplay
OPEN_RUNS = 5
LAT_RUNS = 3
LAT_SECONDS, CLICK_EVERY = 2.5, 0.3          # 0.3 s = 2.4 periods: clicks fall all over a period

# 5. Receiving from a phone. The codecs to try, in order: (name, the phone's
# source SEP for the mock's --phone-sep (None: its default SBC caps
# ffff0235), arecord's -f, the codec's encoder + decoder delay in frames:
# the first packet's audio starts that much before the aligned signal; None:
# at the capture's first non-zero sample, after the silence delivered while
# waiting for the phone). A codec
# runs only if tests/tools/phone_source can send it (its usage names
# --codec; SBC always), the mock takes --phone-sep, and the codec table
# decodes it; otherwise a line says why it was skipped.
CAP_CODECS = [
    ('sbc', None, 'S16_LE', audio.SBC_DELAY),
    # The phone's SEPs as test_capture.py has them (44.1 kHz stereo); aptX HD
    # is read as what it decodes to (S32), as bluetooth_raw gives it.
    ('aptx', 'ff:4f000000010032', 'S16_LE', None),
    ('aptx_hd', 'ff:d700000024003200000000', 'S32_LE', None),
    ('aac', '02:c0018484e200', 'S16_LE', None),
]
PHONE = '00:1B:66:AA:BB:CC'
PHONE_DEVICES = ['hci0/%s,phone' % PHONE]
CAP_RAW = 'bluetooth_raw:DEV=' + PHONE
CAP_LONG_S, CAP_SHORT_S = 10, 1              # CPU runs: steady state = difference
CAP_CG_LONG_S, CAP_CG_SHORT_S = 5, 1         # callgrind runs of arecord
CAP_LAT_S = 4                                # each latency run
CAP_JITTERS = (60, 10)                       # the default JITTER_MS and the minimum
CAP_PERIOD_US, CAP_BUFFER_US = 5000, 100000  # capture_client's period/buffer in latency runs
PHONE_SOURCE = os.path.join(BUILD, 'phone_source')
CAPTURE_CLIENT = os.path.join(BUILD, 'capture_client')
MOCK = os.path.join(REPO, 'tests', 'mock', 'mock_bluez.py')

warnings = []


def warn(msg):
    warnings.append(msg)
    print('  warning: ' + msg, file=sys.stderr, flush=True)


def progress(msg):
    print('.. ' + msg, file=sys.stderr, flush=True)


def kv(line):
    """'a=1 b=x' -> {'a': '1', 'b': 'x'}"""
    return dict(m.groups() for m in re.finditer(r'(\w+)=(\S+)', line))


# ---------------------------------------------------------------- helpers

def spawn(env, argv, timeout):
    """Runs argv under bench_encode spawn; returns its figures (times in s, RSS in KB)."""
    p = subprocess.run([BENCH, 'spawn', '--'] + argv, env=env.environ if env else None,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, start_new_session=True)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith('spawn_ns=')]
    if p.returncode != 0 or not line:
        raise RuntimeError('spawn %s failed: %s' % (argv, p.stderr))
    d = kv(line[-1])
    r = {
        'spawn': int(d['spawn_ns']) / 1e9, 'exit': int(d['exit_ns']) / 1e9,
        'status': int(d['status']), 'user': float(d['user_s']), 'sys': float(d['sys_s']),
        'rss_kb': int(d['maxrss_kb']), 'csw': int(d['nvcsw']) + int(d['nivcsw']),
        'stderr': p.stderr,
    }
    r['cpu'] = r['user'] + r['sys']
    r['wall'] = r['exit'] - r['spawn']
    if r['status'] != 0:
        warn('%s exited %d: %s' % (' '.join(argv), r['status'], p.stderr.strip()[:300]))
    return r


def last_capture(env, known):
    """The capture (wav, csv) the sink started after `known` captures, once it has exited."""
    env.wait_event(r'^SinkExit %d ' % known, timeout=3)
    caps = env.captures()
    if len(caps) <= known:
        raise RuntimeError('no capture from the sink')
    return caps[known]


def check_capture(csv, seconds, what):
    rep = audio.packet_report(csv, RATE)
    if rep['errors'] or not rep['seq_continuous'] or not rep['ts_continuous'] or \
            rep['pcm_frames'] < seconds * RATE:
        warn('%s: capture not clean (packets %d, errors %d, seq ok %s, %d frames for %.1f s)'
             % (what, rep['packets'], rep['errors'], rep['seq_continuous'],
                rep['pcm_frames'], seconds))
    return rep


def read_csv(path):
    t, n = [], []
    with open(path) as f:
        next(f)
        for line in f:
            c = line.split(',')
            t.append(int(c[0]))
            n.append(int(c[7]))
    return np.array(t, dtype=np.int64), np.array(n, dtype=np.int64)


def played_at(t, nfr):
    """When a sink playing by a steady clock starts each packet (ns): at its
    arrival, or, for a packet the plugin sent early with the ones before it
    (a2dp/stream.c EARLY_NS: they arrive together), when the one before has
    played out. The first of a wakeup's packets came when due."""
    dur = nfr * 1_000_000_000 // RATE
    out = np.array(t, dtype=np.int64)
    for i in range(1, len(out)):
        if t[i] - t[i - 1] < dur[i - 1] // 2:       # sent with the one before
            out[i] = max(t[i], out[i - 1] + dur[i - 1])
    return out


def mock_times(env):
    """[(monotonic s, event line)] from the mock's log."""
    out = []
    for line in env.mock_log().splitlines():
        m = re.match(r'\[(\d+\.\d+)\] (.*)', line)
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out


def machine():
    model = '?'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass

    def pkgver(name):
        try:
            return subprocess.run(['pkg-config', '--modversion', name], capture_output=True,
                                  text=True).stdout.strip() or '?'
        except OSError:
            return '?'
    return {'nproc': os.cpu_count(), 'model': model, 'kernel': platform.release(),
            'alsa': pkgver('alsa'), 'sbc': pkgver('sbc')}


# ---------------------------------------------------------------- 1. CPU

def run_bench_encode(cmd, wav, timeout):
    """bench_encode CMD WAV --min-cpu 1.0 (encode, codecs, decode); its output."""
    p = subprocess.run([BENCH, cmd, wav, '--min-cpu', '1.0'], capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode:
        raise RuntimeError('bench_encode %s: %s' % (cmd, p.stderr))
    return p


def bench_encode(wav):
    p = run_bench_encode('encode', wav, 60)
    res = {}
    for line in p.stdout.splitlines():
        mode = line.split()[0]
        d = kv(line)
        res[mode] = float(d['cpu_s']) / float(d['audio_s'])
    return res


def bench_codecs(wav):
    """CPU per audio second of every codec: the codec table, and its library alone."""
    p = run_bench_encode('codecs', wav, 120)
    return [kv(line) for line in p.stdout.splitlines() if line.startswith('CODEC ')]


def callgrind(argv, env=None, toggle=None, timeout=120, stderr=None):
    """Instructions (Ir) callgrind counts for argv (only inside `toggle` if given);
    argv's stderr (with valgrind's) is appended to the list `stderr` if given."""
    out = os.path.join(env.tmp if env else '/tmp', 'callgrind.%d' % os.getpid())
    vg = ['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out]
    if toggle:
        vg += ['--collect-atstart=no', '--toggle-collect=' + toggle]
    p = subprocess.run(vg + argv, env=env.environ if env else None, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout, start_new_session=True)
    try:
        os.unlink(out)
    except OSError:
        pass
    if stderr is not None:
        stderr.append(p.stderr)
    m = re.search(r'Collected\s*:\s*(\d+)', p.stderr)
    if p.returncode or not m:
        raise RuntimeError('callgrind %s: rc %d\n%s' % (argv, p.returncode, p.stderr[-1000:]))
    return int(m.group(1))


def section_cpu(env, wavs):
    r = {}
    progress('libsbc and codec table, as fast as they go')
    r['enc'] = bench_encode(wavs[LONG_S])
    progress('every codec: the codec table and its library alone')
    r['codecs'] = bench_codecs(wavs[LONG_S])

    progress('aplay -> %s, %d s and 3 x %d s' % (RAW, LONG_S, SHORT_S))
    n = len(env.captures())
    r['long'] = spawn(env, ['aplay', '-q', '-D', RAW, wavs[LONG_S]], LONG_S + 20)
    r['long_rep'] = check_capture(last_capture(env, n)[1], LONG_S, 'aplay %d s' % LONG_S)
    shorts = []
    for _ in range(3):
        n = len(env.captures())
        shorts.append(spawn(env, ['aplay', '-q', '-D', RAW, wavs[SHORT_S]], SHORT_S + 20))
        check_capture(last_capture(env, n)[1], SHORT_S, 'aplay %d s' % SHORT_S)
    r['short'] = sorted(shorts, key=lambda x: x['cpu'])[1]           # the median run
    r['null'] = spawn(env, ['aplay', '-q', '-D', 'null', wavs[LONG_S]], 30)

    if shutil.which('valgrind'):
        progress('callgrind: encoders, then aplay (%d s and %d s)' % (CG_SHORT_S, CG_LONG_S))
        try:
            for mode in ('codec', 'libsbc'):
                ir = callgrind([BENCH, 'encode', wavs[LONG_S], '--mode', mode, '--min-cpu', '0'],
                               toggle='bench_pass_' + mode)
                r['ir_' + mode] = ir / LONG_S
            irs = {}
            for secs in (CG_SHORT_S, CG_LONG_S):
                n = len(env.captures())
                irs[secs] = callgrind(['aplay', '-q', '-D', RAW, wavs[secs]], env=env)
                rep = check_capture(last_capture(env, n)[1], secs, 'aplay under callgrind')
                r['cg_pacing_ms'] = max(r.get('cg_pacing_ms', 0), rep['pacing_ms'])
            r['ir_plugin'] = (irs[CG_LONG_S] - irs[CG_SHORT_S]) / (CG_LONG_S - CG_SHORT_S)
            r['ir_fixed'] = irs[CG_SHORT_S] - r['ir_plugin'] * CG_SHORT_S
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            warn('callgrind: %s' % e)
    else:
        warn('valgrind not installed: no instruction counts')
    return r


# ---------------------------------------------------------------- 2. latency

def analyse_clicks(out, wav, csv):
    """Per click: (written->arrival, newest frame of its write->heard, heard - predicted), s."""
    head = kv(out.splitlines()[0])
    buffer, period = int(head['buffer']), int(head['period'])
    samples, _ = audio.read_wav(wav)
    x = np.abs(samples[:, 0].astype(np.int32))
    t, nfr = read_csv(csv)
    start = np.concatenate(([0], np.cumsum(nfr)[:-1]))    # first WAV frame of each packet
    t = played_at(t, nfr)
    rows = []
    for line in out.splitlines():
        if not line.startswith('click '):
            continue
        d = kv(line)
        k, after = int(d['frame']), int(d['after_ns'])
        delay, end = int(d['delay']), int(d['chunk_end'])
        if end <= buffer + period:       # written while filling the buffer, before the start
            continue
        lo, hi = k, k + audio.SBC_DELAY + 400
        if hi > len(x):
            continue
        w = lo + int(np.argmax(x[lo:hi]))                   # the decoded click
        if x[w] < 2000:
            warn('click at frame %d not found in the capture' % k)
            continue
        i = int(np.searchsorted(start, w, side='right') - 1)
        arrival = t[i] / 1e9 - after / 1e9
        heard = arrival + (w - start[i]) / RATE
        predicted = (delay - (end - k)) / RATE             # snd_pcm_delay, for the click frame
        rows.append((arrival, heard + (end - 1 - k) / RATE, heard - predicted))
    first_packet = t[0] / 1e9 - int(kv([ln for ln in out.splitlines()
                                        if ln.startswith('write0_ns')][0])['write0_ns']) / 1e9
    return head, rows, first_packet


def section_latency():
    r = {'rows': [], 'open': [], 'params': [], 'start': []}
    progress('latency: bench_encode latency %s, %d runs' % (PLUG, LAT_RUNS))
    for _ in range(LAT_RUNS):
        with Env(devices=DEVICES) as env:
            p = subprocess.run([BENCH, 'latency', PLUG, '--seconds', str(LAT_SECONDS),
                                '--click-every', str(CLICK_EVERY)], env=env.environ,
                               capture_output=True, text=True, timeout=LAT_SECONDS + 20,
                               start_new_session=True)
            if p.returncode:
                warn('bench_encode latency failed: %s' % p.stderr.strip())
                continue
            if p.stderr.strip():
                warn('bench_encode latency: %s' % p.stderr.strip())
            wav, csv = last_capture(env, 0)
            head, rows, first = analyse_clicks(p.stdout, wav, csv)
            r['head'] = head
            r['rows'] += rows
            r['open'].append((int(head['opened_ns']) - int(head['open_ns'])) / 1e9)
            r['params'].append((int(head['params_ns']) - int(head['opened_ns'])) / 1e9)
            r['start'].append(first)
    return r


# ---------------------------------------------------------------- 3. open

def section_open(wav):
    progress('open -> first packet: aplay -D %s, %d runs' % (PLUG, OPEN_RUNS))
    runs = []
    for _ in range(OPEN_RUNS):
        with Env(devices=DEVICES) as env:
            s = spawn(env, ['aplay', '-q', '-D', PLUG, wav], 30)
            _, csv = last_capture(env, 0)
            t, _ = read_csv(csv)
            ev = mock_times(env)
            first_call = next((ts for ts, e in ev if e.startswith('GetManagedObjects ')), None)
            acquired = next((ts for ts, e in ev if e.startswith('Acquire -> ok')), None)
            if first_call is None or acquired is None or not len(t):
                warn('open run: missing events or packets')
                continue
            runs.append({
                'first_packet': t[0] / 1e9 - s['spawn'],
                'to_bus': first_call - s['spawn'],
                'bluez': acquired - first_call,
                'to_packet': t[0] / 1e9 - acquired,
            })
    return runs


# ---------------------------------------------------------------- 5. capture

def phone_env(wav, sep):
    extra = ['--phone', PHONE_SOURCE, '--phone-args=--wav %s' % wav]
    if sep:
        extra += ['--phone-sep', sep]
    return Env(devices=PHONE_DEVICES, sink=None, extra_args=extra)


def capture_codecs(decoders):
    """[(name, sep, fmt, delay)] of CAP_CODECS that can run here; prints why others cannot."""
    p = subprocess.run([PHONE_SOURCE], capture_output=True, text=True, timeout=10)
    usage = p.stdout + p.stderr
    with open(MOCK) as f:
        mock_sep = '--phone-sep' in f.read()
    run, skipped = [], []
    for name, sep, fmt, delay in CAP_CODECS:
        why = None
        if name != 'sbc' and '--codec' not in usage:
            why = 'phone_source has no --codec (it sends SBC only)'
        elif sep and not mock_sep:
            why = 'the mock has no --phone-sep'
        elif decoders.get(name, {}).get('none', True):
            why = 'the codec table has no decoder for it'
        if why:
            skipped.append((name, why))
            progress('capture: %s skipped: %s' % (name, why))
        else:
            run.append((name, sep, fmt, delay))
    return run, skipped


def bench_decoders(wav):
    """{name: {'table': cpu/audio s, 'lib': cpu/audio s or None}} of bench_encode decode."""
    p = run_bench_encode('decode', wav, 120)
    res = {}
    for line in p.stdout.splitlines():
        if not line.startswith('DECODE '):
            continue
        d = kv(line)
        if line.rstrip().endswith(' none'):
            res[d['name']] = {'none': True}
            continue
        lib = d.get('lib_cpu_per_audio', '-')
        res[d['name']] = {'none': False, 'table': float(d['table_cpu_per_audio']),
                          'lib': None if lib == '-' else float(lib)}
    return res


def arecord_argv(fmt, seconds, dev=CAP_RAW):
    # Not -q: arecord's "overrun!!!" is how a run that did not keep up shows.
    return ['arecord', '-D', dev, '-f', fmt, '-r', str(RATE), '-c', '2', '-t', 'raw',
            '-s', str(int(seconds * RATE)), '/dev/null']


def capture_spawn(wav, sep, fmt, seconds):
    """arecord through the plugin for `seconds`, the phone playing wav; its figures."""
    with phone_env(wav, sep) as env:
        r = spawn(env, arecord_argv(fmt, seconds), seconds + 20)
        if r['status'] != 0:             # the codec is skipped, not measured wrong
            raise RuntimeError('arecord exited %d: %s' % (r['status'], r['stderr'].strip()[-200:]))
        if not env.wait_event(r'^TryAcquire -> ok', timeout=1):
            warn('arecord %s s: the transport was never acquired' % seconds)
        if 'overrun' in r['stderr']:
            warn('arecord %s s: overrun' % seconds)
        return r


def capture_callgrind(wav, sep, fmt, seconds):
    with phone_env(wav, sep) as env:
        err = []
        ir = callgrind(arecord_argv(fmt, seconds), env=env, timeout=seconds + 120, stderr=err)
        if 'overrun' in err[0]:
            warn('arecord %s s under callgrind: overrun' % seconds)
        return ir


def analyse_reads(sig, raw, reads_csv, phone_csv, delay):
    """(per phone packet: its send -> the read returning its first sample, in s;
    the phone's packet length in frames; gaps in the audio)."""
    got = np.fromfile(raw, dtype=np.int16).reshape(-1, 2)
    rd = np.loadtxt(reads_csv, delimiter=',', dtype=np.int64, ndmin=2)
    with open(phone_csv) as f:        # index,seq,timestamp,frames,sent_ns,dropped
        ph = np.array([[int(x) for x in line.split(',')] for line in f
                       if line.endswith('\n') and line.count(',') == 5], dtype=np.int64)
    if not len(got) or not len(rd) or not len(ph):
        raise RuntimeError('latency run: nothing captured or sent')
    lag = audio.align(sig, got, RATE // 2, RATE // 2)
    if delay is None:
        nz = np.flatnonzero(np.any(got != 0, axis=1))
        if not len(nz):
            raise RuntimeError('latency run: the capture is silent')
        first = int(nz[0])
    else:
        first = lag - delay
    gaps = audio.gaps(got[lag:lag + min(len(sig), len(got) - lag)], RATE)
    starts = first + np.concatenate(([0], np.cumsum(ph[:, 3])[:-1]))  # each packet's 1st frame
    t_read, total = rd[:, 0], rd[:, 2]
    out = []
    for k in range(len(ph)):
        if ph[k, 5]:                     # dropped
            continue
        i = int(np.searchsorted(total, starts[k], side='right'))
        if i >= len(total):
            break                        # not read before the end
        out.append((t_read[i] - ph[k, 4]) / 1e9)
    return out, int(ph[0, 3]), gaps


def capture_latency(wav, sig, sep, jitter, delay, fmt='S16_LE'):
    # capture_client reads S16: another format through the plug's conversion.
    dev = CAP_RAW if fmt == 'S16_LE' else CAP_RAW.replace('bluetooth_raw:', 'bluetooth:')
    with phone_env(wav, sep) as env:
        raw, reads = os.path.join(env.tmp, 'out.raw'), os.path.join(env.tmp, 'reads.csv')
        r = env.run([CAPTURE_CLIENT, '-D', '%s,JITTER_MS=%d' % (dev, jitter),
                     '-d', str(CAP_LAT_S), '--period-us', str(CAP_PERIOD_US),
                     '--buffer-us', str(CAP_BUFFER_US), '-o', raw, '--log-reads', reads],
                    timeout=CAP_LAT_S + 20)
        if r.rc != 0:
            raise RuntimeError('capture_client: rc %s %s' % (r.rc, r.stdout[-300:]))
        m = re.search(r'^OPEN .*', r.stdout, re.M)
        head = kv(m.group(0)) if m else {}
        if 'XRUN' in r.stdout:
            warn('latency run, JITTER_MS=%d: an overrun' % jitter)
        phone_csv = os.path.join(env.tmp, 'phone-0.csv')
        v, packet, gaps = analyse_reads(sig, raw, reads, phone_csv, delay)
        if gaps and jitter >= 60:
            warn('latency run, JITTER_MS=%d: gaps in the captured audio %s' % (jitter, gaps[:3]))
        # Delivery starts once a packet brings the buffer to JITTER_MS: the
        # packets before it are what a packet's first frame waits behind.
        target = jitter * RATE // 1000
        floor = ((target + packet - 1) // packet - 1) * packet / RATE
        return {'head': head, 'v': v, 'gaps': len(gaps), 'floor': floor}


def section_capture(tmp):
    """5. Receiving from a phone, every codec of CAP_CODECS that can run."""
    r = {'codecs': [], 'skipped': []}
    wavs, sig = {}, None
    for secs in sorted({CAP_LONG_S, CAP_SHORT_S, CAP_CG_LONG_S, CAP_CG_SHORT_S}):
        # The phone plays from the transport's acquisition: 2 s more than arecord reads.
        wavs[secs] = os.path.join(tmp, 'phone-%ds.wav' % secs)
        audio.write_wav(wavs[secs], audio.noise(RATE, secs + 2, seed=secs), RATE)
    # Latency: the phone's file ends 1 s before the capture does, so that its
    # log (written at the end of the file) is complete while the capture runs.
    lat_wav = os.path.join(tmp, 'phone-latency.wav')
    sig = audio.noise(RATE, CAP_LAT_S - 1, seed=99)
    audio.write_wav(lat_wav, sig, RATE)
    progress('capture: the decoders, as fast as they go (bench_encode decode)')
    decoders = bench_decoders(wavs[CAP_LONG_S])
    run, r['skipped'] = capture_codecs(decoders)
    r['null'] = spawn(None, arecord_argv('S16_LE', CAP_LONG_S, dev='null'), 30)
    for name, sep, fmt, delay in run:
        c = {'name': name, 'dec': decoders[name], 'lat': {}}
        try:
            progress('capture %s: arecord -D %s, %d s and 3 x %d s'
                     % (name, CAP_RAW, CAP_LONG_S, CAP_SHORT_S))
            c['long'] = capture_spawn(wavs[CAP_LONG_S], sep, fmt, CAP_LONG_S)
            shorts = [capture_spawn(wavs[CAP_SHORT_S], sep, fmt, CAP_SHORT_S) for _ in range(3)]
            c['short'] = sorted(shorts, key=lambda x: x['cpu'])[1]
            for jitter in CAP_JITTERS:
                progress('capture %s: latency at JITTER_MS=%d' % (name, jitter))
                c['lat'][jitter] = capture_latency(lat_wav, sig, sep, jitter, delay, fmt)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            why = 'failed: %s' % (str(e).strip().splitlines() or ['?'])[-1][:200]
            r['skipped'].append((name, why))
            progress('capture: %s skipped: %s' % (name, why))
            continue
        if shutil.which('valgrind'):
            progress('capture %s: callgrind, decoders, then arecord (%d s and %d s)'
                     % (name, CAP_CG_SHORT_S, CAP_CG_LONG_S))
            try:
                for mode, fn in (('table', 'bench_pass_decode_table'),
                                 ('lib', 'bench_pass_decode_libsbc')):
                    if mode == 'lib' and decoders[name].get('lib') is None:
                        continue
                    ir = callgrind([BENCH, 'decode', wavs[CAP_LONG_S], '--codec', name,
                                    '--min-cpu', '0'], toggle=fn)
                    c['ir_' + mode] = ir / (CAP_LONG_S + 2)
                irs = {secs: capture_callgrind(wavs[secs], sep, fmt, secs)
                       for secs in (CAP_CG_SHORT_S, CAP_CG_LONG_S)}
                c['ir_plugin'] = (irs[CAP_CG_LONG_S] - irs[CAP_CG_SHORT_S]) / \
                    (CAP_CG_LONG_S - CAP_CG_SHORT_S)
                c['ir_fixed'] = irs[CAP_CG_SHORT_S] - c['ir_plugin'] * CAP_CG_SHORT_S
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                warn('callgrind (capture %s): %s' % (name, e))
        r['codecs'].append(c)
    return r


# ---------------------------------------------------------------- output

def ms(s, digits=1):
    return '%.*f' % (digits, s * 1000)


def table(rows, widths):
    for row in rows:
        print('  ' + ''.join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))))


def report_head(m):
    print()
    print('alsa-bt benchmark (make bench)   %s' % time.strftime('%Y-%m-%d %H:%M'))
    print('machine: %d x %s, Linux %s, alsa-lib %s, libsbc %s'
          % (m['nproc'], m['model'], m['kernel'], m['alsa'], m['sbc']))
    print('audio: 44.1 kHz stereo S16 white noise; SBC 21150235 (joint stereo, 16 blocks, '
          '8 subbands, bitpool 53), MTU 672 = 5 SBC frames (640 PCM frames) per packet')


def report(m, cpu, lat, opens, cap, vm, started, voice_rows=None, mixed=None):
    report_head(m)

    print()
    print('1. CPU per second of audio                 (lower is better; x libsbc = ratio '
          'to libsbc encoding alone)')
    base = cpu['enc']['libsbc']
    rows = [('', 'CPU s / audio s', '% of a core', 'x libsbc')]

    def add(name, v):
        rows.append((name, '%.6f' % v, '%.3f%%' % (v * 100), '%.1f' % (v / base)))
    add('libsbc alone (sbc_encode loop)', base)
    add('codec table (encode + RTP header)', cpu['enc']['codec'])
    lg, sh = cpu['long'], cpu['short']
    add('aplay -> plugin -> sink, %d s run, total' % LONG_S, lg['cpu'] / LONG_S)
    steady = (lg['cpu'] - sh['cpu']) / (LONG_S - SHORT_S)
    add('aplay -> plugin, steady state [a]', steady)
    rows.append(('  context switches / audio s', '%.0f' % ((lg['csw'] - sh['csw']) /
                                                       (LONG_S - SHORT_S)), '', ''))
    rows.append(('aplay -> plugin, fixed cost [b]', '%.4f s' % (sh['cpu'] - steady * SHORT_S),
                 '', ''))
    rows.append(('aplay -> null (no plugin, unpaced)', '%.4f s' % cpu['null']['cpu'], '', ''))
    table(rows, [44, 16, 13, 10])
    if 'ir_plugin' in cpu:
        print()
        ib = cpu['ir_libsbc']
        rows = [('instructions (callgrind, user space)', 'Ir / audio s', '', 'x libsbc'),
                ('libsbc alone', '%.2f M' % (ib / 1e6), '', '1.00'),
                ('codec table', '%.2f M' % (cpu['ir_codec'] / 1e6), '',
                 '%.2f' % (cpu['ir_codec'] / ib)),
                ('aplay -> plugin, steady state [c]', '%.2f M' % (cpu['ir_plugin'] / 1e6), '',
                 '%.2f' % (cpu['ir_plugin'] / ib)),
                ('aplay -> plugin, fixed cost [c]', '%.2f M' % (cpu['ir_fixed'] / 1e6), '', '')]
        table(rows, [44, 16, 13, 10])
    print('  [a] (CPU of the %d s run - CPU of the %d s run) / %d s: aplay process user+sys '
          '(wait4),' % (LONG_S, SHORT_S, LONG_S - SHORT_S))
    print('      the plugin\'s I/O thread included; median of 3 short runs. [b] open, '
          'config, D-Bus, close.')
    if 'ir_plugin' in cpu:
        print('  [c] same difference under valgrind --tool=callgrind (%d s and %d s runs; '
              'kernel time not counted;' % (CG_LONG_S, CG_SHORT_S))
        print('      worst pacing under valgrind %.1f ms).' % cpu.get('cg_pacing_ms', 0))

    print()
    print('1b. CPU per second of audio, each codec (MTU 672, 44.1 kHz; noise; the fastest of '
          '3 rounds)')
    rows = [('', 'codec table', 'library alone', 'ratio')]
    for c in cpu.get('codecs', []):
        t = float(c['table_cpu_per_audio'])
        if c.get('lib_cpu_per_audio', '-') == '-':     # bench_encode could not load it
            rows.append((c['name'], '%.3f ms (%.3f%%)' % (t * 1e3, t * 100), '-', '-'))
            continue
        lib = float(c['lib_cpu_per_audio'])
        rows.append((c['name'], '%.3f ms (%.3f%%)' % (t * 1e3, t * 100),
                     '%.3f ms (%.3f%%)' % (lib * 1e3, lib * 100), '%.2f' % (t / lib)))
    table(rows, [44, 20, 20, 10])
    print('  codec table: encode() (+ the RTP header where the codec has one) as the I/O thread '
          'calls it; library')
    print('  alone: sbc_encode() a frame at a time (SBC, SBC-XQ), aptx_encode() on the whole '
          'buffer, 24-bit packed;')
    print('  libavcodec\'s AAC encoder at the bitrate the table chose (LATM and the S16 -> float '
          'conversion are the table\'s).')

    print()
    print('2. Latency at aplay\'s defaults (%s: plug -> raw, no conversion)' % PLUG)
    rows = []
    if 'head' in lat:
        b, p = int(lat['head']['buffer']), int(lat['head']['period'])
        print('  buffer / period chosen [d]: %d / %d frames = %s / %s ms'
              % (b, p, ms(b / RATE), ms(p / RATE)))
    if lat['rows']:
        a = [x[0] for x in lat['rows']]
        w = [x[1] for x in lat['rows']]
        e = [x[2] for x in lat['rows']]
        rows.append(('', 'median', 'min', 'max'))
        rows.append(('click written -> its packet at sink [e]', ms(statistics.median(a)),
                     ms(min(a)), ms(max(a))))
        rows.append(('newest frame of a write -> heard [f]', ms(statistics.median(w)),
                     ms(min(w)), ms(max(w))))
        if 'head' in lat:
            bt = int(lat['head']['buffer']) / RATE
            rows.append(('  [f] - the ALSA buffer (plugin\'s own)', ms(statistics.median(w) - bt),
                         ms(min(w) - bt), ms(max(w) - bt)))
        rows.append(('measured - snd_pcm_delay() [g]', ms(statistics.median(e), 2),
                     ms(min(e), 2), ms(max(e), 2)))
        rows.append(('first write -> first packet', ms(statistics.median(lat['start'])),
                     ms(min(lat['start'])), ms(max(lat['start']))))
    table(rows, [44, 16, 13, 10])
    lr = cpu['long_rep']
    if lr['first_arrival_s'] is not None:
        print()
        print('  aplay wall time - audio duration, %d s raw run: %s ms ='
              % (LONG_S, ms(lg['wall'] - LONG_S)))
        rows = [('  started -> first packet', ms(lr['first_arrival_s'] - lg['spawn']), '', ''),
                ('  + packets sent beyond the file [l]',
                 ms(lr['last_arrival_s'] - lr['first_arrival_s'] - LONG_S), '', ''),
                ('  + last packet -> aplay exited [m]', ms(lg['exit'] - lr['last_arrival_s']),
                 '', '')]
        table(rows, [44, 16, 13, 10])
    print('  [d] what aplay.c set_params() gets (buffer_time = min(max, 500 ms), period = '
          'buffer/4), re-done by')
    print('      bench_encode latency, which then writes one period per blocking '
          'snd_pcm_writei() as aplay does.')
    print('  [e] CLOCK_MONOTONIC after the write holding the click -> sink\'s arrival time '
          'of the packet carrying')
    print('      the decoded click (SBC delay included); %d clicks over %d runs, at all '
          'positions within a period.' % (len(lat['rows']), LAT_RUNS))
    print('  [f] the same for the last frame of that write (click + its place in the '
          'packet + the frames written')
    print('      after it): the whole queue a new sound waits behind. "Heard" = when the '
          'packet plays (its arrival,')
    print('      or the end of the one before if it came early) + position in it.')
    print('  [g] when the click is heard at the sink minus what snd_pcm_delay() predicted '
          'right after the write.')
    print('  [l] first to last packet arrival minus the file\'s duration: mostly aplay '
          'padding its last write')
    print('      with silence to a whole period (up to 125 ms), then rounding to a packet.')
    print('  [m] the last packet\'s own duration (drain waits for it), then close: '
          'Release, UnregisterEndpoint.')

    print()
    print('3. Open -> first packet (aplay -D %s, %d s file, fresh mock each run)'
          % (PLUG, SHORT_S))
    rows = [('', 'median ms', 'max ms', '')]

    def stat(name, key):
        v = [r[key] for r in opens]
        if v:
            rows.append((name, ms(statistics.median(v)), ms(max(v)), ''))
    stat('aplay started -> first packet at sink', 'first_packet')
    stat('  started -> first D-Bus call to bluez [h]', 'to_bus')
    stat('  first call -> transport acquired [i]', 'bluez')
    stat('  acquired -> first packet [j]', 'to_packet')
    if lat['open']:
        rows.append(('snd_pcm_open() alone [k]', ms(statistics.median(lat['open'])),
                     ms(max(lat['open'])), ''))
        rows.append(('hw_params + sw_params [k]', ms(statistics.median(lat['params'])),
                     ms(max(lat['params'])), ''))
    table(rows, [44, 16, 13, 10])
    print('  %d runs. [h] exec, alsa-lib config, plugin load, bus connect (mock log, 1 ms '
          'resolution).' % len(opens))
    print('  [i] endpoint registration, connect, configuration, Acquire (the mock '
          'answers at once and spawns')
    print('      the sink; a real speaker takes longer). [j] hw_params, buffer fill, '
          'start, first packet.')
    print('  [k] timed inside bench_encode latency (%d runs).' % len(lat['open']))

    print()
    print('4. Peak memory (max RSS from wait4)')
    rows = [('aplay -> plugin (%d s)' % LONG_S, '%.1f MB' % (cpu['long']['rss_kb'] / 1024), '', ''),
            ('aplay -> null', '%.1f MB' % (cpu['null']['rss_kb'] / 1024), '', ''),
            ('difference', '%.1f MB' % ((cpu['long']['rss_kb'] - cpu['null']['rss_kb']) / 1024),
             '', '')]
    table(rows, [44, 16, 13, 10])
    if cap is not None:
        report_capture(cap)
    if voice_rows:
        print()
        print('\n'.join(voice.report(voice_rows)))
    if mixed:
        print()
        print('\n'.join(mix_bench.report(mixed)))
    report_vm(vm)
    report_end(started)


def section_vm():
    """Section 6 (bench/side_by_side.py, playing; side_by_side_capture.py,
    receiving; profile_vm.py, where playing's CPU goes; side_by_side_codecs.py,
    aptX and aptX HD on the unstable stack: a boot each): {'play': ...,
    'receive': ..., 'profile': ..., 'codecs': ...}, one None with a warning
    if the VM could not run it."""
    out = {}
    for key, mod, what in vm_sections():
        progress('6. side by side with bluez-alsa in the VM, %s (instructions counted; '
                 'minutes)' % what)
        try:
            out[key] = mod.summarise(mod.measure(BUILD))
        except Exception as e:      # a VM that fails must not lose sections 1-5
            warn('section 6 (the VM, %s) did not run: %s' % (what, e))
            out[key] = None
    return out


def vm_sections():
    """(key, module, what) of section 6's boots, in the order they run."""
    import side_by_side
    import side_by_side_capture
    import profile_vm
    import side_by_side_codecs
    return (('play', side_by_side, 'playing'), ('receive', side_by_side_capture, 'receiving'),
            ('profile', profile_vm, 'playing, where the CPU goes'),
            ('codecs', side_by_side_codecs, 'playing aptX and aptX HD'))


def report_vm(vm):
    for key, mod, _ in vm_sections():
        if vm and vm.get(key) is not None:
            print()
            for line in mod.report(vm[key]):
                print(line)


def report_end(started):
    print()
    if warnings:
        print('warnings (figures above may be off):')
        for w in warnings:
            print('  - ' + w)
    print('benchmark took %.0f s' % (time.monotonic() - started))


def report_capture(cap):
    print()
    print('5. Receiving from a phone (the capture PCM, %s; the test phone streams 44.1 kHz '
          'stereo noise' % CAP_RAW)
    print('   in real time, MTU 672; lower is better; x decoder = ratio to the bare decoder)')
    rows = [('', 'CPU s / audio s', '% of a core', 'x decoder')]
    for c in cap['codecs']:
        base = c['dec']['lib'] if c['dec'].get('lib') is not None else c['dec']['table']
        lg, sh = c['long'], c['short']
        steady = (lg['cpu'] - sh['cpu']) / (CAP_LONG_S - CAP_SHORT_S)

        def add(label, v):
            rows.append((label, '%.6f' % v, '%.3f%%' % (v * 100), '%.1f' % (v / base)))
        rows.append(('%s:' % c['name'], '', '', ''))
        if c['dec'].get('lib') is not None:
            add('  %s decoder alone [n]' % ('libsbc' if c['name'].startswith('sbc') else 'library'),
                c['dec']['lib'])
        add('  codec table decode() [n]', c['dec']['table'])
        add('  arecord <- plugin, %d s run, total' % CAP_LONG_S, lg['cpu'] / CAP_LONG_S)
        add('  arecord <- plugin, steady state [o]', steady)
        rows.append(('    context switches / audio s', '%.0f' % ((lg['csw'] - sh['csw']) /
                                                            (CAP_LONG_S - CAP_SHORT_S)), '', ''))
        rows.append(('  arecord <- plugin, fixed cost [o]',
                     '%.4f s' % (sh['cpu'] - steady * CAP_SHORT_S), '', ''))
        rows.append(('  peak memory (max RSS)', '%.1f MB' % (lg['rss_kb'] / 1024), '', ''))
    if 'null' in cap:
        rows.append(('arecord -D null, %d s of audio (unpaced) [p]' % CAP_LONG_S,
                     '%.4f s' % cap['null']['cpu'], '', ''))
        rows.append(('  its peak memory', '%.1f MB' % (cap['null']['rss_kb'] / 1024), '', ''))
    table(rows, [44, 16, 13, 10])
    cg = [c for c in cap['codecs'] if 'ir_plugin' in c]
    if cg:
        print()
        rows = [('instructions (callgrind, user space)', 'Ir / audio s', '', 'x decoder')]
        for c in cg:
            ib = c.get('ir_lib', c['ir_table'])
            rows.append(('%s:' % c['name'], '', '', ''))
            if 'ir_lib' in c:
                rows.append(('  decoder alone', '%.2f M' % (c['ir_lib'] / 1e6), '', '1.00'))
            rows.append(('  codec table decode()', '%.2f M' % (c['ir_table'] / 1e6), '',
                         '%.2f' % (c['ir_table'] / ib)))
            rows.append(('  arecord <- plugin, steady state [q]',
                         '%.2f M' % (c['ir_plugin'] / 1e6), '', '%.2f' % (c['ir_plugin'] / ib)))
            rows.append(('  arecord <- plugin, fixed cost [q]', '%.2f M' % (c['ir_fixed'] / 1e6),
                         '', ''))
        table(rows, [44, 16, 13, 10])
    if cap['codecs']:
        print()
    rows = [('latency: packet sent -> read returns it [r]', 'median ms', 'max ms', 'min ms')]
    for c in cap['codecs']:
        for jitter in CAP_JITTERS:
            lt = c['lat'].get(jitter)
            if not lt or not lt['v']:
                continue
            v, f = lt['v'], lt['floor']
            rows.append(('%s, JITTER_MS=%d (%d packets, %d gaps)'
                         % (c['name'], jitter, len(v), lt['gaps']),
                         ms(statistics.median(v)), ms(max(v)), ms(min(v))))
            rows.append(('  the floor: JITTER_MS in whole packets [s]', ms(f), '', ''))
            rows.append(('  measured - the floor', ms(statistics.median(v) - f),
                         ms(max(v) - f), ms(min(v) - f)))
    if len(rows) > 1:
        table(rows, [44, 16, 13, 10])
    for name, why in cap['skipped']:
        print('  %s: not measured: %s' % (name, why))
    period = ''
    for c in cap['codecs']:
        for lt in c['lat'].values():
            head = lt['head']
            if 'period' in head:
                period = ' (%s frames = %s ms)' % (head['period'], ms(int(head['period']) / RATE))
    print('  [n] bench_encode decode: the packets the codec table\'s encoder made of the same '
          'noise, decoded as')
    print('      fast as possible: the table\'s decode() a packet at a time, as the capture\'s '
          'I/O thread calls it,')
    print('      and (SBC) sbc_decode() alone a frame at a time; the fastest of 3 rounds.')
    print('  [o] (CPU of the %d s run - CPU of the %d s run) / %d s: arecord process user+sys '
          '(wait4), the plugin\'s'
          % (CAP_LONG_S, CAP_SHORT_S, CAP_LONG_S - CAP_SHORT_S))
    print('      I/O thread included, the phone (a separate process) not; median of 3 short '
          'runs; a fresh mock')
    print('      each run. Fixed cost: open, config, D-Bus, the wait for the phone, close.')
    print('  [p] arecord reading the null PCM: alsa-lib and arecord\'s own work for the same '
          'audio, no plugin; not')
    print('      paced (it returns as fast as it can), so a total, not a rate.')
    print('  [q] the same difference under valgrind --tool=callgrind (%d s and %d s runs; '
          'kernel time not counted);'
          % (CAP_CG_LONG_S, CAP_CG_SHORT_S))
    print('      the decoders counted inside their loop only (--toggle-collect).')
    print('  [r] phone_source\'s CLOCK_MONOTONIC after send() of each packet -> capture_client\'s '
          'CLOCK_MONOTONIC')
    print('      after the snd_pcm_readi() that returned the packet\'s first decoded frame (found '
          'by aligning the')
    print('      capture with the noise sent, less the codec delay); %d s runs, the reader '
          'polling with a period of' % CAP_LAT_S)
    print('      %d us%s, buffer %d us.' % (CAP_PERIOD_US, period, CAP_BUFFER_US))
    print('  [s] delivery starts when a packet brings the jitter buffer to JITTER_MS: each '
          'packet\'s first frame then')
    print('      waits behind the packets before it, ceil(JITTER_MS / packet) - 1 of them '
          '(14.5 ms each at MTU 672).')
    print('      Above it: the 5 ms delivery tick and the reader\'s period; a phone packet '
          'sent late waits less,')
    print('      and (below one packet, JITTER_MS=10) each one late enough to empty the buffer '
          'is a gap that shifts')
    print('      the rest later.')



def main():
    started = time.monotonic()
    for path in (BENCH, os.path.join(BUILD, 'libasound_module_pcm_bluetooth.so'),
                 os.path.join(BUILD, 'rtp_sink'), PHONE_SOURCE, CAPTURE_CLIENT):
        if not os.access(path, os.R_OK):
            sys.exit('bench: %s missing (make all bench)' % path)
    for prog in ('aplay', 'arecord'):
        if not shutil.which(prog):
            sys.exit('bench: %s not found (alsa-utils)' % prog)
    m = machine()
    tmp = tempfile.mkdtemp(prefix='alsabt-bench-', dir='/tmp')   # the phone's WAVs
    try:
        if ONLY == 'capture':
            cap = section_capture(tmp)
            report_head(m)
            report_capture(cap)
            report_end(started)
            return
        if ONLY == 'voice':
            rows = voice.section(spawn, tmp)
            report_head(m)
            print()
            print('\n'.join(voice.report(rows)))
            report_end(started)
            return
        if ONLY == 'mix':
            mixed = mix_bench.section(sys.modules[__name__], tmp)
            report_head(m)
            print()
            print('\n'.join(mix_bench.report(mixed)))
            report_end(started)
            return
        if ONLY == 'vm':
            vm = section_vm()
            report_head(m)
            report_vm(vm)
            report_end(started)
            return
        with Env(devices=DEVICES) as env:
            wavs = {}
            for secs in sorted({LONG_S, SHORT_S, CG_LONG_S, CG_SHORT_S}):
                wavs[secs] = os.path.join(env.tmp, 'noise-%ds.wav' % secs)
                audio.write_wav(wavs[secs], audio.noise(RATE, secs), RATE)
            cpu = section_cpu(env, wavs)
            lat = section_latency()
            opens = section_open(wavs[SHORT_S])
        cap = section_capture(tmp)
        voice_rows = voice.section(spawn, tmp)
        mixed = mix_bench.section(sys.modules[__name__], tmp)
        vm = section_vm()
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        sys.exit('bench: %s' % e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(m, cpu, lat, opens, cap, vm, started, voice_rows, mixed)


if __name__ == '__main__':
    main()
