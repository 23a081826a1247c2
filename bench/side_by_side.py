"""make bench, section 6: alsa-bt and bluez-alsa side by side on the real
stack, in one VM (tests/system), with QEMU counting instructions (-icount
shift=0: one guest nanosecond per instruction), so that a CPU figure repeats
run to run instead of following the host's load.

In one boot of Debian 12's stack (kernel, bluetoothd, btvirt's two emulated
controllers, bluez-alsa 4.0 as the speaker on hci1), the same 44.1 kHz
stereo noise is played

  null      aplay -D null                    (the floor: aplay itself)
  encoder   bench_encode, libsbc alone        (the floor: the SBC encoder)
  alsabt    aplay -D bluetooth:...            (our plugin, one process)
  alsabt_sbc the same with CODEC=sbc          (no other codec's library)
  alsabt_mix aplay -D bluetooth:... as a user types it: MIX=1, the
            default, so a mixing process (in the player's group) streams
  bluealsa  aplay -D bluealsa:... + bluez-alsa's source daemon on hci0

and each process's CPU is read from cgroup v2 (guest/run.sh step_cpu): the
player's group holds aplay and, for bluez-alsa, its daemon. Each path plays
5 s twice; the groups are also read 1.5 s and 4.5 s into each play, and
that 3 s window is the streaming alone (the steady state), without opening,
closing or the drain. aplay to null is not paced, so its floor is the
difference of a 5 s and a 1 s run. What reached the speaker is recorded and compared with what
was played (lag, SNR, gaps), so both paths are held to the same audio.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'system'))

import systest                               # noqa: E402
from systest import audio, vm                # noqa: E402

RATE = 44100
LONG_S, SHORT_S = 5, 1
GROUPS = ('player', 'daemon', 'radio', 'bluez', 'sink')
# (step name, kind, seconds): bluez-alsa last, as its daemon stays up once
# started and its endpoint would take the speaker's stream from ours.
RUNS = [('null_5', 'null', LONG_S), ('null_1', 'null', SHORT_S),
        ('encoder_5', 'encoder', LONG_S),
        ('alsabt_5', 'alsabt', LONG_S), ('alsabt_5b', 'alsabt', LONG_S),
        ('alsabt_sbc_5', 'alsabt_sbc', LONG_S), ('alsabt_sbc_5b', 'alsabt_sbc', LONG_S),
        ('alsabt_mix_5', 'alsabt_mix', LONG_S), ('alsabt_mix_5b', 'alsabt_mix', LONG_S),
        ('bluealsa_5', 'bluealsa', LONG_S), ('bluealsa_5b', 'bluealsa', LONG_S)]
WINDOW_S = 4.5 - 1.5          # guest/run.sh MID_FROM_S .. MID_TO_S
# Under instruction counting the guest runs slower than the host's clock:
# a generous wall-clock budget for the boot.
TIMEOUT_S = 1800


def _usage(step, when):
    """{group: CPU µs} as step_cpu read them before or after the player."""
    out = {}
    for g in GROUPS:
        v = (step.get('%s_%s' % (when, g)) or '0').split()[0]
        out[g] = int(v) if v.isdigit() else 0
    return out


def measure(build, keep=False, share=None):
    """Boots the VM once and returns {name: result}, result a dict: kind,
    seconds, rc, error, groups {group: CPU ms over the run}, player (bench_encode's line: the encoder's figures, or aplay's own
    wait4() figures), analysis (the speaker's audio against what was played,
    for alsabt/bluealsa). Raises RuntimeError when the VM fails. share: a
    share kept by an earlier boot (keep=True), read again without booting."""
    run = systest.Run(build, share=share, steps=('stack', 'pair'))
    try:
        return run_all(run, share, {'BUS_CONF': 'bench-bus.conf'}, RUNS, run.cpu,
                       ('alsabt', 'alsabt_sbc', 'alsabt_mix', 'bluealsa'))
    finally:
        if not keep and not share:
            run.cleanup()


def run_all(run, share, env, runs, add, analysed, analyse=None):
    """Each of runs (name, kind, seconds) as a step of its own noise (add:
    run.cpu or run.rxcpu), one boot (or share read again), and {name:
    step_figures}; for the kinds in analysed, what reached the speaker
    against what was played (analyse(samples, wav), else systest.analyse)."""
    analyse = analyse or (lambda sig, cap: systest.analyse(sig, RATE, cap))
    sigs = {}
    for name, kind, secs in runs:
        sigs[name] = audio.noise(RATE, secs)
        add(name, sigs[name], RATE, kind)
    res = boot(run, share, env)
    out = {}
    for name, kind, secs in runs:
        r = out[name] = step_figures(res, name, kind, secs)
        cap = os.path.join(run.share, 'captures', name + '.wav')
        if kind in analysed and os.path.exists(cap):
            r['analysis'] = analyse(sigs[name], cap)
    return out


def boot(run, share, env):
    """The boot's result, or a kept share's read again (share); RuntimeError
    when the stack did not come up."""
    if share:
        res = systest.Result(share, vm.VMResult(0, 0, 0.0, False, ''), 0.0)
    else:
        res = run.boot(timeout=TIMEOUT_S, icount=True, env=env)
    if res.step_rc('stack') != 0 or res.step_rc('pair') != 0:
        raise RuntimeError('the VM stack did not come up: %s; see %s' % (
            res.step('stack').get('error') or res.step('pair').get('error'), run.share))
    return res


def step_figures(res, name, kind, secs):
    """One step's figures: kind, seconds, rc, error, st (its key/values),
    groups {group: CPU ms over the run}, player (bench_encode's line), and
    window {group: CPU ms per second, csw: the player's switches per
    second} between the sampler's two reads."""
    st = res.step(name)
    before, after = _usage(st, 'before'), _usage(st, 'after')
    r = {'kind': kind, 'seconds': secs, 'rc': res.step_rc(name), 'error': st.get('error'),
         'st': st, 'groups': {g: (after[g] - before[g]) / 1000.0 for g in GROUPS},
         'player': _kv(st.get('player'))}
    if st.get('mid1_csw') and st.get('mid2_csw'):
        m1, m2 = _usage(st, 'mid1'), _usage(st, 'mid2')
        span = WINDOW_S
        for k in ('rt', 't'):       # the shell's clock (µs), else /proc/uptime's (10 ms)
            if st.get('mid1_' + k) and st.get('mid2_' + k):
                span = float(st['mid2_' + k]) - float(st['mid1_' + k])
                break
        r['window'] = {g: (m2[g] - m1[g]) / 1000.0 / span for g in GROUPS}
        r['window']['csw'] = (int(st['mid2_csw']) - int(st['mid1_csw'])) / span
    return r


def _kv(line):
    return dict(f.split('=', 1) for f in (line or '').split() if '=' in f)


def _aplay(r):
    """aplay's own figures from wait4(): CPU ms and context switches."""
    p = r['player']
    try:
        return {'cpu': 1000.0 * (float(p['user_s']) + float(p['sys_s'])),
                'csw': float(p['nvcsw']) + float(p['nivcsw'])}
    except (KeyError, ValueError):
        return None


def _path(r):
    """The path's own CPU (ms) in a run: aplay (wait4) and the daemon's
    group; mixed, the player's group, which holds aplay and the mixing
    process it started (wait4 does not see that one), less bench_encode
    spawn's own start in it."""
    if r['kind'] == 'alsabt_mix':
        return r['groups']['player'] - 1000.0 * float(r['player'].get('self_cpu_s', 'nan'))
    a = _aplay(r)
    return (a['cpu'] if a else float('nan')) + r['groups']['daemon']


def summarise(m):
    """Per path (aplay, and bluez-alsa's daemon): CPU per second of audio
    over a whole 5 s run (both runs) and in the steady state (the window
    1.5-4.5 s into each run); beyond the floor; where it goes (aplay's CPU
    and context switches, the daemon's, the other processes')."""
    span = float(LONG_S - SHORT_S)
    nan = float('nan')

    def window(run, g):
        w = m[run].get('window')
        return w[g] if w else nan

    def steady(run):
        return window(run, 'player') + window(run, 'daemon')

    enc = m['encoder_5']['player']
    enc_ms = (1000.0 * float(enc['cpu_s']) / float(enc['audio_s'])
              if enc.get('cpu_s') and enc.get('audio_s') else None)
    null5, null1 = _aplay(m['null_5']), _aplay(m['null_1'])
    s = {'null_whole': null5['cpu'] / LONG_S if null5 else float('nan'),
         'null_steady': (null5['cpu'] - null1['cpu']) / span if null5 and null1 else float('nan'),
         'encoder': enc_ms, 'paths': {}}
    # aplay to null is not paced: its 5 s and 1 s runs differ by reading
    # and handing over 4 s of audio, which every path does too.
    s['floor_whole'] = s['null_whole'] + (enc_ms or 0.0)
    s['floor'] = s['null_steady'] + (enc_ms or 0.0)
    for kind in ('alsabt', 'alsabt_sbc', 'alsabt_mix', 'bluealsa'):
        runs = (kind + '_5', kind + '_5b')
        p = {'whole': [_path(m[n]) / LONG_S for n in runs],
             'steady': [steady(n) for n in runs],
             # opening and closing: what a 5 s run costs beyond 5 s of the steady state
             'fixed': [_path(m[n]) - LONG_S * steady(n) for n in runs],
             'aplay': {'cpu': window(runs[0], 'player'), 'csw': window(runs[0], 'csw')},
             'daemon': window(runs[0], 'daemon'),
             'others': {g: window(runs[0], g) for g in ('radio', 'bluez', 'sink')},
             'audio': [m[n].get('analysis') for n in runs],
             'rc': [m[n]['rc'] for n in runs],
             'errors': [m[n]['error'] for n in runs if m[n]['error']]}
        p['beyond'] = [w - s['floor'] for w in p['steady']]
        s['paths'][kind] = p
    a, b = s['paths']['alsabt'], s['paths']['bluealsa']
    s['ratio'] = a['whole'][0] / b['whole'][0] if b['whole'][0] else None
    s['beyond_ratio'] = a['beyond'][0] / b['beyond'][0] if b['beyond'][0] > 0 else None
    return s


def _audio(a):
    if not a or a.get('lag') is None:
        return 'no audio analysed'
    return 'lag %d, SNR %.1f dB, gaps %s' % (a['lag'], a['snr_db'], 'none' if not a['gaps'] else
                                             len(a['gaps']))


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ['   ' + '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def report(s):
    """Lines of section 6 for bench.py's report."""
    ms = '%.2f ms'
    lines = ['6. Side by side with bluez-alsa, real stack in the VM, instructions counted',
             '   (Debian 12 stack; CPU of aplay and of its path\'s daemon per second of '
             '44.1 kHz stereo noise, SBC)', '']
    paths = (('bluealsa', 'aplay -> bluez-alsa plugin + daemon'), ('alsabt', 'aplay -> alsa-bt'),
             ('alsabt_sbc', 'aplay -> alsa-bt, CODEC=sbc'),
             ('alsabt_mix', 'aplay -> alsa-bt, mixed (the default)'))
    rows = [('path', 'whole 5 s run', 'again', 'steady (1.5-4.5 s)', 'again',
             'steady beyond the floor', 'open + close, a run', 'audio at the speaker')]
    for kind, label in paths:
        p = s['paths'][kind]
        rows.append((label, ms % p['whole'][0], ms % p['whole'][1], ms % p['steady'][0],
                     ms % p['steady'][1], ms % p['beyond'][0],
                     '%.1f / %.1f ms' % tuple(p['fixed']), _audio(p['audio'][0])))
    rows.append(('floor: aplay -D null + libsbc alone', ms % s['floor_whole'], '', ms % s['floor'],
                 '', '', '', 'aplay -D null %.2f (steady %.2f) + libsbc %s' % (
                     s['null_whole'], s['null_steady'], ms % s['encoder'] if s['encoder'] else '?')))
    lines += _table(rows)
    lines.append('')
    if s['ratio']:
        lines.append('   alsa-bt / bluez-alsa: %.2fx over a whole 5 s run; steady, beyond the floor %s'
                     % (s['ratio'], '%.2fx' % s['beyond_ratio'] if s['beyond_ratio'] else '-'))
    lines += ['', '   Where it goes, steady state per second of audio:']
    rows = [('path', 'aplay', 'aplay\'s context switches', 'daemon', 'btvirt', 'bluetoothd',
             'speaker (bluez-alsa sink)')]
    for kind, label in paths:
        p = s['paths'][kind]
        ap = p['aplay']
        rows.append((label, ms % ap['cpu'], '%.0f' % ap['csw'],
                     ms % p['daemon'], ms % p['others']['radio'],
                     ms % p['others']['bluez'], ms % p['others']['sink']))
    lines += _table(rows)
    for kind, _ in paths:
        p = s['paths'][kind]
        if p['errors'] or any(rc != 0 for rc in p['rc']):
            lines.append('   %s: FAILED runs: rc %s %s' % (kind, p['rc'], p['errors']))
    return lines


def command_line(argv):
    """[BUILD] [--keep | --share DIR] -> measure()'s arguments: --keep leaves
    the VM's share (logs, captures) in /tmp, --share DIR reads such a share
    again instead of booting."""
    args = list(argv)
    share = None
    if '--share' in args:
        i = args.index('--share')
        share = args[i + 1]
        del args[i:i + 2]
    keep = '--keep' in args
    args = [a for a in args if a != '--keep']
    return {'build': os.path.abspath(args[0] if args else os.path.join(REPO, 'build')),
            'keep': keep, 'share': share}


if __name__ == '__main__':
    # python3 bench/side_by_side.py [BUILD] [--keep | --share DIR]: this section alone
    print('\n'.join(report(summarise(measure(**command_line(sys.argv[1:]))))))
