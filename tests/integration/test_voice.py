"""A headset's voice through pcm.bluetooth with PROFILE=hfp (pcm_bt/
pcm_voice.c, hfp/link.c), as users run it: aplay to the earpiece, arecord
from the microphone, alsaloop with both in one program.  The mock
bluetoothd hands the RFCOMM channel to the scripted headset
(tests/tools/headset.py); the SCO socket, which this kernel lacks, is
turned by tests/tools/sco_shim.so into a connection to the headset's
radio (tests/tools/sco_headset), which sends a packet every period on its
own clock and records what comes back.  Checked as audio: lag, SNR,
duration, gaps; CVSD (8 kHz, the samples as they are on the stand-in's
air) and mSBC (16 kHz, libsbc on both ends).
"""
import os
import re
import signal
import sys
import tempfile
import time


sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import BUILD, REPO, TIME_SCALE, Env, check, finish  # noqa: E402

ADDR = '00:1B:66:00:00:07'
HEADSET = 'hci0/%s,headset' % ADDR
HEADSET_PY = os.path.join(REPO, 'tests', 'tools', 'headset.py')
SHIM = os.path.join(BUILD, 'sco_shim.so')
SCO_TOOL = os.path.join(BUILD, 'sco_headset')
PCM = 'bluetooth:DEV=%s,PROFILE=hfp' % ADDR
RATE = {'msbc': 16000, 'cvsd': 8000}
SCRIPT = {'msbc': 'modern', 'cvsd': 'bluealsa40'}
# CVSD crosses the stand-in's air as the samples themselves: bit-exact (the
# SNR is infinite). mSBC is one libsbc encode and decode: a voice-band sweep
# comes back at about 60 dB; 40 leaves room and still fails on a lost or
# misplaced frame.
MIN_SNR = {'cvsd': 90, 'msbc': 40}


class Voice:
    """An Env whose headset has a voice link: its files in one directory."""

    def __init__(self, codec, sco_args='', headset_args=''):
        self.dir = tempfile.mkdtemp(prefix='alsabt-voice-')
        self.sock = os.path.join(self.dir, 'sco')
        self.mic = os.path.join(self.dir, 'mic.wav')        # what the headset says
        self.ear = os.path.join(self.dir, 'ear.wav')        # what it heard
        args = '--script %s --sco %s --sco-tool %s %s' % (SCRIPT[codec], self.sock, SCO_TOOL,
                                                          headset_args)
        sco = ','.join(['--record', self.ear] + sco_args.split())
        self.env = Env(devices=[HEADSET], sink=None,
                       extra_args=['--headset', HEADSET_PY, '--headset-features', '0x20',
                                   '--headset-args=' + args + ' --sco-args=' + sco])
        self.codec = codec

    def __enter__(self):
        self.env.__enter__()
        e = self.env.environ
        e['LD_PRELOAD'] = ':'.join(p for p in (e.get('LD_PRELOAD'), SHIM) if p)
        e['ALSABT_SCO_SOCKET'] = self.sock
        return self

    def __exit__(self, *exc):
        self.env.__exit__(*exc)
        return False

    def log(self):
        """The headset's log lines, of every connection in turn."""
        lines, k = [], 0
        while os.path.exists(os.path.join(self.env.outdir, 'headset-%d.log' % k)):
            with open(os.path.join(self.env.outdir, 'headset-%d.log' % k)) as f:
                lines += [ln.rstrip('\n') for ln in f]
            k += 1
        return lines

    def heard(self):
        """bluetoothd (and with it the headset) goes; what the earpiece heard,
        mono, or None; and the radio's last line."""
        self.env.stop_mock()
        end = self.sco_end()
        got = audio.read_wav(self.ear)[0][:, 0] if os.path.exists(self.ear) else None
        return got, end

    def sco_end(self, timeout=10.0):
        """The radio's last line, once every link it had ended: {field: value}."""
        end = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < end:
            log = self.log()
            starts = [ln for ln in log if ln.startswith('sco: voice=')]
            ends = [ln for ln in log if ln.startswith('sco: end ')]
            if ends and len(ends) >= len(starts):
                return dict(re.findall(r'(\w+)=(\S+)', ends[-1]))
            time.sleep(0.05)
        return {}


