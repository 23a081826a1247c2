"""alsa-bt on the real Linux Bluetooth stack, in a VM (make check-system).

    /usr/bin/python3 tests/system/test_system.py BUILD_DIR

One VM boot (Debian's kernel, TCG, the host's root read-only over 9p; see
vm.py) runs, in order: the stack (bluetooth + hci_vhci, dbus, btvirt's two
emulated controllers, bluetoothd, bluez-alsa's A2DP sink on hci1, an agent),
pairing hci0 with hci1, then our plugins on hci0 against that sink:

    sweep    aplay -D bluetooth:DEV=..,ADAPTER=hci0  a 44.1 kHz log sweep
    noise    the same, 48 kHz white noise (the plugin reconfigures the link)
    raw      aplay -D bluetooth_raw:...              a 48 kHz sweep
    volume   a 44.1 kHz sweep plays while amixer -D bluetooth:... moves the
             speaker's AVRCP volume and the sink moves it back

What bluez-alsa's sink decoded is compared here with what was played.
Prints PASS/FAIL lines and ends with "N passed, N failed"; exit 1 on failure.
No VM (no qemu, no kernel package, no boot) is a loud failure; with
ALSABT_ALLOW_SKIP=1 a loud skip.  ALSABT_KEEP_TMP=1 keeps the share (logs,
captures) even when everything passed.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import systest                          # noqa: E402
from systest import audio, vm          # noqa: E402

_passed, _failed = [], []


def check(name, ok, detail='', info=None):
    """PASS name[: info] or FAIL name: detail (info defaults to a one-line detail)."""
    if ok:
        _passed.append(name)
        if info is None:
            info = detail if '\n' not in detail and len(detail) < 240 else ''
        print('PASS %s%s' % (name, (': ' + info) if info else ''), flush=True)
    else:
        _failed.append(name)
        print('FAIL %s: %s' % (name, detail), flush=True)
    return bool(ok)


def cannot_run(reason):
    """The VM cannot run here: loud, and a failure unless skipping is allowed."""
    bar = '!' * 72
    print(bar + '\n!!! SYSTEM TESTS DID NOT RUN: %s\n' % reason + bar, flush=True)
    if os.environ.get('ALSABT_ALLOW_SKIP') == '1':
        print('SKIP system tests: %s (ALSABT_ALLOW_SKIP=1)' % reason, flush=True)
    else:
        check('system tests run', False, '%s (ALSABT_ALLOW_SKIP=1 makes this a skip)' % reason)
    finish()


def finish():
    print('%d passed, %d failed' % (len(_passed), len(_failed)), flush=True)
    sys.exit(1 if _failed else 0)


def f(v, default=float('nan')):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def check_play(res, name, ref, rate, min_snr, lags):
    """The checks of one aplay run: exit, rate, alignment, SNR, whole, gaps, pacing."""
    s = res.step(name)
    dur = len(ref) / float(rate)
    err = res.log(name + '.aplay.err').strip().replace('\n', ' | ')
    check('%s: aplay exits 0' % name, s.get('aplay_rc') == '0',
          'rc %s, stderr: %s' % (s.get('aplay_rc'), err[-400:]), info='')
    cap = os.path.join(res.share, 'captures', name + '.wav')
    if not check('%s: the sink received audio' % name, os.path.exists(cap),
                 'no capture (%s); capture log: %s' % (
                     s.get('capture_error', '?'), res.log(name + '.capture.log')[-300:]),
                 info='segments (rate:frames) %s' % s.get('capture_segments')):
        return None
    a = systest.analyse(ref, rate, cap)
    a['ref_rate'] = rate
    print('     %s: %s' % (name, systest.fmt_analysis(a)), flush=True)
    if not check('%s: the link runs at the file\'s rate (%d Hz, %d channels)' % (name, rate, 2),
                 a['rate'] == rate and a['channels'] == 2,
                 'sink got %s Hz, %s channels (segments %s)' % (
                     a['rate'], a['channels'], s.get('capture_segments'))):
        return a
    lags.append(a['lag'])
    check('%s: aligned at one constant lag' % name, a['stable'] and 0 <= a['lag'] < rate // 10,
          'lag %s; piecewise (t s, lag) %s: a change is audio lost or repeated; '
          'plugin said: %s' % (a['lag'], a['lag_changes'][:8], err[-200:]),
          info='%d frames (%.2f ms) all through' % (a['lag'], 1000.0 * a['lag'] / rate))
    check('%s: SNR >= %g dB' % (name, min_snr), a['snr_db'] >= min_snr,
          'SNR %.1f dB' % a['snr_db'])
    check('%s: the whole signal arrived' % name, a['complete'] and a['extra_s'] < 1.0,
          '%d frames after a lag of %d, %d played; %.2f s beyond the signal'
          % (a['frames'], a['lag'], a['ref_frames'], a['extra_s']))
    check('%s: no gaps' % name, not a['gaps'], 'silent runs (s, ms): %s' % a['gaps'][:5])
    p = a['pacing'] or {}
    check('%s: the audio arrived in real time' % name,
          p and p['pacing_ms'] < 150 and abs(p['arrival_span_s'] - p['audio_s']) < 0.15 + 0.02 * dur,
          'arrival strays up to %.0f ms from a steady clock; %.2f s of audio over %.2f s'
          % (p.get('pacing_ms', -1), p.get('audio_s', -1), p.get('arrival_span_s', -1)))
    # aplay: opening (connect, configure, acquire) + the audio in real time + drain
    start, first = f(s.get('aplay_start')), f(s.get('capture_first_data_uptime'))
    end = f(s.get('aplay_end'))
    opening, playing = first - start, end - first
    check('%s: aplay took the audio\'s duration (%.2f s) after opening' % (name, dur),
          dur - 0.1 <= playing <= dur + 1.0 and opening < 10,
          'opening %.2f s, first audio at the sink to aplay\'s exit %.2f s, aplay %.2f s in all'
          % (opening, playing, f(s.get('aplay_s'))))
    a['opening_s'], a['playing_s'], a['aplay_s'] = opening, playing, f(s.get('aplay_s'))
    return a


def check_pipewire(build):
    """Our PCM on hci0 -> PipeWire 0.3.65 + WirePlumber as the A2DP sink on hci1.
    PipeWire's bluez input is rate-matched to its graph (not sample-exact) and
    pw-record can only start once that node exists, so this checks that the
    sweep arrived in order and in time, window by window, not an SNR."""
    run = systest.Run(build)
    ref = audio.sweep(48000, 5.0)
    run.pwplay('pw', ref, 48000)
    print('pipewire share: %s' % run.share, flush=True)
    try:
        res = run.boot(env={'SINK': 'pipewire'})
    except vm.VMError as e:
        check('pipewire: VM', False, str(e))
        return None
    s = res.step('pwplay')
    if not check('pipewire: stack with PipeWire + WirePlumber as the sink, paired',
                 res.step_rc('stack') == 0 and res.step('pair').get('warmup') == 'ok',
                 '%s %s; %s' % (res.step('stack'), res.step('pair'), res.guest_log()[-400:]),
                 info=''):
        return res
    check('pipewire: aplay -D bluetooth to PipeWire\'s sink exits 0', s.get('aplay_rc') == '0',
          'rc %s: %s' % (s.get('aplay_rc'), res.log('pw.aplay.err')[-300:]), info='')
    cap = os.path.join(res.share, 'captures', 'pw.wav')
    got = None
    if os.path.exists(cap):
        try:
            got, rate = audio.read_wav(cap)
        except Exception:
            got = None
    if not check('pipewire: pw-record got audio from PipeWire\'s bluez input',
                 got is not None and len(got) > 48000 // 2,
                 '%s; %s' % (res.log('pw.pw-node').strip(), res.log('pw.pw-record.log')[-300:]),
                 info='%.2f s' % (len(got) / 48000.0) if got is not None else ''):
        return res
    wins = systest.follow_windows(ref, got, 48000)
    inner = wins[1:]          # the first window may be partial
    steps = [b[1] - a[1] for a, b in zip(inner, inner[1:])]
    ok = len(inner) >= 3 and all(c >= 0.8 for _, _, c in inner) and \
        all(abs(d - 0.25) < 0.01 for d in steps)
    check('pipewire: the sweep arrived in order and in time (0.25 s windows)', ok,
          '(heard at s, found in the sweep at s, correlation): %s' % ', '.join(
              '(%.2f, %.3f, %.2f)' % w for w in wins[:12]))
    print('     pipewire: %d windows, from %.2f s of the sweep on (pw-record started late), '
          'correlation %.2f..%.2f' % (len(wins), wins[0][1] if wins else -1,
                                      min(c for _, _, c in inner) if inner else 0,
                                      max(c for _, _, c in inner) if inner else 0), flush=True)
    if not _failed and not os.environ.get('ALSABT_KEEP_TMP'):
        run.cleanup()
    return res


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    build = os.path.abspath(sys.argv[1])
    t_start = time.monotonic()
    for so in ('libasound_module_pcm_bluetooth.so', 'libasound_module_ctl_bluetooth.so'):
        if not os.path.exists(os.path.join(build, so)):
            cannot_run('%s/%s is missing: run make first' % (build, so))
    miss = systest.missing_programs()
    if miss:
        cannot_run('missing on this machine: %s (run tests/system/install-deps)' % ', '.join(miss))
    try:
        t0 = time.monotonic()
        vm.prepare()
        prep_s = time.monotonic() - t0
    except vm.VMError as e:
        cannot_run(str(e))

    run = systest.Run(build)
    sweep = audio.sweep(44100, 4.0)
    noise = audio.noise(48000, 3.0)
    raw = audio.sweep(48000, 2.0)
    vol = audio.sweep(44100, 14.0, amp=0.3)
    run.play('sweep', sweep, 44100)
    run.play('noise', noise, 48000)
    run.play('raw', raw, 48000, device='bluetooth_raw:' + systest.DEVARGS)
    run.volume('vol', vol, 44100)
    print('share (logs, captures): %s' % run.share, flush=True)
    try:
        res = run.boot()
    except vm.VMError as e:
        cannot_run(str(e))
    v = res.vm
    if v.guest_rc is None:
        print(v.console[-3000:])
        cannot_run('the VM did not run the tests (%r); console above, share %s' % (v, run.share))
    check('vm: booted and ran the guest script', True,
          'root filesystem ready %.2f s after the kernel started; guest rc %s; %.1f s in all'
          % (res.root_ready_s or -1, v.guest_rc, v.elapsed))

    st = res.step('stack')
    check('stack: bluetooth modules, dbus, btvirt hci0+hci1, bluetoothd, bluez-alsa, agent',
          res.step_rc('stack') == 0, '%s; guest log: %s' % (st, res.guest_log()[-500:]),
          info=', '.join('%s %s' % kv for kv in st.items()))
    pr = res.step('pair')
    check('pair: hci0 paired with hci1 (Just Works), trusted both ways',
          pr.get('paired') == 'yes', '%s; %s' % (pr, res.log('pair.log')[-500:]),
          info='discovered in %s s, paired in %s s' % (pr.get('discovered_s'), pr.get('paired_s')))
    warm = ', '.join('%s %s' % (k[len('warmup_'):], v) for k, v in pr.items()
                     if k.startswith('warmup_'))
    check('pair: A2DP warm-up (BlueZ 5.66 workarounds) connected both ways',
          pr.get('warmup') == 'ok', warm)

    lags = []
    results = {}
    results['sweep'] = check_play(res, 'sweep', sweep, 44100, 60, lags)
    results['noise'] = check_play(res, 'noise', noise, 48000, 9, lags)
    results['raw'] = check_play(res, 'raw', raw, 48000, 60, lags)
    if lags:
        check('the lag is the same in every stream (%s frames)' % sorted(set(lags)),
              len(set(lags)) == 1, 'lags %s' % lags)

    vo = res.step('volume')
    err = res.log('volume.aplay.err').strip().replace('\n', ' | ')
    check('volume: aplay exits 0', vo.get('aplay_rc') == '0',
          'rc %s: %s' % (vo.get('aplay_rc'), err[-300:]), info='')
    check('volume: the speaker has AVRCP absolute volume (source transport Volume)',
          vo.get('source_volume_initial', 'None') not in ('None', ''),
          'after %s s: %s' % (vo.get('source_volume_after_s'), vo.get('error', '')))
    check('volume: amixer -D bluetooth cset 50 -> the sink\'s transport Volume 50',
          vo.get('amixer_cset_rc') == '0' and vo.get('to_sink_transport') == '50',
          'amixer rc %s; sink transport went %s; %s s after amixer returned (amixer took %s s)'
          % (vo.get('amixer_cset_rc'), vo.get('to_sink_transport_seen'),
             vo.get('to_sink_after_amixer_s'), vo.get('amixer_cset_s')))
    check('volume: bluez-alsa reports the new volume (50)', vo.get('to_sink_bluealsa') == '50',
          'bluez-alsa PCM volume went %s' % vo.get('to_sink_bluealsa_seen'))
    check('volume: the sink sets 100 -> the source transport follows',
          vo.get('to_source_transport') == '100',
          'set: %s; source transport went %s in %s s' % (
              vo.get('sink_set_rc'), vo.get('to_source_transport_seen'),
              vo.get('to_source_transport_s')))
    check('volume: ... and amixer -D bluetooth cget shows 100', vo.get('to_source_ctl') == '100',
          'amixer cget went %s; %s s after the sink\'s change' % (
              vo.get('to_source_ctl_seen'), vo.get('to_source_s')))
    cap = os.path.join(res.share, 'captures', 'volume.wav')
    if check('volume: the sink received the stream', os.path.exists(cap), vo.get('capture_error', '')):
        a = systest.analyse(vol, 44100, cap)
        a['ref_rate'] = 44100
        print('     volume: %s' % systest.fmt_analysis(a), flush=True)
        check('volume: AVRCP volume leaves the samples alone (no software gain), no loss',
              a.get('lag') is not None and a['stable'] and a['snr_db'] >= 60,
              systest.fmt_analysis(a))

    # PipeWire as the sink: a second boot (see guest/run.sh start_pipewire).
    pw = None
    if os.environ.get('ALSABT_SYSTEM_PIPEWIRE', '1') != '0':
        if os.path.exists('/usr/bin/pipewire') and os.path.exists('/usr/bin/wireplumber') and \
                os.path.exists('/usr/lib/x86_64-linux-gnu/spa-0.2/bluez5/libspa-bluez5.so'):
            pw = check_pipewire(build)
        else:
            print('NOTE pipewire: not installed (pipewire wireplumber libspa-0.2-bluetooth '
                  'pipewire-bin): the PipeWire sink was not tried', flush=True)

    # Times
    print('--- times (TCG, %s)' % ' '.join(vm.accel()), flush=True)
    print('     kernel + initramfs ready in %.1f s (cached)' % prep_s)
    print('     boot: root filesystem ready %.2f s after the kernel started' % (res.root_ready_s or -1))
    for name, rc, a0, a1 in res.steps:
        print('     step %-8s %6.1f s  (rc %d)' % (name, a1 - a0, rc))
    for name in ('sweep', 'noise', 'raw'):
        a = results.get(name)
        if a and 'opening_s' in a:
            print('     %s: aplay %.2f s = opening %.2f s + %.2f s from the first audio at the '
                  'sink to exit (audio %.2f s)' % (name, a['aplay_s'], a['opening_s'],
                                                  a['playing_s'], a['ref_frames'] / float(a['rate'])))
    if pw:
        print('     pipewire boot: VM %.1f s (%s)' % (pw.vm.elapsed, ', '.join(
            '%s %.1f s' % (n, b - a) for n, _, a, b in pw.steps)))
    print('     VM %.1f s; whole suite %.1f s' % (v.elapsed, time.monotonic() - t_start), flush=True)

    if _failed or os.environ.get('ALSABT_KEEP_TMP'):
        print('kept %s (guest.log, console.log, logs/, captures/, steps/)' % run.share)
    else:
        run.cleanup()
    finish()


if __name__ == '__main__':
    main()
