"""make bench, section 6c: where the CPU of each path goes, sampled.

bench/side_by_side.py says how much alsa-bt and bluez-alsa cost beyond the
floor; this says where. In one boot of the same VM (Debian 12's stack,
instruction counted), 22 s of 44.1 kHz stereo noise is played through
alsa-bt alone (MIX=0), alsa-bt mixed (the default: aplay and the mixing
process) and bluez-alsa's plugin and source daemon; during
the streaming (guest/run.sh profile_around) perf traces the packets each
path sends for 2 s, then samples the whole guest on its clock for 12 s: a
sample every 50 us of guest time, which instruction counting makes one
every 50,000 instructions. Each sample of
the path's processes (aplay, our mixing process, bluez-alsa's source
daemon) is put in one place by its call chain: the encoder library, libc's
copies, the rest of user space, or
the kernel by what it was doing (sending a packet, with the part spent
zeroing the buffers it allocates; waiting in poll; a pipe; an eventfd; the
switch to another task at the end of a system call; ...).

Under instruction counting, a string instruction (rep movs, rep stos)
counts once per byte it moves: the copies of the audio and the kernel's
zeroing of each buffer weigh far more here than on a CPU, and on both paths.

    python3 bench/profile_vm.py [BUILD] [--keep | --share DIR]
"""
import bisect
import collections
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import side_by_side as sbs                   # noqa: E402
from side_by_side import systest             # noqa: E402

PLAY_S = 22
RUNS = [('alsabt_profile', 'alsabt_profile', PLAY_S),
        ('alsabt_mix_profile', 'alsabt_mix_profile', PLAY_S),
        ('bluealsa_profile', 'bluealsa_profile', PLAY_S)]   # bluez-alsa last, as in side_by_side
MTU = 672                     # the speaker's (bluez-alsa's sink) in this VM
SAMPLE_NS = 50000             # guest/run.sh profile_around: perf record -c 50000
KERNEL_BASE = 0xffff800000000000

# (place, any of these kernel functions in the chain), the first that
# matches; zeroing is split out of the send path below.
KERNEL_PLACES = [
    ('kernel: sending a packet', ('l2cap_sock_sendmsg', '__sys_sendto', 'sock_write_iter')),
    ('kernel: a pipe (write, read)', ('pipe_write', 'pipe_read')),
    ('kernel: an eventfd (write, read)', ('eventfd_write', 'eventfd_read')),
    ('kernel: waiting in poll', ('do_sys_poll', 'do_epoll_wait')),
    ('kernel: sleeping', ('hrtimer_nanosleep',)),
    ('kernel: the socket queue ioctl', ('__x64_sys_ioctl',)),
    ('kernel: reading the file', ('vfs_read',)),
    ('kernel: switching tasks after a system call', ('schedule', '__schedule')),
    ('kernel: entering and leaving system calls', ('syscall_enter_from_user_mode',
                                                   'syscall_exit_to_user_mode')),
]
ZEROING = 'kernel: of which zeroing new buffers'
COPYING = 'user space: copying and clearing (memcpy, memset)'
PLACES = (['encoder library (libsbc)', COPYING, 'the rest of user space'] +
          [p for p, _ in KERNEL_PLACES[:1]] + [ZEROING] +
          [p for p, _ in KERNEL_PLACES[1:]] + ['kernel: the rest'])


def measure(build, keep=False, share=None):
    """Boots once (or reads a kept share) and returns {name: figures}, each
    side_by_side.step_figures' with 'profile': {place: ms per second}."""
    run = systest.Run(build, share=share, steps=('stack', 'pair'))
    try:
        out = sbs.run_all(run, share, {'BUS_CONF': 'bench-bus.conf'}, RUNS, run.cpu,
                          [k for _, k, _ in RUNS])
        syms = kernel_symbols(os.path.join(run.share, 'profile', 'kallsyms'))
        for name, r in out.items():
            data = os.path.join(run.share, 'profile', name + '.data')
            secs = float(r['st'].get('profile_s') or 0)
            if r['rc'] == 0 and os.path.exists(data) and secs > 0 and syms:
                groups = pids_of(run.share, name)
                r['profile'] = profile(data, set().union(*groups.values()), syms, secs)
                trace = os.path.join(run.share, 'profile', name + '.trace.data')
                if os.path.exists(trace):
                    r['packets'] = packets(trace, groups, float(r['st'].get('trace_s') or 1))
        return out
    finally:
        if not keep and not share:
            run.cleanup()


def summarise(m):
    """What report() reads: measure()'s result as it is (bench.py calls
    each VM section's summarise)."""
    return m


