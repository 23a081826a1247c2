#!/usr/bin/python3
"""Checks the mock's HFP side and the scripted headset (tests/tools/headset.py)
without the plugin: dbus-python here registers HFP Audio Gateway, takes the
RFCOMM channel from Profile1.NewConnection and plays a minimal AG on it.

Run: /usr/bin/python3 tests/integration/test_headset_selfcheck.py
"""

import os
import select
import socket
import sys
import time

sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, Env, check, finish  # noqa: E402
from test_mock_selfcheck import Client, describe, is_error, spin  # noqa: E402

import dbus  # noqa: E402
import dbus.service  # noqa: E402

HFP_AG = '0000111f-0000-1000-8000-00805f9b34fb'
HFP_HF = '0000111e-0000-1000-8000-00805f9b34fb'
PM = 'org.bluez.ProfileManager1'
PROFILE = 'org.bluez.Profile1'
DEVICE = 'org.bluez.Device1'
HEADSET = '/org/bluez/hci0/dev_00_1B_66_00_00_07'
SPEAKER = '/org/bluez/hci0/dev_00_1B_66_AA_BB_CC'
AG_PATH = '/test/hfp_ag'
HEADSET_PY = os.path.join(REPO, 'tests', 'tools', 'headset.py')


class FakeProfile(dbus.service.Object):
    """Our side of org.bluez.Profile1; records every call."""

    def __init__(self, bus, path):
        super().__init__(bus, path)
        self.log = []

    @dbus.service.method(PROFILE, in_signature='oha{sv}')
    def NewConnection(self, device, fd, props):
        self.log.append(('new', str(device), fd.take(), {str(k): int(v) for k, v in props.items()}))

    @dbus.service.method(PROFILE, in_signature='o')
    def RequestDisconnection(self, device):
        self.log.append(('request', str(device)))

    @dbus.service.method(PROFILE)
    def Release(self):
        self.log.append(('release',))


def register(c, path=AG_PATH, uuid=HFP_AG):
    return c.call('/org/bluez', PM, 'RegisterProfile', 'osa{sv}',
                  [path, uuid, dbus.Dictionary({}, signature='sv')])


def play_ag(sock, until, timeout=5.0, then=None):
    """A minimal AG: +BRSF and OK to every command; once `until` has come,
    sends `then` (an unsolicited line) once.  Returns the commands seen."""
    got, buf, sent = [], b'', False
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if until in got:
            if then is None or any(g.startswith('AT+BCS') for g in got):
                break
            if not sent:
                sock.sendall(('\r\n%s\r\n' % then).encode())
                sent = True
        if not select.select([sock], [], [], 0.1)[0]:
            continue
        data = sock.recv(4096)
        if not data:
            break
        buf += data
        while b'\r' in buf:
            line, _, buf = buf.partition(b'\r')
            line = line.strip().decode(errors='replace')
            if not line:
                continue
            got.append(line)
            if line.startswith('AT+BRSF='):
                sock.sendall(b'\r\n+BRSF: 512\r\n')
            sock.sendall(b'\r\nOK\r\n')
    return got


def read_log(env, k=0):
    try:
        with open(os.path.join(env.outdir, 'headset-%d.log' % k)) as f:
            return f.read()
    except OSError:
        return ''


