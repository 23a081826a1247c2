"""ctl_bt through the real amixer against the mock bluetoothd: AVRCP volume
both ways, events, mute and software volume checked as audio, battery, the
volume of a closed stream applied at the next open, and the error cases."""
import os
import re
import sys
import time

import dbus
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import TIME_SCALE, Env, check, finish  # noqa: E402

ADDR = '00:1B:66:AA:BB:CC'
DEV = 'hci0/' + ADDR + ',connected'
CTL = 'bluetooth:DEV=' + ADDR
ALONE = 'bluetooth:DEV=%s,MIX=0' % ADDR
CODEC_DELAY = 73
VOLUME_MIN_DB = -50.0


def amixer(env, *args, timeout=10):
    return env.run(['amixer', '-D', CTL, *args], timeout=timeout)


def shown_volume(r):
    m = re.search(r"Simple mixer control 'A2DP',0.*?Mono: Playback (\d+) \[\d+%\].*?\[(on|off)\]",
                  r.stdout, re.S)
    return (int(m.group(1)), m.group(2)) if m else (None, None)


def start_playing(env, seconds, rate=44100, dev='bluetooth:DEV=' + ADDR):
    path = env.tmp + '/in.wav'
    sig = audio.sweep(rate, seconds)
    audio.write_wav(path, sig, rate)
    p = env.spawn(['aplay', '-q', '-D', dev, path])
    env.wait_event(r'^Acquire -> ok', timeout=5)
    return p, sig


def wait_for(pred, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_hardware_volume():
    """The speaker has AVRCP absolute volume: amixer drives MediaTransport1.Volume."""
    with Env(devices=[DEV], volume=64, battery=80) as env:
        p, _ = start_playing(env, 3.0)
        r = amixer(env, 'get', 'A2DP')
        check('amixer shows the speaker volume', shown_volume(r)[0] == 64, r.stdout + r.stderr)
        r = amixer(env, 'set', 'A2DP', '40%')
        check('amixer set 40% succeeds', r.rc == 0, r.stderr)
        check('the speaker is asked for 51 (40% of 127)',
              wait_for(lambda: any(e.startswith('SetVolume 51 ') for e in env.events())),
              str([e for e in env.events() if 'Volume' in e]))
        amixer(env, 'set', 'A2DP', '100')
        check('amixer set 100 reaches the speaker as 100',
              wait_for(lambda: any(e.startswith('SetVolume 100 ') for e in env.events())))
        ev = env.spawn(['stdbuf', '-o0', 'amixer', '-D', CTL, 'events'])
        time.sleep(0.5)
        env.mock('SetTransportProperty', 'Volume', dbus.UInt16(20))
        check('a change on the speaker is an event for the mixer',
              wait_for(lambda: "event value: numid=1,iface=MIXER,name='A2DP Playback Volume'"
                       in ev.output(), 2.0), ev.output()[-400:])
        r = amixer(env, 'get', 'A2DP')
        check('amixer get shows the speaker\'s new value', shown_volume(r)[0] == 20, r.stdout)
        ev.kill()
        check('playback unaffected', p.wait(10).rc == 0)


def test_battery():
    with Env(devices=[DEV], battery=80) as env:
        r = amixer(env, 'get', 'Battery')
        check('battery level shown', 'Playback 80 [80%]' in r.stdout, r.stdout + r.stderr)
        r = amixer(env, 'set', 'Battery', '10')
        check('battery is read-only', r.rc != 0 or 'Playback 80' in amixer(env, 'get', 'Battery').stdout)
        ev = env.spawn(['stdbuf', '-o0', 'amixer', '-D', CTL, 'events'])
        time.sleep(0.5)
        env.mock('SetBattery', dbus.Byte(55))
        check('a battery change is an event',
              wait_for(lambda: "name='Battery Playback Volume'" in
                       ev.output().split('Ready to listen')[-1], 2.0))
        ev.kill()
        check('battery shows the new level', 'Playback 55 [55%]' in amixer(env, 'get', 'Battery').stdout)
    with Env(devices=[DEV]) as env:
        r = amixer(env, 'scontrols')
        check('no battery element without Battery1', 'Battery' not in r.stdout and 'A2DP' in r.stdout,
              r.stdout)


def test_closed_stream():
    """No stream open: the ctl opens, shows the last value, the next open applies a change."""
    with Env(devices=[DEV], volume=64) as env:
        r = amixer(env, 'get', 'A2DP')
        check('ctl opens with no stream', r.rc == 0 and shown_volume(r)[0] is not None, r.stderr)
        r = amixer(env, 'set', 'A2DP', '33')
        check('a change with no stream is accepted', r.rc == 0, r.stderr)
        check('and shown', shown_volume(amixer(env, 'get', 'A2DP'))[0] == 33)
        p, _ = start_playing(env, 0.5)
        check('the next open sends it to the speaker',
              wait_for(lambda: any(e.startswith('SetVolume 33 ') for e in env.events()), 2.0),
              str([e for e in env.events() if 'Volume' in e]))
        p.wait(10)
        env.mock('ClearEvents')
        p, _ = start_playing(env, 0.5)
        p.wait(10)
        check('and only once', not any(e.startswith('SetVolume') for e in env.events()),
              str([e for e in env.events() if 'Volume' in e or 'Acquire' in e]))
        check('the value the speaker reported is kept after close',
              shown_volume(amixer(env, 'get', 'A2DP'))[0] == 33)


def decoded(env, sig):
    got, rate = audio.read_wav(env.captures()[-1][0])
    lag = audio.align(sig, got)
    return got[lag:lag + len(sig)].astype(float), rate


def rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(x ** 2)) / 32768 + 1e-12)


