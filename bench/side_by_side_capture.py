"""make bench, section 6, the receive direction: alsa-bt's capture and
bluez-alsa's side by side on the real stack, in one VM (tests/system), with
QEMU counting instructions (-icount shift=0), as side_by_side.py does for
playback.

In one boot of Debian 12's stack, hci1's bluez-alsa 4.0 (-p a2dp-source)
is the phone: it plays 8 s of 44.1 kHz stereo noise (aplay -D bluealsa:,
SBC) and the receiver on hci0 records it:

  rx_null      arecord -D null, 5 s and 1 s      (the floor: arecord itself)
  rx_decoder   bench_encode decode, libsbc alone  (the floor: the SBC decoder)
  rx_alsabt    arecord -D bluetooth:...,CODEC=sbc (our capture, one process;
               its open connects the phone's A2DP Source)
  rx_bluealsa  arecord -D bluealsa:... + bluez-alsa's sink daemon on hci0
               (-p a2dp-sink -B source --a2dp-force-audio-cd: the bus name
               bench-bus.conf lets root send to, the link at 44.1 kHz as
               ours; hci0 connects the phone's A2DP Source for it with
               Device1.ConnectProfile)

Each receiver records until the phone's aplay has ended and then gets
SIGINT; each receiving run opens from the same state (the devices
disconnected). CPU per cgroup (guest/run.sh step_rxcpu): arecord in
"player", bluez-alsa's sink daemon in "daemon", btvirt in "radio",
bluetoothd in "bluez", the phone's bluez-alsa in "sink" (the phone's aplay
in no counted group): the phone is not in the path. The groups are also
read 3.5 s and 6.5 s after the phone's aplay started (guest/run.sh
RX_FROM_S, RX_TO_S): the steady window, the streaming alone (the phone's
aplay takes 1.3-2.3 s to start streaming, then streams 8 s). What each receiver recorded is compared with what the
phone played (lag, SNR, gaps); ours delivers silence from its open until
the phone's audio arrives (ON_PAUSE=silence, the default), so the
comparison searches the whole recording for the start.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import side_by_side as sbs                   # noqa: E402
from side_by_side import systest, audio     # noqa: E402

RATE = sbs.RATE
PHONE_S = 8                    # the phone's noise
LONG_S, SHORT_S = 5, 1         # arecord -D null
RUNS = [('rx_null_5', 'rx_null', LONG_S), ('rx_null_1', 'rx_null', SHORT_S),
        ('rx_decoder', 'rx_decoder', PHONE_S),
        ('rx_alsabt', 'rx_alsabt', PHONE_S), ('rx_alsabt_b', 'rx_alsabt', PHONE_S),
        # last: once its sink endpoint is registered on hci0, BlueZ could
        # hand the phone's stream to it rather than to ours
        ('rx_bluealsa', 'rx_bluealsa', PHONE_S), ('rx_bluealsa_b', 'rx_bluealsa', PHONE_S)]
# hci1 plays the phone as well as the speaker (test_system.py's codecs boot)
ENV = {'BUS_CONF': 'bench-bus.conf', 'BLUEALSA_ARGS': '-p a2dp-source', 'PHONE': '1'}


def analyse_received(sig, cap):
    """The analysis of a receiver's recording, which may be cut short."""
    try:
        got, _ = audio.read_wav(cap)
        a = systest.analyse(sig, RATE, cap, search_s=max(1.0, len(got) / float(RATE) - 1.0))
        a['rec_s'] = len(got) / float(RATE)
        return a
    except Exception as e:          # a truncated file: say so
        return {'lag': None, 'error': repr(e)}


def measure(build, keep=False, share=None):
    """Boots the VM once; {name: result} as side_by_side.measure, plus the
    step's own key/values (st) and for the receivers the analysis."""
    run = systest.Run(build, share=share, steps=('stack', 'pair'))
    try:
        out = sbs.run_all(run, share, ENV, RUNS, run.rxcpu, ('rx_alsabt', 'rx_bluealsa'),
                          analyse_received)
        out['_share'] = run.share
        return out
    finally:
        if not keep and not share:
            run.cleanup()


