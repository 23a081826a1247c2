"""Compact timeline of a `dbus-monitor --system` log (run with /usr/bin/python3).

    python3 tests/system/dbus_timeline.py LOG [REGEX]

One line per message: seconds since the first message, type, sender ->
destination, path, interface.member (or error name), and the first string
arguments.  Lines not matching REGEX (if given) are left out.  Used to read
the D-Bus conversation of a system-test run (logs/dbus-monitor.log).
"""
import re
import sys

HEAD = re.compile(r'^(method call|method return|error|signal) time=([0-9.]+) sender=(\S+) -> '
                  r'destination=(\S+)(.*)$')


def timeline(path):
    t0 = None
    cur = None
    with open(path, errors='replace') as f:
        for line in f:
            m = HEAD.match(line)
            if m:
                if cur:
                    yield cur
                kind, t, snd, dst, rest = m.groups()
                t = float(t)
                t0 = t if t0 is None else t0
                fields = dict(re.findall(r'(\w+)=(\S+)', rest))
                what = ''
                if kind in ('method call', 'signal'):
                    what = '%s %s.%s' % (fields.get('path', ''), fields.get('interface', ''),
                                         fields.get('member', ''))
                elif kind == 'error':
                    what = '%s (reply to %s)' % (fields.get('error_name', ''),
                                                 fields.get('reply_serial', ''))
                else:
                    what = '(reply to %s)' % fields.get('reply_serial', '')
                cur = ['%9.3f %-13s %s -> %s serial=%s %s' % (t - t0, kind, snd, dst,
                                                             fields.get('serial', '?'), what), []]
            elif cur is not None:
                s = re.match(r'^\s+(?:string|object path) "(.*)"$', line)
                if s and len(cur[1]) < 4:
                    cur[1].append(s.group(1))
                u = re.match(r'^\s+(?:uint16|byte|int16|uint32|boolean) (\S+)$', line)
                if u and len(cur[1]) < 4:
                    cur[1].append(u.group(1))
    if cur:
        yield cur


if __name__ == '__main__':
    rx = re.compile(sys.argv[2]) if len(sys.argv) > 2 else None
    for head, args in timeline(sys.argv[1]):
        line = head + ('  [' + ', '.join(args) + ']' if args else '')
        if rx is None or rx.search(line):
            print(line)