def test_mute():
    """Mute silences the decoded audio and unmute restores it, in either mode."""
    for mode, kw in (('AVRCP speaker', {'volume': 100}), ('software volume', {})):
        with Env(devices=[DEV], **kw) as env:
            p, sig = start_playing(env, 3.0)
            t0 = time.monotonic()
            time.sleep(1.0 - (time.monotonic() - t0))
            amixer(env, 'set', 'A2DP', 'mute')
            time.sleep(1.0)
            amixer(env, 'set', 'A2DP', 'unmute')
            check(f'{mode}: plays through mute', p.wait(10).rc == 0)
            got, rate = decoded(env, sig)
            ref = sig.astype(float)
            sec = lambda a, b: slice(int(a * rate), int(b * rate))  # noqa: E731
            muted = rms_db(got[sec(1.4, 1.8)])
            check(f'{mode}: muted part is silent', muted < -80, f'{muted:.1f} dBFS')
            before = rms_db(got[sec(0.2, 0.8)] - ref[sec(0.2, 0.8)]) - rms_db(ref[sec(0.2, 0.8)])
            after = rms_db(got[sec(2.5, 2.9)] - ref[sec(2.5, 2.9)]) - rms_db(ref[sec(2.5, 2.9)])
            check(f'{mode}: audio intact before mute and after unmute',
                  before < -50 and after < -50, f'error {before:.1f} / {after:.1f} dB')
            check(f'{mode}: the speaker volume itself is kept',
                  shown_volume(amixer(env, 'get', 'A2DP'))[0] == kw.get('volume', 127))


def test_software_volume():
    """A speaker without absolute volume: pcm_bt scales the audio by the element's dB.
    Each play alone (MIX=0) is a stream of its own at the sink, measured
    alone; with the mix (the default) test_mix.py measures the sum."""
    with Env(devices=[DEV]) as env:
        r = amixer(env, 'contents')
        m = re.search(r"dBminmaxmute-min=(-?[\d.]+)dB,max=(-?[\d.]+)dB", r.stdout)
        check('volume element has a dB range', m and float(m.group(1)) == VOLUME_MIN_DB, r.stdout)
        for value in (127, 100, 64, 20):
            amixer(env, 'set', 'A2DP', str(value))
            p, sig = start_playing(env, 1.0, dev=ALONE)
            p.wait(10)
            got, rate = decoded(env, sig)
            ref = sig.astype(float)
            core = slice(int(0.1 * rate), int(0.9 * rate))
            measured = rms_db(got[core]) - rms_db(ref[core])
            want = VOLUME_MIN_DB * (127 - value) / 127
            check(f'software volume {value}: {want:.2f} dB within 0.5 dB',
                  abs(measured - want) < 0.5, f'measured {measured:.2f} dB')
        check('no Volume writes to a speaker without absolute volume',
              not any(e.startswith('SetVolume') for e in env.events()))
        # A change while playing reaches the running stream.
        amixer(env, 'set', 'A2DP', '127')
        p, sig = start_playing(env, 2.0, dev=ALONE)
        time.sleep(1.0)
        amixer(env, 'set', 'A2DP', '64')
        p.wait(10)
        got, rate = decoded(env, sig)
        ref = sig.astype(float)
        late = slice(int(1.5 * rate), int(1.9 * rate))
        measured = rms_db(got[late]) - rms_db(ref[late])
        want = VOLUME_MIN_DB * 63 / 127
        check('a change during playback reaches the running stream',
              abs(measured - want) < 0.5, f'{measured:.2f} dB, want {want:.2f}')


