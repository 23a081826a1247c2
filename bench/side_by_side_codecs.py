"""bench/side_by_side.py for aptX and aptX HD: alsa-bt and bluez-alsa side by
side on the real stack, in one VM, instructions counted (-icount).

Debian 12's bluez-alsa 4.0 does SBC only; this boots the "unstable" stack
(Debian unstable's BlueZ and bluez-alsa 4.3, libfreeaptx) once, hci1's
bluez-alsa sink taking aptX and aptX HD (BLUEALSA_ARGS), and for each codec
plays the same 44.1 kHz stereo noise through

  encoder_C   bench_encode codecs --codec C (libfreeaptx alone: the floor)
  alsabt_C    aplay -D bluetooth:...,MIX=0,CODEC=C  (our plugin, alone)
  bluealsa_C  aplay -D bluealsa:...,CODEC=aptX|aptX-HD + bluez-alsa's source
              daemon on hci0 (-c aptX -c aptX-HD)

plus aplay -D null (5 s and 1 s) once. Figures as side_by_side.py's: the
steady window (1.5-4.5 s) in CPU ms per second of audio, beyond the floor
(aplay to null + the bare encoder), and the audio at the speaker.

  python3 bench/side_by_side_codecs.py [BUILD] [--keep | --share DIR]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'system'))

import systest                               # noqa: E402
import side_by_side as sbs                   # noqa: E402
from side_by_side import LONG_S, SHORT_S       # noqa: E402

CODECS = ('aptx', 'aptx_hd')
LABEL = {'aptx': 'aptX', 'aptx_hd': 'aptX HD'}
# bluez-alsa last for each codec (its daemon stays up once started, and its
# endpoint would take the speaker's stream from ours): all of ours first.
RUNS = ([('null_5', 'null', LONG_S), ('null_1', 'null', SHORT_S)] +
        [('encoder_%s_5' % c, 'encoder_' + c, LONG_S) for c in CODECS] +
        [('alsabt_%s_5%s' % (c, x), 'alsabt_' + c, LONG_S) for c in CODECS for x in ('', 'b')] +
        [('bluealsa_%s_5%s' % (c, x), 'bluealsa_' + c, LONG_S) for c in CODECS for x in ('', 'b')])
ENV = {'BUS_CONF': 'bench-bus.conf', 'BLUEALSA_ARGS': '-c aptX -c aptX-HD'}


def measure(build, keep=False, share=None):
    """Boots the unstable stack once; {name: result} as side_by_side.measure."""
    run = systest.Run(build, share=share, steps=('stack', 'pair'), stack='unstable')
    try:
        out = sbs.run_all(run, share, ENV, RUNS, run.cpu,
                          ['%s_%s' % (who, c) for who in ('alsabt', 'bluealsa') for c in CODECS])
        out['_share'] = run.share
        return out
    finally:
        if not keep and not share:
            run.cleanup()


def summarise(m):
    nan = float('nan')
    span = float(LONG_S - SHORT_S)
    null5, null1 = sbs._aplay(m['null_5']), sbs._aplay(m['null_1'])
    s = {'null_steady': (null5['cpu'] - null1['cpu']) / span if null5 and null1 else nan,
         'codecs': {}, 'share': m.get('_share')}

    def steady(n):
        w = m[n].get('window')
        return w['player'] + w['daemon'] if w else nan

    for c in CODECS:
        enc = m['encoder_%s_5' % c]['player']
        try:
            enc_ms = 1000.0 * float(enc['lib_cpu_per_audio'])
        except (KeyError, ValueError):
            enc_ms = nan
        # no encoder figure (bench_encode did not run): the floor is aplay's alone
        cs = {'encoder': enc_ms, 'floor': s['null_steady'] + (0.0 if enc_ms != enc_ms else enc_ms),
              'encoder_rc': m['encoder_%s_5' % c]['rc'], 'paths': {}}
        for who in ('alsabt', 'bluealsa'):
            runs = ('%s_%s_5' % (who, c), '%s_%s_5b' % (who, c))
            p = {'steady': [steady(n) for n in runs],
                 'audio': [m[n].get('analysis') for n in runs],
                 'rc': [m[n]['rc'] for n in runs],
                 'errors': [m[n]['error'] for n in runs if m[n]['error']]}
            p['beyond'] = [w - cs['floor'] for w in p['steady']]
            cs['paths'][who] = p
        a, b = cs['paths']['alsabt'], cs['paths']['bluealsa']
        cs['ratio'] = a['steady'][0] / b['steady'][0] if b['steady'][0] > 0 else None
        cs['beyond_ratio'] = a['beyond'][0] / b['beyond'][0] if b['beyond'][0] > 0 else None
        s['codecs'][c] = cs
    return s


def report(s):
    ms = '%.2f ms'
    lines = ['6d. Side by side with bluez-alsa, aptX and aptX HD, real stack in the VM, '
             'instructions counted',
             '   (unstable stack, bluez-alsa 4.3; steady window 1.5-4.5 s, CPU of aplay and of its '
             'path\'s daemon per second of 44.1 kHz stereo noise)', '']
    for c in CODECS:
        cs = s['codecs'][c]
        rows = [('%s path' % LABEL[c], 'steady', 'again', 'beyond the floor', 'again',
                 'audio at the speaker', 'again')]
        for who, label in (('bluealsa', 'aplay -> bluez-alsa plugin + daemon'),
                           ('alsabt', 'aplay -> alsa-bt, MIX=0')):
            p = cs['paths'][who]
            rows.append((label, ms % p['steady'][0], ms % p['steady'][1], ms % p['beyond'][0],
                         ms % p['beyond'][1], sbs._audio(p['audio'][0]), sbs._audio(p['audio'][1])))
        rows.append(('floor: aplay -D null + libfreeaptx alone', ms % cs['floor'], '', '', '',
                     'aplay -D null steady %.2f + encoder %.2f ms (rc %s)' % (
                         s['null_steady'], cs['encoder'], cs['encoder_rc']), ''))
        lines += sbs._table(rows)
        lines.append('   alsa-bt / bluez-alsa, steady: %s; beyond the floor: %s' % (
            '%.2fx' % cs['ratio'] if cs['ratio'] else '-',
            '%.2fx' % cs['beyond_ratio'] if cs['beyond_ratio'] else '-'))
        for who in ('alsabt', 'bluealsa'):
            p = cs['paths'][who]
            if p['errors'] or any(rc != 0 for rc in p['rc']):
                lines.append('   %s %s: FAILED runs: rc %s %s' % (who, c, p['rc'], p['errors']))
        lines.append('')
    if s.get('share'):
        lines.append('   share: %s' % s['share'])
    return lines


if __name__ == '__main__':
    # python3 bench/side_by_side_codecs.py [BUILD] [--keep | --share DIR]
    print('\n'.join(report(summarise(measure(**sbs.command_line(sys.argv[1:]))))))