def _f(v, default=float('nan')):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def summarise(m):
    """Per path (arecord, and bluez-alsa's daemon): CPU per second of the
    phone's audio over a whole run and in the steady window; beyond the
    floor (arecord -D null steady + libsbc's decoder); where it goes."""
    nan = float('nan')

    def window(run, g):
        w = m[run].get('window')
        return w[g] if w else nan

    def steady(run):
        return window(run, 'player') + window(run, 'daemon')

    def path(run):
        a = sbs._aplay(m[run])
        return (a['cpu'] if a else nan) + m[run]['groups']['daemon']

    dec = m['rx_decoder']['player']
    dec_ms = 1000.0 * _f(dec.get('lib_cpu_per_audio')) if dec else None
    dec_table_ms = 1000.0 * _f(dec.get('table_cpu_per_audio')) if dec else None
    n5, n1 = sbs._aplay(m['rx_null_5']), sbs._aplay(m['rx_null_1'])
    s = {'null_whole': n5['cpu'] / LONG_S if n5 else nan,
         'null_steady': (n5['cpu'] - n1['cpu']) / float(LONG_S - SHORT_S) if n5 and n1 else nan,
         'decoder': dec_ms, 'decoder_table': dec_table_ms, 'paths': {}}
    s['floor_whole'] = s['null_whole'] + (dec_ms or 0.0)
    s['floor'] = s['null_steady'] + (dec_ms or 0.0)
    for kind in ('rx_alsabt', 'rx_bluealsa'):
        runs = (kind, kind + '_b')
        p = {'whole': [path(n) / PHONE_S for n in runs],
             'steady': [steady(n) for n in runs],
             'fixed': [path(n) - PHONE_S * steady(n) for n in runs],
             'arecord': {'cpu': window(runs[0], 'player'), 'csw': window(runs[0], 'csw')},
             'daemon': window(runs[0], 'daemon'),
             'others': {g: window(runs[0], g) for g in ('radio', 'bluez', 'sink')},
             'audio': [m[n].get('analysis') for n in runs],
             'conf': ['%s at %s Hz' % (m[n]['st'].get('transport_conf') or '?',
                                       m[n]['st'].get('phone_rate', '?')) for n in runs],
             # arecord exits 1 on SIGINT (sent once the phone was done)
             'sigint': [bool(m[n]['st'].get('arecord_sigint')) for n in runs],
             'status': [m[n]['player'].get('status', '?') for n in runs],
             'rc': [m[n]['rc'] for n in runs],
             'errors': [m[n]['error'] for n in runs if m[n]['error']]}
        p['beyond'] = [w - s['floor'] for w in p['steady']]
        # ours: when the phone's audio reached the capture (its clock starts
        # about when the stream is configured; the audio after lag frames),
        # against the window, in guest seconds after the phone's aplay started
        p['timing'] = []
        for n in runs:
            st, an = m[n]['st'], m[n].get('analysis') or {}
            t0 = _f(st.get('phone_start'))
            arr = (_f(st.get('capture_configured')) + an['lag'] / float(RATE) - t0
                   if kind == 'rx_alsabt' and an.get('lag') is not None else nan)
            p['timing'].append((arr, _f(st.get('mid1_t')) - t0, _f(st.get('mid2_t')) - t0))
        s['paths'][kind] = p
    a, b = s['paths']['rx_alsabt'], s['paths']['rx_bluealsa']
    s['ratio'] = a['whole'][0] / b['whole'][0] if b['whole'][0] else None
    s['steady_ratio'] = a['steady'][0] / b['steady'][0] if b['steady'][0] > 0 else None
    s['beyond_ratio'] = a['beyond'][0] / b['beyond'][0] if b['beyond'][0] > 0 else None
    return s


def _audio(a):
    if not a or a.get('lag') is None:
        return 'no audio analysed' + (' (%s)' % a['error'] if a and a.get('error') else '')
    # the last window has no match when the recording ends inside it
    lags = set(l for _, l in a.get('lag_changes', []) if l is not None)
    got = min(a['frames'] - max(a['lag'], 0), a['ref_frames']) / float(RATE)
    return 'from %.2f s of %.1f s: %.2f s of the phone\'s %.2f s, SNR %.1f dB, %s, gaps %s' % (
        a['lag'] / float(RATE), a.get('rec_s', 0), got, a['ref_frames'] / float(RATE), a['snr_db'],
        'one lag' if lags == {a['lag']} else 'lags %s' % a.get('lag_changes', [])[:4],
        'none' if not a['gaps'] else len(a['gaps']))


