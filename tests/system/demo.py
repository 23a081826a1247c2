"""make demo: hear what a Bluetooth speaker would, with no Bluetooth hardware.

    /usr/bin/python3 tests/system/demo.py BUILD_DIR [FILE]

Boots the system-test VM (vm.py): the real kernel Bluetooth stack with two
emulated controllers, bluetoothd, and bluez-alsa as a virtual A2DP speaker on
hci1, paired with hci0.  Then plays FILE (anything aplay plays; default: a
generated sweep and chord) with

    aplay -D bluetooth:DEV=00:AA:01:01:00:01,ADAPTER=hci0 FILE

through the plugins of BUILD_DIR, and writes what the virtual speaker
decoded to BUILD_DIR/demo/heard.wav, with how it compares (lag, SNR,
duration) when FILE is a 16-bit PCM WAV.  Logs: BUILD_DIR/demo/logs/.
"""
import os
import shutil
import sys
import time
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np          # noqa: E402
import systest              # noqa: E402
from systest import audio, vm   # noqa: E402


def generated(rate=44100):
    """3 s of log sweep, then 3 s of a C major arpeggio with a few harmonics."""
    sweep = audio.sweep(rate, 3.0, amp=0.4).astype(np.float64)
    t = np.arange(int(rate * 0.5)) / rate
    notes = []
    for f in (261.63, 329.63, 392.00, 523.25, 392.00, 329.63):
        tone = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3))
        env = np.minimum(1, t / 0.01) * np.exp(-3 * t)
        notes.append(0.3 * 32767 * tone * env / 1.8)
    chord = np.concatenate(notes)
    chord = np.stack([chord, np.roll(chord, rate // 100)], axis=1)
    return np.round(np.concatenate([sweep, chord])).astype(np.int16), rate


def wav_info(path):
    """(samples or None, rate, channels, seconds) of a WAV; None for others."""
    try:
        with wave.open(path, 'rb') as w:
            rate, ch, n, width = w.getframerate(), w.getnchannels(), w.getnframes(), w.getsampwidth()
    except (wave.Error, EOFError, OSError):
        return None
    samples = audio.read_wav(path)[0] if width == 2 else None
    return samples, rate, ch, n / float(rate)


def resample(x, src, dst):
    """Linear interpolation, per channel (enough for the lag; the SNR is approximate)."""
    n = int(round(len(x) * dst / float(src)))
    t = np.arange(n) * src / float(dst)
    return np.stack([np.interp(t, np.arange(len(x)), x[:, c]) for c in range(x.shape[1])], axis=1)


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    infile = sys.argv[2] if len(sys.argv) == 3 and sys.argv[2] else None
    build = os.path.abspath(sys.argv[1])
    outdir = os.path.join(build, 'demo')
    for so in ('libasound_module_pcm_bluetooth.so', 'libasound_module_ctl_bluetooth.so'):
        if not os.path.exists(os.path.join(build, so)):
            print('demo: %s/%s is missing: run make first' % (build, so))
            return 1
    miss = systest.missing_programs()
    if miss:
        print('demo: missing on this machine: %s (run tests/system/install-deps)' % ', '.join(miss))
        return 1
    run = systest.Run(build)
    if infile:
        src = os.path.abspath(infile)
        if not os.path.isfile(src):
            print('demo: %s: no such file' % src)
            return 1
        ext = os.path.splitext(src)[1].lower()
        name = 'input' + (ext if ext.isalnum() or (ext[1:].isalnum() and len(ext) < 8) else '')
        shutil.copy(src, os.path.join(run.share, name))
        info = wav_info(src)
        seconds = info[3] if info else os.path.getsize(src) / (44100 * 4.0) * 4 + 10
        ref = info[0] if info else None
        rate = info[1] if info else None
        run.play('demo', None, None, wav_name=name, seconds=seconds)
        label = src
    else:
        ref, rate = generated()
        run.play('demo', ref, rate)
        label = 'a generated sweep and chord (%s)' % os.path.join(outdir, 'played.wav')
    print('demo: booting the VM (about 30 s under TCG), then playing %s' % label, flush=True)
    t0 = time.monotonic()
    try:
        res = run.boot()
    except vm.VMError as e:
        print('demo: cannot run the VM: %s' % e)
        return 1
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    if os.path.isdir(os.path.join(run.share, 'logs')):
        shutil.copytree(os.path.join(run.share, 'logs'), os.path.join(outdir, 'logs'))
    for n in ('guest.log', 'console.log'):
        if os.path.exists(os.path.join(run.share, n)):
            shutil.copy(os.path.join(run.share, n), os.path.join(outdir, 'logs', n))
    if not infile:
        shutil.copy(os.path.join(run.share, 'demo.wav'), os.path.join(outdir, 'played.wav'))
    s = res.step('demo')
    cap = os.path.join(run.share, 'captures', 'demo.wav')
    if s.get('aplay_rc') != '0' or not os.path.exists(cap):
        print('demo: it did not play: aplay rc %s; %s' % (
            s.get('aplay_rc'), res.log('demo.aplay.err').strip()[-600:]))
        print('demo: guest log:\n' + res.guest_log()[-1500:])
        print('demo: logs in %s' % os.path.join(outdir, 'logs'))
        run.cleanup()
        return 1
    heard = os.path.join(outdir, 'heard.wav')
    shutil.copy(cap, heard)
    got, grate = audio.read_wav(heard)
    print('demo: the virtual speaker (bluez-alsa on hci1) heard %.2f s at %d Hz, %d channels'
          % (len(got) / float(grate), grate, got.shape[1]))
    print('demo: aplay took %.2f s (opening %.2f s)' % (
        float(s.get('aplay_s', 'nan')),
        float(s.get('capture_first_data_uptime', 'nan')) - float(s.get('aplay_start', 'nan'))))
    if ref is not None:
        ref2 = audio._2d(ref)
        note = ''
        if rate != grate:
            ref2 = resample(ref2.astype(np.float64), rate, grate)
            note = ' (%d Hz resampled to %d Hz here, so the SNR is approximate)' % (rate, grate)
        if ref2.shape[1] != got.shape[1]:
            ref2 = np.repeat(ref2[:, :1], got.shape[1], axis=1)
        a = systest.analyse(ref2, grate, heard)
        print('demo: compared with what was played%s:' % note)
        print('      lag %s frames (%.2f ms), %s' % (
            a['lag'], 1000.0 * (a['lag'] or 0) / grate,
            'steady' if a['stable'] else 'CHANGES %s (audio lost or repeated)' % a['lag_changes'][:6]))
        print('      SNR %.1f dB' % a['snr_db'])
        print('      duration: played %.2f s, heard %.2f s (%s)' % (
            len(ref2) / float(grate), len(got) / float(grate),
            'all of it' if a['complete'] else 'NOT all of it'))
        print('      gaps: %s' % (a['gaps'] or 'none'))
    else:
        print('demo: %s is not a 16-bit PCM WAV: no comparison' % label)
    print('demo: what the speaker heard: %s' % heard)
    print('demo: done in %.0f s; logs in %s' % (time.monotonic() - t0, os.path.join(outdir, 'logs')))
    run.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
