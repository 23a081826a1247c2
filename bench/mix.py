"""Section 8 of make bench: several programs on one speaker (MIX=1).

Against the mock bluetoothd's speaker, as tests/integration/test_mix.py
sets it up; the same noise file for every program:
  - CPU per second of audio with 1, 2 and 8 programs (aplay, bluetooth_raw)
    playing at once through the speaker's mixer: the programs' own CPU
    (getrusage, bench_encode spawn) and the mixer's (every thread's
    /proc/PID/task/*/schedstat, read before it ends), against one aplay
    playing alone (MIX=0);
  - the latency the mix adds: bench_encode latency's clicks, written at a
    known time, against when the sink plays them, alone and mixed;
  - reopen: aplay of a 1 s file, then 0.3 s after it ended another; the
    second's start -> its first packet at the sink, alone, mixed with the
    mixer's linger off (LINGER_MS=0) and on (the default).
"""
import os
import statistics
import threading
import time

import audio

SECONDS = 8
COUNTS = (1, 2, 8)
REOPEN_RUNS = 3
RAW = 'bluetooth_raw:DEV=%s'


def mixer_cpu_s(pids):
    """CPU seconds of every thread of these processes so far (schedstat: ns on CPU)."""
    total = 0
    for pid in pids:
        task = '/proc/%d/task' % pid
        try:
            for t in os.listdir(task):
                with open(os.path.join(task, t, 'schedstat')) as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e9


def programs(b, env, dev, wav, n):
    """n aplays of wav at once; their spawn figures, and the mixer's CPU."""
    out = [None] * n

    def one(i):
        out[i] = b.spawn(env, ['aplay', '-q', '-D', dev, wav], SECONDS + 30)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, mixer_cpu_s(env.mixer_pids())


def cpu_rows(b, wav):
    rows = []
    with b.Env(devices=b.DEVICES) as env:
        alone, _ = programs(b, env, RAW % b.DEV + ',MIX=0', wav, 1)
        rows.append(('alone (MIX=0)', 1, alone[0]['cpu'], 0.0, alone[0]['csw']))
    for n in COUNTS:
        b.progress('mix: %d program%s at once' % (n, 's' if n > 1 else ''))
        with b.Env(devices=b.DEVICES) as env:
            dev = RAW % b.DEV + ',MIX=1,LINGER_MS=5000'
            runs, mixer = programs(b, env, dev, wav, n)
            if any(r['status'] for r in runs):
                b.warn('mix: %d programs: an aplay failed' % n)
            rows.append(('mixed (MIX=1)', n, sum(r['cpu'] for r in runs), mixer,
                         sum(r['csw'] for r in runs)))
    return rows


def latency(b, dev):
    """Median (write -> heard) of the clicks, s; None if none were found."""
    heard = []
    for _ in range(b.LAT_RUNS):
        with b.Env(devices=b.DEVICES) as env:
            p = b.subprocess.run([b.BENCH, 'latency', dev, '--seconds', str(b.LAT_SECONDS),
                                  '--click-every', str(b.CLICK_EVERY)], env=env.environ,
                                 capture_output=True, text=True, timeout=b.LAT_SECONDS + 20,
                                 start_new_session=True)
            if p.returncode:
                b.warn('mix latency (%s): %s' % (dev, p.stderr.strip()[:300]))
                continue
            wav, csv = b.last_capture(env, 0)
            _, rows, _ = b.analyse_clicks(p.stdout, wav, csv)
            heard += [r[1] for r in rows]
    return statistics.median(heard) if heard else None


def first_packet_after(env, t0):
    """The first packet any capture got after t0 (monotonic s), s after t0."""
    best = None
    for _, csv in env.captures():
        if not os.path.exists(csv):
            continue
        with open(csv) as f:
            next(f, None)
            for line in f:
                t = int(line.split(',')[0]) / 1e9
                if t > t0:
                    best = t if best is None else min(best, t)
                    break
    return None if best is None else best - t0


def reopen(b, dev, wav):
    got = []
    for _ in range(REOPEN_RUNS):
        with b.Env(devices=b.DEVICES) as env:
            b.spawn(env, ['aplay', '-q', '-D', dev, wav], 30)
            time.sleep(0.3)
            s = b.spawn(env, ['aplay', '-q', '-D', dev, wav], 30)
            time.sleep(0.3)             # the sink writes its capture's last lines
            d = first_packet_after(env, s['spawn'])
            if d is None:
                b.warn('mix reopen (%s): no packet after the second start' % dev)
            else:
                got.append(d)
    return statistics.median(got) if got else None


def section(b, tmp):
    wav = os.path.join(tmp, 'mix-noise.wav')
    audio.write_wav(wav, audio.noise(b.RATE, SECONDS) // 4, b.RATE)   # 8 summed stay unclipped
    short = os.path.join(tmp, 'mix-noise-1s.wav')
    audio.write_wav(short, audio.noise(b.RATE, 1) // 4, b.RATE)
    r = {'cpu': cpu_rows(b, wav)}
    b.progress('mix: latency, alone and mixed')
    r['lat_alone'] = latency(b, b.PLUG)
    r['lat_mixed'] = latency(b, 'bluetooth:DEV=%s,MIX=1' % b.DEV)
    b.progress('mix: reopen -> first packet')
    r['reopen'] = [(label, reopen(b, RAW % b.DEV + args, short)) for label, args in (
        ('alone (MIX=0)', ',MIX=0'), ('mixed, LINGER_MS=0', ',MIX=1,LINGER_MS=0'),
        ('mixed, linger 2 s (default)', ',MIX=1'))]
    return r


def ms(v):
    return '%7.1f ms' % (v * 1000) if v is not None else '     n/a'


def report(r):
    lines = ['8. Several programs on one speaker (MIX=1): aplay -D bluetooth_raw, %d s of noise '
             'each,' % SECONDS,
             '   CPU ms per second of audio (all programs together; the mixer on its own)',
             '   path            programs   programs\' CPU   mixer\'s CPU   total   switches / s']
    for label, n, prog, mixer, csw in r['cpu']:
        lines.append('   %-15s %8d   %13.2f   %11.2f   %5.2f   %12.0f' % (
            label, n, prog / SECONDS * 1000, mixer / SECONDS * 1000,
            (prog + mixer) / SECONDS * 1000, csw / SECONDS))
    added = (r['lat_mixed'] - r['lat_alone']
             if r['lat_mixed'] is not None and r['lat_alone'] is not None else None)
    lines.append('   latency, a click written -> heard (median, aplay\'s defaults through plug): '
                 'alone %s, mixed %s: the mix adds %s' % (ms(r['lat_alone']).strip(),
                                                          ms(r['lat_mixed']).strip(),
                                                          ms(added).strip()))
    lines.append('   reopen 0.3 s after the last program ended, start -> first packet (median of %d):'
                 % REOPEN_RUNS)
    for label, v in r['reopen']:
        lines.append('     %-30s %s' % (label, ms(v)))
    return lines