def report(s):
    """Lines of section 6 (receive) for bench.py's report."""
    ms = '%.2f ms'
    lines = ['6b. Receiving side by side with bluez-alsa, real stack in the VM, instructions counted',
             '   (Debian 12 stack; hci1\'s bluez-alsa plays the phone, 8 s of 44.1 kHz stereo '
             'noise, SBC; CPU of arecord and of its path\'s daemon per second of audio)', '']
    paths = (('rx_bluealsa', 'arecord <- bluez-alsa plugin + daemon'),
             ('rx_alsabt', 'arecord <- alsa-bt, CODEC=sbc'))
    rows = [('path', 'whole run', 'again', 'steady (3.5-6.5 s)', 'again', 'steady beyond the floor',
             'open + close, a run', 'what it recorded')]
    for kind, label in paths:
        p = s['paths'][kind]
        rows.append((label, ms % p['whole'][0], ms % p['whole'][1], ms % p['steady'][0],
                     ms % p['steady'][1], ms % p['beyond'][0],
                     '%.1f / %.1f ms' % tuple(p['fixed']), _audio(p['audio'][0])))
    rows.append(('floor: arecord -D null + libsbc decode', ms % s['floor_whole'], '',
                 ms % s['floor'], '', '', '',
                 'arecord -D null %.2f (steady %.2f) + libsbc %s (our codec table %s)' % (
                     s['null_whole'], s['null_steady'],
                     ms % s['decoder'] if s['decoder'] is not None else '?',
                     ms % s['decoder_table'] if s['decoder_table'] is not None else '?')))
    lines += _table(rows)
    lines.append('')
    for kind, label in paths:
        p = s['paths'][kind]
        lines.append('   %s: second run %s; SBC configuration %s' % (
            label, _audio(p['audio'][1]), ' / '.join(p['conf'])))
        if kind == 'rx_alsabt':
            lines.append('     the phone\'s audio reached the capture ~%s s after the phone\'s aplay '
                         'started; the window was %s s after it' % (
                             ' / '.join('%.2f' % t[0] for t in p['timing']),
                             ' / '.join('%.2f-%.2f' % t[1:] for t in p['timing'])))
    lines.append('')
    if s['ratio']:
        lines.append('   alsa-bt / bluez-alsa: %.2fx over a whole run; steady %s; steady beyond the floor %s'
                     % (s['ratio'], '%.2fx' % s['steady_ratio'] if s['steady_ratio'] else '-',
                        '%.2fx' % s['beyond_ratio'] if s['beyond_ratio'] else '-'))
    lines += ['', '   Where it goes, steady state per second of audio:']
    rows = [('path', 'arecord', 'arecord\'s context switches', 'daemon', 'btvirt', 'bluetoothd',
             'phone (hci1 bluez-alsa, not in the path)')]
    for kind, label in paths:
        p = s['paths'][kind]
        rows.append((label, ms % p['arecord']['cpu'], '%.0f' % p['arecord']['csw'],
                     ms % p['daemon'], ms % p['others']['radio'], ms % p['others']['bluez'],
                     ms % p['others']['sink']))
    lines += _table(rows)
    for kind, _ in paths:
        p = s['paths'][kind]
        if p['errors'] or any(rc != 0 for rc in p['rc']):
            lines.append('   %s: FAILED runs: rc %s %s' % (kind, p['rc'], p['errors']))
        if any(st != '0' and not sig for st, sig in zip(p['status'], p['sigint'])):
            lines.append('   %s: arecord\'s exit status %s, not ended by SIGINT' % (kind, p['status']))
    return lines


_table = sbs._table


if __name__ == '__main__':
    # python3 bench/side_by_side_capture.py [BUILD] [--keep | --share DIR]
    result = measure(**sbs.command_line(sys.argv[1:]))
    print('share: %s' % result.pop('_share'))
    print('\n'.join(report(summarise(result))))
