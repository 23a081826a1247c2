"""pcm_bt through the real aplay against the mock bluetoothd: audio checked as
audio (decoded at the sink, aligned, SNR, duration, gaps, RTP continuity,
real-time pacing), configuration choice, and every open-time error.

Measured on the CI machine kind (2 cores): sweep 65.2 dB, noise 12.7 dB
(libsbc alone gives the same), lag 73, pacing within 1-3 ms, a 3 s file
plays in 3.15 s.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import TIME_SCALE, Env, check, finish  # noqa: E402

ADDR = '00:1B:66:AA:BB:CC'
DEV = 'hci0/' + ADDR
CONNECTED = [DEV + ',connected']
ALONE = 'bluetooth:DEV=%s,MIX=0' % ADDR      # one program's own connection
CODEC_DELAY = 73
SWEEP_MIN_DB = 60.0      # measured 65.2 dB
NOISE_MIN_DB = 11.0      # measured 12.7 dB at 44.1 kHz, 11.4 dB at 48 kHz (bitpool 51)
PACING_MAX_MS = 10.0     # measured 0.1-3 ms, for 95% of the packets
# A single packet may be later: this machine is a VM whose vCPUs are now and
# then not scheduled for 10-30 ms (seen with nothing else running). A stalled
# or bursting clock is hundreds of ms.
PACING_STALL_MS = 40.0


def play(env, wav, dev='bluetooth:DEV=' + ADDR, flags=(), timeout=30):
    return env.run(['aplay', '-q', *flags, '-D', dev, wav], timeout=timeout)


def last_capture(env):
    caps = env.captures()
    return caps[-1] if caps else (None, None)


def check_audio(name, env, sig, rate, r, min_db, mtu=672):
    """Everything that must hold for one clean playback."""
    check(name + ': aplay succeeded', r.rc == 0 and not r.timed_out, r.stderr[-500:])
    wav, csv = last_capture(env)
    if not wav:
        check(name + ': the sink received audio', False, 'no capture')
        return
    got, grate = audio.read_wav(wav)
    if len(got) == 0:
        check(name + ': the sink received audio', False, 'an empty capture')
        return
    check(name + ': sink rate is the file rate (no resampling)', grate == rate, f'{grate}')
    lag = audio.align(sig, got)
    check(name + ': aligned by the codec delay', lag == CODEC_DELAY, f'lag {lag}')
    snr = audio.snr_db(sig, got, lag, grate)
    check(name + f': SNR >= {min_db} dB', snr >= min_db, f'{snr:.1f} dB')
    # aplay pads its last period with silence; nothing of the signal may be missing.
    check(name + ': the whole signal arrived', len(got) >= len(sig) + lag,
          f'{len(got)} < {len(sig) + lag}')
    # An abrupt end (noise) rings through the filter bank for a frame or two.
    tail = got[len(sig) + lag + 256:]
    check(name + ': nothing but silence after it', not len(tail) or abs(tail).max() < 64,
          f'max {abs(tail).max() if len(tail) else 0}')
    body = got[lag:lag + len(sig)]
    check(name + ': no gaps', not audio.gaps(body, grate), str(audio.gaps(body, grate)[:3]))
    rep = audio.packet_report(csv, grate)
    check(name + ': RTP sequence and timestamps continuous',
          rep['seq_continuous'] and rep['ts_continuous'] and rep['errors'] == 0,
          str({k: rep[k] for k in ('seq_breaks', 'ts_breaks', 'errors')}))
    check(name + f': every packet <= MTU {mtu}', rep['max_len'] <= mtu, f"{rep['max_len']}")
    secs = len(sig) / rate
    check(name + ': arrival paced in real time',
          abs(rep['duration_of_arrival_s'] - secs) < 0.25 * TIME_SCALE and
          rep['pacing_p95_ms'] < PACING_MAX_MS * TIME_SCALE and
          rep['pacing_ms'] < PACING_STALL_MS * TIME_SCALE and
          audio.early_within_bound(rep, PACING_MAX_MS * TIME_SCALE),
          f"arrival {rep['duration_of_arrival_s']:.3f} s for {secs} s, pacing {rep['pacing_p95_ms']:.2f} ms "
          f"(95%), {rep['pacing_ms']:.2f} ms at most, {rep['pacing_early_ms']:.2f} ms early "
          f"(a packet {rep['packet_ms']:.2f} ms)")
    check(name + ': playback took real time', secs - 0.05 <= r.elapsed <= secs + 1.5 * TIME_SCALE,
          f'{r.elapsed:.2f} s for {secs} s')


def test_matrix():
    """RW and mmap, blocking and non-blocking, sweep and white noise."""
    for kind, make, min_db in (('sweep', audio.sweep, SWEEP_MIN_DB),
                               ('noise', audio.noise, NOISE_MIN_DB)):
        for flags in ((), ('-M',), ('-N',), ('-M', '-N')):
            name = f'{kind} {" ".join(flags) or "RW"}'
            with Env(devices=CONNECTED) as env:
                sig = make(44100, 3.0)
                audio.write_wav(env.tmp + '/in.wav', sig, 44100)
                check_audio(name, env, sig, 44100, play(env, env.tmp + '/in.wav', flags=flags),
                            min_db)


def test_48k_and_mtu():
    with Env(devices=CONNECTED, mtu=895) as env:
        sig = audio.sweep(48000, 2.0)
        audio.write_wav(env.tmp + '/in.wav', sig, 48000)
        r = play(env, env.tmp + '/in.wav')
        check_audio('48 kHz, MTU 895', env, sig, 48000, r, SWEEP_MIN_DB, mtu=895)
        cfg = [e for e in env.events() if e.startswith('SetConfiguration /')]
        check('48 kHz: negotiated 48 kHz joint stereo bitpool 51',
              cfg and cfg[-1].endswith('11150233'), str(cfg))
        rep = audio.packet_report(last_capture(env)[1], 48000)
        # 12 + 1 + 7 * 115 = 818 <= 895 < 12 + 1 + 8 * 115
        check('MTU 895 carries 7 frames a packet', rep['max_len'] == 818, f"{rep['max_len']}")


def test_rate_change_release_late():
    """A 48 kHz song where the speaker was set up at 44.1 kHz: the endpoint
    is unregistered and registered again at the same rate's config. BlueZ
    sends MediaEndpoint1.Release for the old registration before its reply
    to UnregisterEndpoint; when both come in one read, the Release is
    dispatched after the new registration. It must not end the new stream."""
    with Env(devices=CONNECTED, extra_args=['--late-release']) as env:
        sig = audio.sweep(48000, 1.5)
        audio.write_wav(env.tmp + '/in.wav', sig, 48000)
        r = play(env, env.tmp + '/in.wav')
        released = [e for e in env.events() if e.startswith('ReleaseEndpoint')]
        check('Release read late: the endpoint was registered again', len(released) >= 1,
              str(released))
        check_audio('Release read late, 48 kHz', env, sig, 48000, r, SWEEP_MIN_DB)


def test_conversion():
    """Through the plug: a mono 22.05 kHz U8 file plays, at the right length."""
    with Env(devices=CONNECTED) as env:
        path = env.tmp + '/mono.wav'
        sig = audio.sweep(22050, 2.0, channels=1)
        audio.write_wav(path, sig, 22050)
        r = play(env, path)
        check('mono 22.05 kHz plays through the plug', r.rc == 0, r.stderr[-300:])
        got, grate = audio.read_wav(last_capture(env)[0])
        check('converted to 44.1 kHz stereo', grate == 44100 and got.shape[1] == 2,
              f'{grate} {got.shape}')
        check('duration kept', abs(len(got) / grate - 2.0) < 0.15, f'{len(got) / grate:.3f} s')


def test_raw():
    with Env(devices=CONNECTED) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 0.5), 44100)
        r = play(env, path, dev='bluetooth_raw:DEV=' + ADDR)
        check('raw variant plays S16 44.1 kHz stereo', r.rc == 0, r.stderr[-300:])
        audio.write_wav(path, audio.sweep(22050, 0.5), 22050)
        r = env.run(['aplay', '-D', 'bluetooth_raw:DEV=' + ADDR, path], timeout=10)
        check('raw variant does not convert: aplay warns the rate is not accurate',
              'rate is not accurate' in r.stderr and 'Rate 44100 Hz' not in r.stderr,
              r.stderr[-300:])


def test_default_device():
    with Env(devices=['hci0/00:11:11:11:11:11', DEV + ',connected']) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 0.5), 44100)
        r = play(env, path, dev='bluetooth')
        ev = env.events()
        check('DEV left out plays to the connected A2DP sink',
              r.rc == 0 and any(e.startswith('ConnectProfile dev_00_1B_66_AA_BB_CC') for e in ev),
              r.stderr[-300:])


def test_cleanup():
    """Alone, close lets the speaker go; mixed (the default), the mixing
    process lets it go when its linger after the last program is over."""
    want = ['RegisterEndpoint', 'ConnectProfile', 'SelectConfiguration', 'SetConfiguration',
            'Acquire', 'Release', 'UnregisterEndpoint']
    for how, dev, linger_s in (('alone (MIX=0)', ALONE, 0.0),
                               ('mixed, after its linger', 'bluetooth:DEV=' + ADDR, 2.0)):
        with Env(devices=CONNECTED) as env:
            path = env.tmp + '/in.wav'
            audio.write_wav(path, audio.sweep(44100, 0.5), 44100)
            r = play(env, path, dev=dev)
            t = time.monotonic()
            env.wait_event(r'^UnregisterEndpoint', timeout=(linger_s + 2.0) * TIME_SCALE)
            gone = time.monotonic() - t
            ev = [e.split()[0] for e in env.events()]
            order = [ev.index(w) if w in ev else -1 for w in want]
            check('%s: open registers, connects, acquires; close releases and unregisters, '
                  'in order' % how, r.rc == 0 and -1 not in order and order == sorted(order),
                  '%s %s' % (list(zip(want, order)), r.stderr[-300:]))
            check('%s: the speaker is let go %.0f s after the close' % (how, linger_s),
                  linger_s - 0.1 <= gone <= linger_s + 1.0 * TIME_SCALE, '%.2f s' % gone)


def open_error(name, env_kw, dev, errno_text, pattern, extra_conf='', max_s=1.0):
    with Env(**env_kw) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 0.3), 44100)
        if extra_conf:
            with open(env.tmp + '/.asoundrc', 'a') as f:
                f.write(extra_conf)
        r = play(env, path, dev=dev)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check(f'{name}: fails with "{errno_text}"', r.rc != 0 and errno_text in r.stderr,
              r.stderr[-400:])
        check(f'{name}: one SNDERR line saying what to do',
              len(lines) == 1 and re.search(pattern, lines[0]), str(lines))
        check(f'{name}: within {max_s} s', r.elapsed < max_s * TIME_SCALE, f'{r.elapsed:.2f} s')


def test_errors():
    d = 'bluetooth:DEV=' + ADDR
    open_error('malformed DEV', {}, 'bluetooth:DEV=00:1B:66:AA:BB', 'Invalid argument',
               r'not a Bluetooth address')
    open_error('unknown option', {}, 'odd', 'Invalid argument', r"unknown option 'colour'",
               extra_conf='pcm.odd { type bluetooth device "%s" colour "red" }\n' % ADDR)
    open_error('no such device', {}, 'bluetooth:DEV=00:1B:66:AA:BB:CD', 'No such device',
               r'not known to BlueZ: pair it')
    open_error('not paired', {'devices': [DEV + ',unpaired']}, d, 'Permission denied',
               r'not paired: run .bluetoothctl pair')
    open_error('not an audio sink', {'devices': [DEV + ',nosink']}, d, 'Operation not supported',
               r'not an audio sink')
    open_error('bluetoothd not running', {'mock': False}, d, 'Connection refused',
               r'bluetoothd is not running')
    open_error('bluetoothd not running, D-Bus fails to start it', {'mock': False, 'activatable': True},
               d, 'Connection refused', r'bluetoothd is not running')
    open_error('no system bus', {'bus': False}, d, 'Connection refused', r'D-Bus system bus')
    open_error('adapter powered off', {'adapters': ['hci0=00:11:22:33:44:55,off']}, d,
               'Network is down', r'powered off: run .bluetoothctl power on')
    open_error('no such adapter', {}, 'bluetooth:DEV=%s,ADAPTER=hci7' % ADDR, 'No such device',
               r"no Bluetooth adapter 'hci7'")
    open_error('no speaker paired, DEV left out', {'devices': []}, 'bluetooth', 'No such device',
               r'no paired A2DP speaker')
    open_error('bad bitpool', {}, 'bluetooth:DEV=%s,BITPOOL=300' % ADDR, 'Invalid argument',
               r'bitpool')


def fault_error(name, fault, errno_text, pattern, lo, hi, timeout_ms=1500):
    with Env(devices=[DEV]) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 0.3), 44100)
        env.mock('SetFault', 'ConnectProfile', fault)
        r = play(env, path, dev='bluetooth:DEV=%s,TIMEOUT=%d' % (ADDR, timeout_ms))
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check(f'{name}: fails with "{errno_text}"', r.rc != 0 and errno_text in r.stderr,
              r.stderr[-400:])
        check(f'{name}: one SNDERR line', len(lines) == 1 and re.search(pattern, lines[0]),
              str(lines))
        check(f'{name}: took {lo}-{hi} s', lo <= r.elapsed <= hi * TIME_SCALE, f'{r.elapsed:.2f} s')
        ev = env.events()
        check(f'{name}: endpoint unregistered after the failure',
              any(e.startswith('UnregisterEndpoint') for e in ev), str(ev[-5:]))


def test_connect_faults():
    fault_error('speaker off (page timeout), retried until TIMEOUT',
                'error:org.bluez.Error.Failed:br-connection-page-timeout', 'Host is down',
                r'cannot connect .*page-timeout.*switched on', 1.3, 2.5)
    fault_error('bluetoothd never answers', 'noreply', 'Connection timed out',
                r'no answer .* within connect_timeout', 1.3, 2.5)
    fault_error('another audio service holds the speaker', 'busy', 'Device or resource busy',
                r'busy: another program or audio service', 0.0, 2.0)


def test_retry_succeeds():
    """A speaker that refuses the first page and answers later plays."""
    with Env(devices=[DEV]) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 0.5), 44100)
        env.mock('SetFault', 'ConnectProfile', 'error:org.bluez.Error.Failed:br-connection-page-timeout')
        p = env.spawn(['aplay', '-q', '-D', 'bluetooth:DEV=%s,TIMEOUT=5000' % ADDR, path])
        time.sleep(1.2)
        env.mock('SetFault', 'ConnectProfile', '')
        r = p.wait(10)
        tries = sum(e.startswith('ConnectProfile dev_') for e in env.events())
        check('connect retried within the timeout and then played', r.rc == 0 and tries >= 2,
              f'rc {r.rc}, {tries} tries, {r.stderr[-300:]}')


def test_busy_second_program():
    with Env(devices=CONNECTED) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 2.0), 44100)
        # Playing alone (MIX=0): by default the second one mixes (test_mix.py).
        first = env.spawn(['aplay', '-q', '-D', ALONE, path])
        env.wait_event(r'^Acquire -> ok', timeout=5)
        r = play(env, path, dev=ALONE)
        check('a second program gets EBUSY while the first plays',
              r.rc != 0 and 'Device or resource busy' in r.stderr, r.stderr[-300:])
        check('the first one plays on', first.wait(10).rc == 0)
    with Env(devices=CONNECTED) as env:
        path = env.tmp + '/in.wav'
        audio.write_wav(path, audio.sweep(44100, 2.0), 44100)
        first = env.spawn(['aplay', '-q', '-D', 'bluetooth:DEV=' + ADDR, path])
        env.wait_event(r'^Acquire -> ok', timeout=5)
        r = play(env, path)
        check('by default a second program plays too, mixed with the first (one Acquire)',
              r.rc == 0 and first.wait(10).rc == 0 and
              sum(e.startswith('Acquire -> ok') for e in env.events()) == 1, r.stderr[-300:])


test_matrix()
test_48k_and_mtu()
test_rate_change_release_late()
test_conversion()
test_raw()
test_default_device()
test_cleanup()
test_errors()
test_connect_faults()
test_retry_succeeds()
test_busy_second_program()
finish()