def configured_sep(env):
    """The speaker SEP of the last transport: which codec it was configured with."""
    ev = [e for e in env.events() if e.startswith('SetConfiguration /org/bluez')]
    return ev[-1].split()[1].split('/')[-2] if ev else None


def test_codec():
    """'A2DP Codec': what the speaker played with; a choice is used at the next open."""
    seps = ['00:ffff0235', 'ff:4f000000010032']            # SBC (sep1), aptX (sep2)
    with Env(devices=[DEV + ',connected'], sink_seps=seps) as env:
        r = amixer(env, 'cget', "name='A2DP Codec'")
        check('codec element: the table\'s codecs, SBC before any stream',
              "items=6" in r.stdout and re.search(r": values=(\d+)", r.stdout) and
              "Item #4 'sbc'" in r.stdout and re.search(r": values=4\b", r.stdout), r.stdout)
        p, _ = start_playing(env, 0.5)
        p.wait(10)
        r = amixer(env, 'cget', "name='A2DP Codec'")
        check('codec element shows aptX after a stream played with it',
              configured_sep(env) == 'sep2' and re.search(r": values=2\b", r.stdout), r.stdout)
        r = amixer(env, 'cset', "name='A2DP Codec'", 'sbc')
        check('choosing SBC is taken and shown', r.rc == 0 and re.search(r": values=4\b", r.stdout),
              r.stdout + r.stderr)
        p, _ = start_playing(env, 0.5)
        check('the next stream plays SBC', p.wait(10).rc == 0 and configured_sep(env) == 'sep1',
              str(configured_sep(env)))
        p = env.spawn(['aplay', '-q', '-D', 'bluetooth:DEV=%s,CODEC=aptx' % ADDR, env.tmp + '/in.wav'])
        check('CODEC= overrides the mixer\'s choice', p.wait(10).rc == 0 and configured_sep(env) == 'sep2',
              str(configured_sep(env)))
        r = amixer(env, 'cget', "name='A2DP Codec'")
        check('and the element follows what played', re.search(r": values=2\b", r.stdout), r.stdout)


def test_errors():
    with Env(devices=[DEV]) as env:
        r = env.run(['amixer', '-D', 'bluetooth:DEV=00:1B:66:AA:BB:CD', 'get', 'A2DP'], timeout=10)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check('no such device: clear error at open',
              r.rc != 0 and len(lines) == 1 and 'not known to BlueZ' in lines[0], r.stderr)
        r = env.run(['amixer', '-D', 'bluetooth:DEV=00:1B', 'get', 'A2DP'], timeout=10)
        check('malformed DEV', r.rc != 0 and 'not a Bluetooth address' in r.stderr, r.stderr)
    with Env(mock=False) as env:
        r = amixer(env, 'get', 'A2DP')
        check('bluetoothd not running', r.rc != 0 and 'bluetoothd is not running' in r.stderr, r.stderr)
    with Env(mock=False, activatable=True) as env:
        # D-Bus tries to start bluetoothd and fails (Spawn.ChildExited). With
        # libdbus's checks fatal (as Debian unstable's libdbus has them), a
        # filter removed that was never added would abort amixer here.
        env.environ['DBUS_FATAL_WARNINGS'] = '1'
        r = amixer(env, 'get', 'A2DP')
        check('bluetoothd not running, D-Bus fails to start it: the same clear error, no abort',
              r.rc == 1 and 'bluetoothd is not running' in r.stderr and 'dbus[' not in r.stderr,
              'rc %s: %s' % (r.rc, r.stderr[-300:]))
    with Env(devices=[DEV], volume=64) as env:
        ev = env.spawn(['stdbuf', '-o0', 'amixer', '-D', CTL, 'events'])
        time.sleep(0.5)
        cpu0 = os.times()
        env.stop_mock()
        time.sleep(1.0)
        alive = ev.running()
        ev.kill()
        out = ev.output().split('Ready to listen')[-1]
        check('bluetoothd gone: the mixer app gets one last event and does not crash',
              alive and 'event value' in out, out[-300:])
        check('and does not spin', out.count('Poll ok') < 10, f"{out.count('Poll ok')} wakeups")
        del cpu0
    with Env(devices=[DEV], volume=64, battery=80) as env:
        # One process keeps the ctl open across bluetoothd's exit and return.
        p = env.spawn([os.path.join(os.environ.get('ALSABT_BUILD', 'build'), 'ctl_client'),
                       CTL, 'Battery Playback Volume', '4.0'])
        time.sleep(0.6)
        t_stop = time.monotonic() - p.start
        env.stop_mock()
        time.sleep(1.0)
        t_back = time.monotonic() - p.start
        env.restart_mock()
        env.mock('SetBattery', dbus.Byte(55))
        r = p.wait(10)
        reads = [(float(x[1][2:]), x[2], x[3]) for x in
                 (ln.split() for ln in r.stdout.splitlines() if ln.startswith('READ'))]
        before = [x for x in reads if x[0] < t_stop]
        away = [x for x in reads if t_stop + 0.2 * TIME_SCALE < x[0] < t_back]
        check('ctl_client read the battery while bluetoothd ran',
              before and all(x[1:] == ('rc=0', 'value=80') for x in before), str(before[-3:]))
        check('bluetoothd gone: the open mixer keeps its elements and last values (no error)',
              away and all(x[1:] == ('rc=0', 'value=80') for x in away), str(away[-3:]))
        check('bluetoothd back: the open mixer follows the device again (battery 80 -> 55)',
              reads and reads[-1][1:] == ('rc=0', 'value=55') and r.rc == 0 and not r.timed_out,
              'rc %s, last reads %s' % (r.rc, reads[-3:]))
        r = amixer(env, 'cset', "name='A2DP Playback Volume'", '40')
        check('... and a fresh amixer works against the new bluetoothd', r.rc == 0, r.stderr)