def kernel_symbols(path):
    """([addresses], [names]) of the guest kernel's functions, sorted."""
    if not os.path.exists(path):
        return None
    syms = []
    with open(path) as f:
        for line in f:
            a, t, n = line.split()[:3]
            if t in 'tTwW':
                syms.append((int(a, 16), n))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def pids_of(share, name):
    """{group: pids} of the player's and the daemon's groups during the play."""
    groups = {}
    with open(os.path.join(share, 'profile', name + '.pids')) as f:
        for line in f:
            words = line.split()
            groups[words[0]] = {int(w) for w in words[1:]}
    return groups


def packets(data, groups, secs, mtu=MTU):
    """(packets a second, mean bytes) the path sent: the player's sendto()
    calls, and the daemon's write()s of a packet's size (not its pipe's)."""
    p = subprocess.run(['perf', 'script', '-i', data, '-F', 'pid,event,trace'],
                       capture_output=True, text=True, check=True)
    sizes = []
    for line in p.stdout.splitlines():
        m = re.match(r'\s*(\d+)\s+syscalls:sys_enter_(write|sendto):.*?(?:count|len): (0x[0-9a-f]+)',
                     line)
        if not m:
            continue
        pid, call, n = int(m.group(1)), m.group(2), int(m.group(3), 16)
        if (call == 'sendto' and pid in groups.get('player', ())) or \
           (call == 'write' and pid in groups.get('daemon', ()) and 16 <= n <= mtu):
            sizes.append(n)
    return len(sizes) / secs, (sum(sizes) / len(sizes) if sizes else 0.0)


def chains(data, pids):
    """Each sample of these pids: [(address, dso)], leaf first."""
    p = subprocess.run(['perf', 'script', '-i', data, '-F', 'pid,tid,ip,sym,dso'],
                       capture_output=True, text=True, check=True)
    for block in p.stdout.split('\n\n'):
        lines = block.strip().splitlines()
        if len(lines) < 2 or int(lines[0].split('/')[0]) not in pids:
            continue
        frames = []
        for line in lines[1:]:
            ip, _, rest = line.strip().partition(' ')
            sym, _, dso = rest.rpartition(' ')
            frames.append((int(ip, 16), dso.strip('()'), sym))
        yield frames


def place(frames, syms):
    """Where one sample was (a PLACES name)."""
    ip, dso, sym = frames[0]
    if ip < KERNEL_BASE:
        if 'libsbc' in dso:
            return PLACES[0]
        return COPYING if re.match(r'__(memmove|memcpy|memset)', sym) else 'the rest of user space'
    addrs, names = syms
    kernel = [names[bisect.bisect_right(addrs, a) - 1] for a, _, _ in frames if a >= KERNEL_BASE]
    for where, funcs in KERNEL_PLACES:
        if any(f in kernel for f in funcs):
            if where == KERNEL_PLACES[0][0] and kernel[0].startswith('memset'):
                return ZEROING
            return where
    return 'kernel: the rest'


def profile(data, pids, syms, secs):
    """{place: ms of CPU per second of audio} over the sampled seconds."""
    n = collections.Counter(place(f, syms) for f in chains(data, pids))
    return {p: n[p] * SAMPLE_NS / 1e6 / secs for p in PLACES}


def report(m):
    paths = [('alsa-bt', m.get('alsabt_profile', {})), ('alsa-bt mixed', m.get('alsabt_mix_profile', {})),
             ('bluez-alsa', m.get('bluealsa_profile', {}))]
    secs = max(float(r.get('st', {}).get('profile_s') or 0) for _, r in paths)
    out = ['6c. Where the CPU of each path goes, sampled by perf on the real stack (Debian 12 stack,',
           '    instructions counted; ms per second of audio over %.0f s of streaming)' % secs, '']
    missing = [n for n, r in paths if 'profile' not in r]
    if missing:
        for n, r in paths:
            if 'profile' not in r:
                out.append('   %s: no profile (%s)' % (n, r.get('error') or 'rc %s' % r.get('rc')))
        return out
    rows = [['', 'alsa-bt (aplay, MIX=0)', 'alsa-bt (aplay + mixing process, the default)',
             'bluez-alsa (aplay + source daemon)']]
    for p in PLACES:
        rows.append([p] + ['%.2f ms' % r['profile'][p] for _, r in paths])
    rows.append(['all'] + ['%.2f ms' % sum(r['profile'].values()) for _, r in paths])
    rows.append(['packets sent a second (bytes each)'] +
                ['%.0f (%.0f)' % r['packets'] if r.get('packets') else '?' for _, r in paths])
    out += sbs._table(rows)
    for n, r in paths:
        a = r.get('analysis')
        if a:
            out.append('   %s at the speaker: %s' % (n, sbs._audio(a)))
    return out


if __name__ == '__main__':
    print('\n'.join(report(measure(**sbs.command_line(sys.argv[1:])))))