def wav_file(samples, rate):
    """samples as a WAV in a directory of its own."""
    path = os.path.join(tempfile.mkdtemp(prefix='alsabt-voice-ref-'), 'mic.wav')
    audio.write_wav(path, samples, rate)
    return path


def speech_like(rate, seconds):
    """A mono sweep over the voice band (what both codecs carry)."""
    top = 3400 if rate == 8000 else 7000
    return audio.sweep(rate, seconds, f0=150, f1=top, amp=0.4, channels=1)


def audio_checks(name, ref, got, rate, min_snr, expected_lag=0, search=None):
    if got is None or len(got) < rate // 10:
        check(name + ': audio arrived', False, 'got %s frames' % (None if got is None else len(got)))
        return
    search = search or rate
    lag = audio.align(ref, got, expected_lag=expected_lag, search=search)
    snr = audio.snr_db(ref, got, lag, rate=rate)
    inside = got[max(lag, 0):max(lag, 0) + len(ref)]
    g = audio.gaps(inside, rate, min_ms=5)
    check('%s: lag %.1f ms, SNR %.1f dB >= %d, all %.2f s there, no gaps'
          % (name, lag * 1000.0 / rate, snr, min_snr, len(ref) / rate),
          snr >= min_snr and len(got) - lag >= len(ref) and not g,
          'lag %d snr %.1f got %d ref %d gaps %s' % (lag, snr, len(got), len(ref), g[:5]))
    return lag