def window_db(x, rate, a, b):
    """RMS level of x[a s : b s] in dB full scale (-inf for silence)."""
    w = x[int(a * rate):int(b * rate)].astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(w * w))) if len(w) else 0.0
    return 20 * np.log10(rms) if rms > 0 else float('-inf')


def plateaus(x, rate, win_s=0.05, jump_db=4.0, min_s=0.4):
    """The stretches of steady level in x from its first sound: [(start s,
    end s, median dB)], each at least min_s long.  A stretch ends where a
    window's level leaves its median by more than jump_db (white noise
    varies well under 1 dB a 50 ms window); silence is its own level."""
    n = len(x) // int(rate * win_s)
    lv = [window_db(x, rate, i * win_s, (i + 1) * win_s) for i in range(n)]
    first = next((i for i, v in enumerate(lv) if v > -60), n)
    out, cur = [], []

    def close():
        if len(cur) * win_s >= min_s:
            out.append((cur[0] * win_s, (cur[-1] + 1) * win_s,
                        float(np.median([lv[i] for i in cur]))))
    for i in range(first, n):
        if cur:
            med = float(np.median([lv[j] for j in cur]))
            silent = lv[i] == float('-inf')
            if silent != (med == float('-inf')) or (not silent and abs(lv[i] - med) > jump_db):
                close()
                cur = []
        cur.append(i)
    close()
    return out


def volume_db(v):
    return VOLUME_MIN_DB * (127 - v) / 127


def phone_env(wav, volume):
    build = os.environ.get('ALSABT_BUILD', 'build')
    return Env(devices=['hci0/%s,phone' % ADDR], sink=None, volume=volume,
               extra_args=['--phone', os.path.join(build, 'phone_source'),
                           '--phone-args=--wav %s' % wav])