def eof_within(sock, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([sock], [], [], 0.1)[0]:
            try:
                if not sock.recv(4096):
                    return True
            except OSError:
                return True
    return False


def check_register(env, c):
    r = register(c)
    check('RegisterProfile HFP AG', r[0] == 'ok', describe(r))
    r = register(c)
    check('... again, same path -> AlreadyExists', is_error(r, 'org.bluez.Error.AlreadyExists'),
          describe(r))
    other = Client(env.address)
    FakeProfile(other.bus, '/test/other')
    r = register(other, '/test/other')
    check('... by another program -> NotPermitted "UUID already registered"',
          is_error(r, 'org.bluez.Error.NotPermitted', 'UUID already registered'), describe(r))
    other.bus.close()
    r = c.call(SPEAKER, DEVICE, 'ConnectProfile', 's', [HFP_HF])
    check('ConnectProfile(HF) on a speaker without it -> NotAvailable',
          is_error(r, 'org.bluez.Error.NotAvailable'), describe(r))


def check_connect(env, c, prof):
    r = c.call(HEADSET, DEVICE, 'ConnectProfile', 's', [HFP_HF], timeout=5.0)
    new = [e for e in prof.log if e[0] == 'new']
    check('ConnectProfile(HF) -> NewConnection, then success', r[0] == 'ok' and len(new) == 1,
          '%s; %s' % (describe(r), prof.log))
    if not new:
        return None
    _, dev, fd, props = new[0]
    check('NewConnection: the device, an fd, Version 0x0108 and the headset\'s Features',
          dev == HEADSET and fd >= 0 and props == {'Version': 0x108, 'Features': 0x20}, new[0])
    sock = socket.socket(fileno=fd)
    got = play_ag(sock, 'AT+BIEV=2,80', then='+BCS: 2')
    check('the headset runs its script: BRSF first, BIEV (--battery) last, then AT+BCS=2',
          got[:1] == ['AT+BRSF=916'] and 'AT+BIND?' in got and got[-2:] == ['AT+BIEV=2,80', 'AT+BCS=2'],
          got)
    log = read_log(env)
    check('its log: lines sent and received', '> AT+BRSF=916' in log and '< +BRSF: 512' in log
          and '< +BCS: 2' in log and '> AT+BCS=2' in log, log[-400:])
    r = c.call(HEADSET, DEVICE, 'ConnectProfile', 's', [HFP_HF])
    check('ConnectProfile(HF) again -> success, no second NewConnection',
          r[0] == 'ok' and len([e for e in prof.log if e[0] == 'new']) == 1, describe(r))
    return sock


def check_disconnect(env, c, prof, sock):
    r = c.call(HEADSET, DEVICE, 'DisconnectProfile', 's', [HFP_HF])
    spin(lambda: ('request', HEADSET) in prof.log, 2.0)
    check('DisconnectProfile(HF) -> RequestDisconnection to the profile',
          r[0] == 'ok' and ('request', HEADSET) in prof.log, '%s; %s' % (describe(r), prof.log))
    check('... and the channel closes (EOF)', eof_within(sock, 3.0))
    check('... the headset program ended', env.wait_event(r'^HeadsetEnd 0 DisconnectProfile',
                                                          timeout=3.0), env.events()[-5:])
    sock.close()


def check_headset_hangs_up(env, c, prof):
    env.mock('ClearEvents')
    r = c.call(HEADSET, DEVICE, 'ConnectProfile', 's', [HFP_HF])
    new = [e for e in prof.log if e[0] == 'new']
    if not check('a second connection', r[0] == 'ok' and len(new) == 2, describe(r)):
        return
    sock = socket.socket(fileno=new[-1][2])
    play_ag(sock, 'AT+BIEV=2,80')
    check('the headset closing its channel: EOF here', eof_within(sock, 4.0))
    check('... and the mock sees it exit', env.wait_event(r'^HeadsetEnd 1 exited', timeout=3.0),
          env.events()[-5:])
    sock.close()


def check_owner_leaves(env, c):
    env.mock('ClearEvents')
    c.bus.close()
    check('the owner leaving the bus removes its profile',
          env.wait_event(r'^ProfileGone .* %s' % AG_PATH, timeout=3.0), env.events()[-5:])
    c2 = Client(env.address)
    FakeProfile(c2.bus, AG_PATH)
    r = register(c2)
    check('... so that another program may register it', r[0] == 'ok', describe(r))
    c2.bus.close()


def main():
    args = ['--headset', HEADSET_PY, '--headset-features', '0x20',
            '--headset-args=--battery 80 --hangup-after 3']
    with Env(devices=['hci0/00:1B:66:00:00:07,headset', 'hci0/00:1B:66:AA:BB:CC'],
             extra_args=args, sink=None) as env:
        c = Client(env.address)
        prof = FakeProfile(c.bus, AG_PATH)
        check_register(env, c)
        sock = check_connect(env, c, prof)
        if sock:
            check_disconnect(env, c, prof, sock)
            check_headset_hangs_up(env, c, prof)
        check_owner_leaves(env, c)
    with Env(devices=['hci0/00:1B:66:00:00:07,headset'], sink=None,
             extra_args=['--headset', HEADSET_PY,
                         '--headset-args=--script bluealsa40 --split']) as env:
        c = Client(env.address)
        prof = FakeProfile(c.bus, AG_PATH)
        register(c)
        r = c.call(HEADSET, DEVICE, 'ConnectProfile', 's', [HFP_HF])
        new = [e for e in prof.log if e[0] == 'new']
        if check('bluez-alsa 4.0\'s script, a byte at a time: connected', r[0] == 'ok' and new,
                 describe(r)):
            sock = socket.socket(fileno=new[0][2])
            got = play_ag(sock, 'AT+XAPL=BlueALSA-0001-0400,6')
            check('... BRSF 116, no BAC, CMER with 5 arguments, then VGM, VGS, XAPL',
                  got == ['AT+BRSF=116', 'AT+CIND=?', 'AT+CIND?', 'AT+CMER=3,0,0,1,0',
                          'AT+VGM=15', 'AT+VGS=15', 'AT+XAPL=BlueALSA-0001-0400,6'], got)
            sock.close()
        c.bus.close()
    with Env(devices=['hci0/00:1B:66:00:00:07,headset'], sink=None,
             extra_args=['--profile-taken', HFP_AG]) as env:
        c = Client(env.address)
        FakeProfile(c.bus, AG_PATH)
        r = register(c)
        check('another audio service owns HFP AG (--profile-taken) -> NotPermitted',
              is_error(r, 'org.bluez.Error.NotPermitted'), describe(r))
        c.bus.close()
    finish()


if __name__ == '__main__':
    main()