def test_playback(codec):
    rate = RATE[codec]
    with Voice(codec) as v:
        ref = speech_like(rate, 2.0)
        wav = wav_file(ref, rate)
        t0 = time.monotonic()
        r = v.env.run(['aplay', '-q', '-D', PCM, wav], timeout=30 * TIME_SCALE)
        took = time.monotonic() - t0
        check('%s: aplay to the earpiece succeeds' % codec, r.rc == 0,
              '%s %s' % (r.stderr[-400:], v.log()[-5:]))
        hello = [ln for ln in v.log() if ln.startswith('sco: voice=')]
        want = '0x0003' if codec == 'msbc' else '0x0060'
        check('%s: the SCO socket set to voice %s, bound to our adapter, to the headset'
              % (codec, want), hello and ('voice=%s' % want) in hello[0] and
              ('connect=%s' % ADDR) in hello[0] and 'bind=00:AA:00:00:00:00' not in hello[0],
              str(hello))
        got, end = v.heard()
        audio_checks('%s playback' % codec, ref, got, rate, MIN_SNR[codec],
                     expected_lag=rate // 2, search=rate // 2)
        check('%s: every packet answered with one of the same size' % codec,
              end and end.get('bad_len') == '0' and int(end.get('received', 0)) > 0 and
              abs(int(end['received']) - int(end['sent'])) <= 3, str(end))
        check('%s: aplay took the audio\'s time (%.2f s for 2 s)' % (codec, took),
              1.9 < took < 2.0 + 1.5 * TIME_SCALE, '%.2f' % took)


def test_capture(codec):
    rate = RATE[codec]
    ref = speech_like(rate, 2.0)
    mic = wav_file(ref, rate)
    with Voice(codec, sco_args='--play %s' % mic) as v:
        out = os.path.join(v.dir, 'heard.wav')
        r = v.env.run(['arecord', '-q', '-D', PCM, '-f', 'S16_LE', '-r', str(rate), '-c', '1',
                       '-d', '3', out], timeout=30 * TIME_SCALE)
        check('%s: arecord from the microphone succeeds' % codec, r.rc == 0,
              '%s %s' % (r.stderr[-400:], v.log()[-5:]))
        got = audio.read_wav(out)[0][:, 0] if os.path.exists(out) else None
        audio_checks('%s capture' % codec, ref, got, rate, MIN_SNR[codec],
                     expected_lag=rate // 2, search=rate // 2)
        check('%s: 3 s recorded' % codec, got is not None and len(got) == 3 * rate,
              str(None if got is None else len(got)))


PACKET = {'cvsd': 48, 'msbc': 60}     # what our own clock sends


def test_quiet_headset(codec):
    """A headset side that sends nothing until it has something to say (BlueZ's
    emulator with bluez-alsa as the headset): we pace the link ourselves."""
    rate = RATE[codec]
    ref = speech_like(rate, 2.0)
    with Voice(codec, sco_args='--quiet-for -1 --packet %d' % PACKET[codec]) as v:
        t0 = time.monotonic()
        r = v.env.run(['aplay', '-q', '-D', PCM, wav_file(ref, rate)], timeout=30 * TIME_SCALE)
        took = time.monotonic() - t0
        check('%s quiet headset: aplay succeeds, saying once that we pace the link' % codec,
              r.rc == 0 and r.stderr.count('alsa-bt paces the link') == 1,
              '%s %s' % (r.stderr[-400:], v.log()[-5:]))
        got, end = v.heard()
        audio_checks('%s quiet headset: playback' % codec, ref, got, rate, MIN_SNR[codec],
                     expected_lag=rate // 2, search=rate // 2)
        check('%s quiet headset: %d-byte packets, none from the headset' % (codec, PACKET[codec]),
              end and end.get('bad_len') == '0' and end.get('sent') == '0' and
              int(end.get('received', 0)) > 0, str(end))
        check('%s quiet headset: aplay took the audio\'s time on our clock (%.2f s for 2 s)'
              % (codec, took), 1.9 < took < 2.0 + 1.5 * TIME_SCALE, '%.2f' % took)
    mic = wav_file(ref, rate)
    with Voice(codec, sco_args='--quiet-for 1 --play %s --packet %d' % (mic, PACKET[codec])) as v:
        out = os.path.join(v.dir, 'heard.wav')
        t0 = time.monotonic()
        r = v.env.run(['arecord', '-q', '-D', PCM, '-f', 'S16_LE', '-r', str(rate), '-c', '1',
                       '-d', '3', out], timeout=30 * TIME_SCALE)
        took = time.monotonic() - t0
        check('%s quiet headset: arecord succeeds' % codec, r.rc == 0,
              '%s %s' % (r.stderr[-400:], v.log()[-5:]))
        got = audio.read_wav(out)[0][:, 0] if os.path.exists(out) else None
        lag = audio_checks('%s quiet headset: the microphone once it speaks' % codec, ref, got,
                           rate, MIN_SNR[codec], expected_lag=3 * rate // 4, search=rate // 2)
        check('%s quiet headset: silence before it speaks, 3 s recorded in %.2f s'
              % (codec, took), got is not None and lag is not None and len(got) == 3 * rate and
              lag > rate // 4 and not got[:lag - rate // 10].any() and took < 3 + 1.5 * TIME_SCALE,
              'lag %s len %s took %.2f' % (lag, None if got is None else len(got), took))


def test_loop(codec):
    """alsaloop: the microphone into the earpiece, one program, one link."""
    rate = RATE[codec]
    ref = speech_like(rate, 2.0)
    mic = wav_file(ref, rate)
    with Voice(codec, sco_args='--play %s' % mic) as v:
        plain = v.env.environ
        if 'asan' in plain.get('LD_PRELOAD', ''):
            # alsaloop leaks its own argument strings at exit (in /usr/bin/
            # alsaloop, not in the plugin); duplex_client below is the
            # leak-checked run of the same path.
            v.env.environ = dict(plain, ASAN_OPTIONS=plain.get('ASAN_OPTIONS', '') +
                                 ':detect_leaks=0')
        p = v.env.spawn(['alsaloop', '-C', PCM, '-P', PCM, '-f', 'S16_LE', '-r', str(rate),
                         '-c', '1', '-t', '100000', '-S', '0'])
        v.env.environ = plain
        time.sleep(3.5 * TIME_SCALE)
        p.signal(signal.SIGINT)
        r = p.wait(5 * TIME_SCALE)
        check('%s: alsaloop, capture and playback on one headset in one program, ends on ^C'
              % codec, r.rc == 0 and not r.timed_out, '%s %s' % (r.stderr[-400:], v.log()[-5:]))
        ev = v.env.events()
        check('%s: ... one profile registration, one Service Level Connection' % codec,
              len([e for e in ev if e.startswith('RegisterProfile :')]) == 1 and
              len([e for e in ev if e.startswith('NewConnection /')]) == 1, str(ev[-10:]))
        got, _ = v.heard()
        audio_checks('%s mic -> alsaloop -> earpiece' % codec, ref, got, rate,
                     MIN_SNR[codec] - 5, expected_lag=rate // 2, search=rate // 2)
    with Voice(codec, sco_args='--play %s' % mic) as v:
        r = v.env.run([os.path.join(BUILD, 'duplex_client'), '-D', PCM, '--rate', str(rate),
                       '--seconds', '3'], timeout=30 * TIME_SCALE)
        held = dict(re.findall(r'(\w+)=(\S+)', ''.join(ln for ln in r.stdout.splitlines()
                                                       if ln.startswith('HELD '))))
        check('%s: a VoIP-like program (duplex_client): both directions for 3 s, then every '
              'descriptor and thread of the link released' % codec,
              r.rc == 0 and 'xruns=0' in r.stdout and held and
              held['fds_before'] == held['fds_after'] and
              held['threads_before'] == held['threads_after'], '%s %s' % (r.stdout, r.stderr[-400:]))
        got, _ = v.heard()
        audio_checks('%s mic -> duplex_client -> earpiece' % codec, ref, got, rate,
                     MIN_SNR[codec] - 5, expected_lag=rate // 2, search=rate // 2)


def test_losses():
    """mSBC packets lost on the air: concealed, the rest keeps its time."""
    rate = 16000
    ref = speech_like(rate, 2.0)
    mic = wav_file(ref, rate)
    with Voice('msbc', sco_args='--play %s --drop-every 40' % mic) as v:
        out = os.path.join(v.dir, 'heard.wav')
        r = v.env.run(['arecord', '-q', '-D', PCM, '-f', 'S16_LE', '-r', str(rate), '-c', '1',
                       '-d', '3', out], timeout=30 * TIME_SCALE)
        got = audio.read_wav(out)[0][:, 0] if r.rc == 0 and os.path.exists(out) else None
        end = v.heard()[1]
        if got is None:
            check('one packet in 40 lost: arecord succeeds', False, r.stderr[-300:])
            return
        lag = audio.align(ref, got, expected_lag=rate // 2, search=rate // 2)
        tail = audio.align(ref[-rate // 2:], got[len(ref) - rate // 2:], expected_lag=lag, search=400)
        # 7.5 ms blocks: those a loss touched are concealed (a repeat, faded),
        # the others must be as good as with no loss at all.
        blocks = [audio.snr_db(ref[k:k + 120], got[k + lag:k + lag + 120], 0, rate=rate, trim_ms=0)
                  for k in range(240, len(ref) - 240, 120)]
        bad = sum(1 for b in blocks if not b >= 30)
        dropped = int(end.get('dropped', 0))
        check('one mSBC packet in 40 lost (%d of them): 3 s recorded, the last 0.5 s at the lag '
              'of the whole (%d, %d); %d of %d 7.5 ms blocks below 30 dB, at most 3 a loss'
              % (dropped, lag, tail, bad, len(blocks)),
              len(got) == 3 * rate and tail == lag and dropped > 5 and 0 < bad <= 3 * dropped,
              '%d %d %d %s' % (len(got), lag, tail, end))


def hangup_at(v):
    """When the headset hung up (its log: CLOCK_MONOTONIC), or None."""
    for ln in v.log():
        m = re.search(r'hangup at ([0-9.]+)', ln)
        if m:
            return float(m.group(1))
    return None


def test_lost():
    """The headset hangs up 1 s into the call: 1 s after its voice link came
    up, however long the open took on a loaded machine."""
    wav = wav_file(speech_like(16000, 6.0), 16000)
    for codec, what, argv in (
            ('msbc', 'mid-prompt: aplay', ['aplay', '-q', '-D', PCM, wav]),
            ('cvsd', 'mid-recording: arecord', ['arecord', '-q', '-D', PCM, '-f', 'S16_LE',
                                                '-r', '8000', '-c', '1', '-d', '6'])):
        with Voice(codec, headset_args='--hangup-after-voice 1') as v:
            if codec == 'cvsd':
                argv = argv + [os.path.join(v.dir, 'heard.wav')]
            r = v.env.run(argv, timeout=30 * TIME_SCALE)
            ended, hung = time.monotonic(), hangup_at(v)
            check('the headset hangs up %s fails with a line that says so' % what,
                  r.rc != 0 and 'gone' in r.stderr and hung is not None,
                  '%s %s' % (hung, r.stderr[-400:]))
            if hung is not None:
                check('... within 1 s of the hang-up (%.2f s)' % (ended - hung),
                      ended - hung < 1.0 + 0.5 * TIME_SCALE, r.stderr[-400:])


def amixer(env, *args):
    return env.run(['amixer', '-D', 'bluetooth:DEV=%s' % ADDR] + list(args), timeout=10 * TIME_SCALE)


def mixer_value(env, name):
    r = amixer(env, 'cget', 'name=%s' % name)
    m = re.search(r': values=(\d+)', r.stdout)
    return int(m.group(1)) if m else None


def wait_log(v, text, timeout=3.0, start=0):
    end = time.monotonic() + timeout * TIME_SCALE
    while time.monotonic() < end:
        if any(text in ln for ln in v.log()[start:]):
            return True
        time.sleep(0.05)
    return False


def test_gains():
    """The headset's speaker and microphone gains in the mixer, both ways."""
    with Voice('msbc', headset_args='--then-after 2.5 --then AT+VGS=12 --battery 70') as v:
        events = v.env.spawn(['stdbuf', '-o0', 'amixer', '-D', 'bluetooth:DEV=%s' % ADDR, 'events'])
        call = v.env.spawn(['aplay', '-q', '-D', PCM, '-d', '4', '/dev/zero'])
        up = wait_log(v, 'sco: voice=', timeout=5.0)
        speaker, mic = mixer_value(v.env, 'Headset Playback Volume'), \
            mixer_value(v.env, 'Headset Capture Volume')
        check('during a call the mixer shows the gains the headset reported (VGS 9, VGM 7)',
              up and speaker == 9 and mic == 7, '%s %s %s' % (up, speaker, mic))
        r = amixer(v.env, 'cset', 'name=Headset Capture Volume', '4')
        check('amixer sets the microphone gain: the headset is sent +VGM: 4 within 1 s',
              r.rc == 0 and wait_log(v, '< +VGM: 4', timeout=1.0), '%s %s' % (r.stderr[-200:],
                                                                      v.log()[-4:]))
        check('the headset\'s own change (AT+VGS=12) reaches the mixer',
              wait_log(v, '> AT+VGS=12', timeout=5.0) and
              any(mixer_value(v.env, 'Headset Playback Volume') == 12 or time.sleep(0.1)
                  for _ in range(20)), str(v.log()[-4:]))
        r = call.wait(15 * TIME_SCALE)
        time.sleep(0.3)
        events.signal(signal.SIGINT)
        ev = events.wait(5).stdout
        check('... and an open amixer events hears of both changes',
              ev.count("name='Headset Playback Volume'") >= 1 and
              ev.count("name='Headset Capture Volume'") >= 1, ev[-600:])
        n = len(v.log())
        r = v.env.run(['aplay', '-q', '-D', PCM, '-d', '1', '/dev/zero'], timeout=20 * TIME_SCALE)
        check('the battery the headset reported over HFP (AT+BIEV=2,70) in the mixer after the call',
              mixer_value(v.env, 'Battery Playback Volume') == 70,
              amixer(v.env, 'contents').stdout[-600:])
        check('the next call starts with the mixer\'s values: +VGS: 12 and +VGM: 4 sent at its start',
              r.rc == 0 and wait_log(v, '< +VGS: 12', start=n) and wait_log(v, '< +VGM: 4', start=n),
              '%s %s' % (r.stderr[-200:], v.log()[n:][-8:]))


def test_no_transparent():
    """mSBC agreed, but the adapter cannot carry it: CVSD is agreed again."""
    with Voice('msbc') as v:
        v.env.environ['ALSABT_SCO_NO_TRANSPARENT'] = '1'
        ref = speech_like(8000, 1.0)
        wav = wav_file(ref, 8000)
        r = v.env.run(['aplay', '-q', '-D', PCM, wav], timeout=30 * TIME_SCALE)
        log = v.log()
        check('an adapter without transparent SCO: one line, CVSD agreed again (+BCS: 1), '
              'the link opened as CVSD, aplay plays',
              r.rc == 0 and 'falling back to CVSD' in r.stderr and
              all(any(want in ln for ln in log) for want in ('< +BCS: 1', '> AT+BCS=1',
                                                             'sco: voice=0x0060')),
              '%s %s' % (r.stderr[-300:], log[-8:]))
        got, _ = v.heard()
        audio_checks('... what the headset heard', ref, got, 8000, MIN_SNR['cvsd'],
                     expected_lag=4000, search=4000)


def test_errors():
    with Voice('msbc') as v:
        r = v.env.run(['aplay', '-q', '-D', 'bluetooth:DEV=%s,PROFILE=voice' % ADDR, '/dev/zero'],
                      timeout=10)
        check('PROFILE=voice: an error that names the choices',
              r.rc != 0 and 'PROFILE=voice: say a2dp (music) or hfp' in r.stderr, r.stderr[-300:])
    with Voice('msbc') as v:
        v.env.environ['ALSABT_SCO_REFUSE'] = str(113)        # EHOSTUNREACH
        t0 = time.monotonic()
        r = v.env.run(['aplay', '-q', '-D', PCM, '/dev/zero'], timeout=20 * TIME_SCALE)
        check('the voice link refused: aplay fails at once with one line',
              r.rc != 0 and 'voice link to' in r.stderr and
              time.monotonic() - t0 < 5 * TIME_SCALE, r.stderr[-300:])
        check('... and the profile is unregistered', v.env.wait_event(r'^UnregisterProfile ', 3.0),
              str(v.env.events()[-5:]))
    with Voice('msbc') as v:
        first = v.env.spawn(['aplay', '-q', '-D', PCM, '-d', '3', '/dev/zero'])
        # the first's voice link up (not a fixed sleep: under a sanitizer
        # the first's 3 s had ended by then, and the second played alone)
        wait_log(v, 'sco: voice=', timeout=10.0)
        r = v.env.run(['aplay', '-q', '-D', PCM, '/dev/zero'], timeout=20 * TIME_SCALE)
        check('a second program on the headset: -EBUSY, saying who has it',
              r.rc != 0 and 'busy' in r.stderr.lower(), r.stderr[-300:])
        r1 = first.wait(10 * TIME_SCALE)
        check('... the first plays on to its end', r1.rc == 0, r1.stderr[-300:])
    with Voice('cvsd') as v:
        r = v.env.run([os.path.join(BUILD, 'cycle_client'), '-D', PCM, '-n', '12', '--every', '12',
                       '--burst-ms', '60', '--buffer-ms', '120'], timeout=120 * TIME_SCALE)
        stats = {s.get('cycle'): s for s in (dict(re.findall(r'(\w+)=(\S+)', ln))
                                             for ln in r.stdout.splitlines() if ln.startswith('STAT '))}
        base, last = stats.get('10', {}), stats.get('12', {})   # 10: cycle_client's baseline
        check('12 opens, plays and closes in one process: no error, no descriptor or thread left',
              r.rc == 0 and 'errors=0' in r.stdout and base and last and
              base['fds'] == last['fds'] and base['threads'] == last['threads'],
              '%s %s' % (r.stdout[-600:], r.stderr[-300:]))


def main():
    for tool in (SHIM, SCO_TOOL):
        if not os.access(tool, os.R_OK):
            check('built: %s' % tool, False, 'make first')
            return finish()
    for codec in ('cvsd', 'msbc'):
        test_playback(codec)
        test_capture(codec)
        test_loop(codec)
        test_quiet_headset(codec)
    test_losses()
    test_lost()
    test_gains()
    test_no_transparent()
    test_errors()
    return finish()


if __name__ == '__main__':
    sys.exit(main())