def test_phone_volume():
    """A phone plays to the capture PCM: its AVRCP volume slider is a gain on
    what is captured and the mixer's "A2DP Capture Volume", both ways; the
    capture switch mutes. Checked as audio: the level of each stretch of the
    capture against the first (the phone's slider at the top)."""
    rate, seg = 44100, 1.6
    wav = '/tmp/alsabt-ctl-phone-%d.wav' % os.getpid()
    audio.write_wav(wav, audio.noise(rate, 8.0), rate)
    try:
        with phone_env(wav, 127) as env:
            r = amixer(env, 'scontents')
            check('phone: the mixer shows a capture volume and switch, no playback ones',
                  r.rc == 0 and "Capabilities: cvolume cvolume-joined cswitch cswitch-joined" in r.stdout
                  and 'pvolume' not in r.stdout, r.stdout + r.stderr)
            r = amixer(env, 'cset', 'name=A2DP Codec', '1')
            check('phone: the codec is shown, not chosen (the phone chooses)', r.rc != 0, r.stdout)
            out = env.tmp + '/cap.wav'
            t0 = time.monotonic()
            p = env.spawn(['arecord', '-q', '-D', 'bluetooth:DEV=' + ADDR, '-f', 'cd',
                           '-d', '7', out])
            env.wait_event(r'^TryAcquire -> ok', timeout=5 * TIME_SCALE)
            t_phone = time.monotonic() - t0

            def at(t):
                time.sleep(max(0.0, t0 + t - time.monotonic()))
            at(t_phone + 0.3 + seg)
            env.mock('SetTransportProperty', 'Volume', dbus.UInt16(64, variant_level=1))
            got_64 = wait_for(lambda: 'Capture 64 [' in amixer(env, 'get', 'A2DP').stdout, 1.0)
            check('phone: its slider reaches the mixer (64)', got_64, amixer(env, 'get', 'A2DP').stdout)
            at(t_phone + 0.3 + 2 * seg)
            r = amixer(env, 'set', 'A2DP', '100')
            told = wait_for(lambda: re.search(r'SetVolume 100 ', env.mock_log()), 1.0)
            check('phone: the mixer\'s 100 is sent to the phone (MediaTransport1.Volume)',
                  r.rc == 0 and told, r.stderr)
            at(t_phone + 0.3 + 3 * seg)
            r = amixer(env, 'cset', 'name=A2DP Capture Switch', 'off')
            check('phone: the capture switch turns off', r.rc == 0, r.stderr)
            res = p.wait(15 * TIME_SCALE)
            got = audio.read_wav(out)[0] if os.path.exists(out) else np.zeros((0, 2), np.int16)
            check('phone: arecord captured 7 s', res.rc == 0 and len(got) == 7 * rate, res.stderr)
            # The stretches are found in the audio itself, as steady levels:
            # where they fall in the file depends on when the capture's
            # open began it (over 0.5 s later under TSan), which wall-clock
            # windows got wrong (a window across the next change: -20.1 dB
            # for 64).
            pl = plateaus(got, rate)
            print('phone volume: stretches (s, s, dB) %s' % [
                ('%.2f' % a, '%.2f' % b, '%.2f' % v) for a, b, v in pl])
            lv = [v for _, _, v in pl[:4]] + [float('nan')] * (4 - len(pl[:4]))
            for k, (what, want) in enumerate((('the phone at 64', volume_db(64)),
                                               ('the mixer at 100', volume_db(100))), 1):
                check('phone: %s captured at %.1f dB (+-1; noise over 0.5 s windows)' % (what, want),
                      abs(lv[k] - lv[0] - want) < 1.0, '%.2f dB' % (lv[k] - lv[0]))
            check('phone: muted, silence', lv[3] == float('-inf'), '%.2f dB' % lv[3])
            check('phone: the first stretch is the phone\'s audio at full level',
                  -16 < lv[0] < -6, '%.2f dB' % lv[0])
    finally:
        os.unlink(wav)


def test_phone_volume_in_store():
    """A phone without AVRCP volume: the mixer's value is the gain."""
    rate = 44100
    wav = '/tmp/alsabt-ctl-phone-%d.wav' % os.getpid()
    audio.write_wav(wav, audio.noise(rate, 4.0), rate)
    try:
        levels = []
        for vol in (127, 90):
            with phone_env(wav, None) as env:
                r = amixer(env, 'set', 'A2DP', str(vol))
                r2, out = None, env.tmp + '/cap.wav'
                r2 = env.run(['arecord', '-q', '-D', 'bluetooth:DEV=' + ADDR, '-f', 'cd',
                              '-d', '3', out], timeout=15 * TIME_SCALE)
                got = audio.read_wav(out)[0] if os.path.exists(out) else np.zeros((0, 2), np.int16)
                check('phone without AVRCP volume, mixer at %d: captured' % vol,
                      r.rc == 0 and r2.rc == 0 and len(got) == 3 * rate, r.stderr + r2.stderr)
                levels.append(window_db(got, rate, 1.2, 2.8))
        print('phone without AVRCP volume: levels %s dB' % ['%.2f' % v for v in levels])
        check('phone without AVRCP volume: the mixer at 90 is %.1f dB (+-0.5)' % volume_db(90),
              abs(levels[1] - levels[0] - volume_db(90)) < 0.5, '%.2f dB' % (levels[1] - levels[0]))
    finally:
        os.unlink(wav)


test_codec()
test_hardware_volume()
test_battery()
test_closed_stream()
test_mute()
test_software_volume()
test_errors()
test_phone_volume()
test_phone_volume_in_store()
finish()
