#!/usr/bin/python3
"""Checks tests/mock/mock_bluez.py itself, without the plugin.

dbus-python in this process plays the client: it exports a MediaEndpoint1,
drives Device1/MediaTransport1 and steers the mock through org.alsabt.Mock1.
The sink is a small stand-in program written to the temp dir, so the spawn /
EOF / pause behaviour is checked even before build/rtp_sink exists.

Run: /usr/bin/python3 tests/integration/test_mock_selfcheck.py
"""

import errno
import os
import re
import select
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, check, finish  # noqa: E402

import dbus  # noqa: E402
import dbus.service  # noqa: E402
from dbus.mainloop.glib import DBusGMainLoop  # noqa: E402
from gi.repository import GLib  # noqa: E402

DBusGMainLoop(set_as_default=True)

A2DP_SOURCE = '0000110a-0000-1000-8000-00805f9b34fb'
A2DP_SINK = '0000110b-0000-1000-8000-00805f9b34fb'
ENDPOINT = 'org.bluez.MediaEndpoint1'
DEVICE = 'org.bluez.Device1'
TRANSPORT = 'org.bluez.MediaTransport1'
PROPS = 'org.freedesktop.DBus.Properties'
HCI0 = '/org/bluez/hci0'
DEV = HCI0 + '/dev_00_1B_66_AA_BB_CC'
UNPAIRED = HCI0 + '/dev_00_1B_66_00_00_01'
NOSINK = HCI0 + '/dev_00_1B_66_00_00_02'
OFFDEV = '/org/bluez/hci1/dev_00_1B_66_00_00_03'
EP_PATH = '/test/endpoint'
GOOD_CONFIG = bytes.fromhex('21150235')
MTU = 895

FAKE_SINK = r'''#!/usr/bin/python3
# Stand-in for build/rtp_sink: one CSV line per packet, "EOF" at the end.
import argparse, os
p = argparse.ArgumentParser()
p.add_argument('--fd', type=int); p.add_argument('--wav'); p.add_argument('--log')
p.add_argument('--codec'); p.add_argument('--rate'); p.add_argument('--ready-fd', type=int)
a = p.parse_args()
os.write(a.ready_fd, b'r'); os.close(a.ready_fd)
with open(a.log, 'w') as log, open(a.wav, 'wb') as wav:
    while True:
        data = os.read(a.fd, 65536)
        if not data:
            log.write('EOF\n')
            break
        log.write('%d\n' % len(data))
        log.flush()
        wav.write(data)
'''


def spin(cond, timeout):
    """Runs the GLib main context until cond() holds; False on timeout."""
    ctx = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        while ctx.iteration(False):
            pass
        if not cond():
            time.sleep(0.002)
    return True


class FakeEndpoint(dbus.service.Object):
    """Our side of org.bluez.MediaEndpoint1; records every call in log."""

    def __init__(self, bus, path, log):
        super().__init__(bus, path)
        self.log = log
        self.config = GOOD_CONFIG
        self.hang = False
        self.set_error = None

    @dbus.service.method(ENDPOINT, in_signature='ay', out_signature='ay', byte_arrays=True,
                         async_callbacks=('ok', 'err'))
    def SelectConfiguration(self, caps, ok=None, err=None):
        self.log.append(('select', caps))
        if not self.hang:
            ok(dbus.ByteArray(self.config))

    @dbus.service.method(ENDPOINT, in_signature='oa{sv}', byte_arrays=True)
    def SetConfiguration(self, path, props):
        self.log.append(('set', str(path), dict(props)))
        if self.set_error:
            raise dbus.DBusException('refused', name=self.set_error)

    @dbus.service.method(ENDPOINT, in_signature='o')
    def ClearConfiguration(self, path):
        self.log.append(('clear', str(path)))

    @dbus.service.method(ENDPOINT)
    def Release(self):
        self.log.append(('release',))


class Client:
    """One client connection with an exported endpoint and a signal log."""

    def __init__(self, address):
        self.bus = dbus.bus.BusConnection(address)
        self.log = []
        self.signals = []
        self.endpoint = FakeEndpoint(self.bus, EP_PATH, self.log)
        self.bus.add_signal_receiver(self._on_signal, bus_name='org.bluez',
                                     member_keyword='member', path_keyword='path')

    def _on_signal(self, *args, member=None, path=None):
        self.signals.append((time.monotonic(), member, str(path), args))

    def start(self, path, iface, method, sig='', args=(), timeout=5.0, tag=None):
        """Starts an async call; returns a list that receives the outcome."""
        box = []

        def done(outcome):
            box.append(outcome)
            if tag:
                self.log.append((tag,))
        self.bus.call_async('org.bluez', path, iface, method, sig, list(args),
                            lambda *v: done(('ok', v)), lambda e: done(('err', e)),
                            timeout=timeout, byte_arrays=True)
        return box

    def call(self, path, iface, method, sig='', args=(), timeout=5.0, tag=None):
        box = self.start(path, iface, method, sig, args, timeout, tag)
        spin(lambda: box, timeout + 2)
        return box[0] if box else ('err', None)

    def register(self, props=None):
        if props is None:
            props = {'UUID': A2DP_SOURCE, 'Codec': dbus.Byte(0),
                     'Capabilities': dbus.ByteArray(bytes.fromhex('ffff0235')),
                     'DelayReporting': True}
        return self.call(HCI0, 'org.bluez.Media1', 'RegisterEndpoint', 'oa{sv}',
                         [EP_PATH, dbus.Dictionary(props, signature='sv')])

    def connect(self, dev=DEV, timeout=5.0):
        return self.call(dev, DEVICE, 'ConnectProfile', 's', [A2DP_SINK], timeout=timeout,
                         tag='connect-reply')

    def objects(self):
        return self.call('/', 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects')

    def get(self, path, iface, name):
        """The property as a plain Python value, or the failed outcome."""
        outcome = self.call(path, PROPS, 'Get', 'ss', [iface, name])
        if outcome[0] != 'ok':
            return outcome
        value = outcome[1][0]
        return bool(value) if isinstance(value, dbus.Boolean) else value

    def entries(self, kind):
        return [e for e in self.log if e[0] == kind]

    def transports(self):
        outcome = self.objects()
        if outcome[0] != 'ok':
            return {}
        return {str(p): i[TRANSPORT] for p, i in outcome[1][0].items() if TRANSPORT in i}


def is_error(outcome, name, message=None):
    if outcome[0] != 'err' or outcome[1] is None:
        return False
    exc = outcome[1]
    return exc.get_dbus_name() == name and (message is None or exc.get_dbus_message() == message)


def describe(outcome):
    if outcome[0] == 'err' and outcome[1] is not None:
        return '%s: %s' % (outcome[1].get_dbus_name(), outcome[1].get_dbus_message())
    return repr(outcome)


def read(path):
    with open(path) as f:
        return f.read()


def write_fake_sink(directory):
    path = os.path.join(directory, 'fake_sink.py')
    with open(path, 'w') as f:
        f.write(FAKE_SINK)
    os.chmod(path, 0o755)
    return path


# ---------------------------------------------------------------- checks

def check_objects(c):
    outcome = c.objects()
    objs = outcome[1][0] if outcome[0] == 'ok' else {}
    check('objects: adapter has Adapter1 and Media1',
          'org.bluez.Adapter1' in objs.get(HCI0, {}) and 'org.bluez.Media1' in objs.get(HCI0, {}),
          describe(outcome))
    dev = objs.get(DEV, {})
    check('objects: device lists the A2DP sink UUID',
          A2DP_SINK in [str(u) for u in dev.get(DEVICE, {}).get('UUIDs', [])], repr(dev))
    check('objects: Battery1 Percentage', dev.get('org.bluez.Battery1', {}).get('Percentage') == 77,
          repr(dev.get('org.bluez.Battery1')))
    check('objects: hci1 is powered off',
          objs.get('/org/bluez/hci1', {}).get('org.bluez.Adapter1', {}).get('Powered') is not None
          and not objs['/org/bluez/hci1']['org.bluez.Adapter1']['Powered'])


def check_register(c):
    r = c.register({})
    check('register: empty properties -> InvalidArguments',
          is_error(r, 'org.bluez.Error.InvalidArguments'), describe(r))
    r = c.register({'UUID': A2DP_SOURCE})
    check('register: no Codec -> InvalidArguments',
          is_error(r, 'org.bluez.Error.InvalidArguments'), describe(r))
    r = c.register({'UUID': A2DP_SOURCE, 'Codec': dbus.Int32(0)})
    check('register: Codec of wrong type -> InvalidArguments',
          is_error(r, 'org.bluez.Error.InvalidArguments'), describe(r))
    r = c.register()
    check('register: good endpoint accepted', r[0] == 'ok', describe(r))
    r = c.register()
    check('register: same path again -> AlreadyExists',
          is_error(r, 'org.bluez.Error.AlreadyExists'), describe(r))


def check_connect(c):
    del c.log[:]
    r = c.connect()
    order = [e[0] for e in c.log]
    check('connect: ConnectProfile succeeds', r[0] == 'ok', describe(r))
    check('connect: Select and SetConfiguration come before the reply',
          order == ['select', 'set', 'connect-reply'], repr(order))
    sel = c.entries('select')
    check('connect: SelectConfiguration gets the speaker caps',
          sel and bytes(sel[0][1]) == bytes.fromhex('ffff0235'), repr(sel))
    sets = c.entries('set')
    if not check('connect: SetConfiguration received', sets, repr(c.log)):
        return None
    path, props = sets[0][1], sets[0][2]
    check('connect: transport path is DEV/sep1/fdN', re.match(DEV + r'/sep1/fd\d+$', path), path)
    check('connect: Configuration is what we selected',
          bytes(props.get('Configuration', b'')) == GOOD_CONFIG, repr(props))
    check('connect: transport properties like BlueZ',
          props.get('State') == 'idle' and props.get('UUID') == A2DP_SOURCE
          and props.get('Codec') == 0 and props.get('Device') == DEV
          and props.get('Endpoint') == DEV + '/sep1', repr(props))
    check('connect: Volume and Delay present', props.get('Volume') == 50
          and props.get('Delay') == 150, repr(props))
    check('connect: device Connected', c.get(DEV, DEVICE, 'Connected') is True)
    del c.log[:]
    r = c.connect()
    check('connect: again -> success without endpoint calls (BlueZ -EALREADY)',
          r[0] == 'ok' and [e[0] for e in c.log] == ['connect-reply'], describe(r) + repr(c.log))
    return path


def acquire(c, path):
    r = c.call(path, TRANSPORT, 'Acquire')
    if r[0] != 'ok':
        return r, None
    return r, r[1][0].take()


def check_acquire(env, c, path):
    sig_start = len(c.signals)
    r, fd = acquire(c, path)
    if not check('acquire: Acquire succeeds', fd is not None, describe(r)):
        return
    s = socket.socket(fileno=fd)
    check('acquire: fd is SOCK_SEQPACKET',
          s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_SEQPACKET)
    check('acquire: read and write MTU', tuple(r[1][1:]) == (MTU, MTU), repr(r[1][1:]))
    spin(lambda: any(m == 'PropertiesChanged' and p == path and a[1].get('State') == 'active'
                     for _, m, p, a in c.signals[sig_start:]), 2.0)
    check('acquire: State active', c.get(path, TRANSPORT, 'State') == 'active')
    r2 = c.call(path, TRANSPORT, 'Acquire')
    check('acquire: second Acquire -> NotAuthorized',
          is_error(r2, 'org.bluez.Error.NotAuthorized'), describe(r2))
    r2 = c.call(path, TRANSPORT, 'TryAcquire')
    check('acquire: TryAcquire while owned -> NotAuthorized',
          is_error(r2, 'org.bluez.Error.NotAuthorized'), describe(r2))
    for size in (MTU, 100, 7):
        s.send(b'\x80' * size)
    s.close()
    line = env.wait_event(r'^SinkExit 0 rc=0', timeout=3.0)
    check('acquire: sink sees EOF when the client closes its fd', line, env.events()[-5:])
    wav, csv = env.captures()[0] if env.captures() else (None, None)
    lines = read(csv).split() if csv and os.path.exists(csv) else []
    check('acquire: sink got the packets intact', lines == [str(MTU), '100', '7', 'EOF'],
          repr(lines))
    r = c.call(path, TRANSPORT, 'Release')
    check('release: Release succeeds', r[0] == 'ok', describe(r))
    check('release: State idle', c.get(path, TRANSPORT, 'State') == 'idle')
    r = c.call(path, TRANSPORT, 'Release')
    check('release: Release when not owner -> NotAuthorized',
          is_error(r, 'org.bluez.Error.NotAuthorized'), describe(r))
    r = c.call(path, TRANSPORT, 'TryAcquire')
    check('acquire: TryAcquire when idle -> NotAvailable',
          is_error(r, 'org.bluez.Error.NotAvailable'), describe(r))


def check_volume(c, path, env):
    start = len(c.signals)
    t0 = time.monotonic()
    r = c.call(path, PROPS, 'Set', 'ssv', [TRANSPORT, 'Volume', dbus.UInt16(64)])
    check('volume: Set accepted', r[0] == 'ok', describe(r))
    got = spin(lambda: any(m == 'PropertiesChanged' and a[1].get('Volume') == 64
                           for _, m, p, a in c.signals[start:]), 2.0)
    when = [t for t, m, p, a in c.signals[start:] if m == 'PropertiesChanged'
            and a[1].get('Volume') == 64]
    check('volume: PropertiesChanged Volume 64', got)
    check('volume: applied later, like the speaker confirming', when and when[0] - t0 >= 0.015,
          repr([w - t0 for w in when]))
    r = c.call(path, PROPS, 'Set', 'ssv', [TRANSPORT, 'Volume', dbus.UInt16(200)])
    check('volume: 200 -> InvalidArguments', is_error(r, 'org.bluez.Error.InvalidArguments'),
          describe(r))
    r = c.call(path, PROPS, 'Set', 'ssv', [TRANSPORT, 'Volume', dbus.Byte(3)])
    check('volume: wrong type -> InvalidArguments',
          is_error(r, 'org.bluez.Error.InvalidArguments'), describe(r))
    r = c.call(path, PROPS, 'Set', 'ssv', [TRANSPORT, 'Delay', dbus.UInt16(3)])
    check('volume: Delay is read-only',
          is_error(r, 'org.freedesktop.DBus.Error.PropertyReadOnly'), describe(r))
    env.mock('SetTransportProperty', 'Volume', dbus.UInt16(10))
    check('control: SetTransportProperty Volume', c.get(path, TRANSPORT, 'Volume') == 10)
    env.mock('SetBattery', 33)
    check('control: SetBattery', c.get(DEV, 'org.bluez.Battery1', 'Percentage') == 33)
    check('volume: Set calls are logged', env.wait_event(r'^SetVolume 64 ', 0.5)
          and env.wait_event(r'^SetVolume -> org.bluez.Error.InvalidArguments', 0.5))


def fill(sock, limit=1000):
    """Writes MTU packets until EAGAIN; returns how many went out."""
    for n in range(limit):
        try:
            sock.send(b'\0' * MTU)
        except BlockingIOError:
            return n
    return limit


def check_pause_and_vanish(env, c, path):
    r, fd = acquire(c, path)
    if not check('pause: Acquire again', fd is not None, describe(r)):
        return
    s = socket.socket(fileno=fd)
    s.setblocking(False)
    env.wait_event(r'^Sink 1 ', timeout=2.0)
    t0 = time.monotonic()
    env.mock('PauseSink', 0.4)
    time.sleep(0.05)          # a packet the sink may have been reading
    sent = fill(s)
    check('pause: writes hit EAGAIN while the sink is stopped', 0 < sent < 1000, sent)
    writable = select.select([], [s], [], 2.0)[1]
    check('pause: writable again after the pause', writable and time.monotonic() - t0 >= 0.3,
          time.monotonic() - t0)
    del c.log[:]
    start = len(c.signals)
    env.mock('Vanish')
    p = select.poll()
    p.register(s, select.POLLOUT)
    events = p.poll(1000)
    check('vanish: fd reports POLLHUP', events and events[0][1] & select.POLLHUP, events)
    try:
        s.send(b'x' * 10)
        err = None
    except OSError as e:
        err = e.errno
    # ECONNRESET when the sink died with packets unread (Linux, AF_UNIX)
    check('vanish: write fails with EPIPE or ECONNRESET', err in (errno.EPIPE, errno.ECONNRESET),
          err)
    s.close()
    spin(lambda: c.entries('clear'), 2.0)
    check('vanish: ClearConfiguration for the transport', ('clear', path) in c.log, c.log)
    spin(lambda: any(m == 'InterfacesRemoved' and a[0] == path for _, m, p, a in c.signals[start:]),
         2.0)
    check('vanish: InterfacesRemoved for the transport',
          any(m == 'InterfacesRemoved' and a[0] == path for _, m, p, a in c.signals[start:]))
    check('vanish: device not Connected', c.get(DEV, DEVICE, 'Connected') is False)


def check_config_failures(env, c):
    del c.log[:]
    c.endpoint.config = bytes.fromhex('30150235')      # two sampling rates
    r = c.connect()
    check('invalid config: ConnectProfile fails',
          is_error(r, 'org.bluez.Error.Failed', 'br-connection-create-socket'), describe(r))
    check('invalid config: no SetConfiguration', not c.entries('set'), c.log)
    check('invalid config: no transport left', not c.transports(), c.transports())
    check('invalid config: logged', env.wait_event(r'^SelectConfiguration -> invalid 30150235',
                                                   timeout=0.5))
    c.endpoint.config = GOOD_CONFIG

    del c.log[:]
    c.endpoint.set_error = 'org.test.Error.Nope'
    r = c.connect()
    check('SetConfiguration error: ConnectProfile fails', is_error(r, 'org.bluez.Error.Failed'),
          describe(r))
    spin(lambda: c.entries('clear'), 1.0)
    sets = c.entries('set')
    check('SetConfiguration error: ClearConfiguration follows',
          sets and ('clear', sets[0][1]) in c.log, c.log)
    check('SetConfiguration error: no transport left', not c.transports())
    c.endpoint.set_error = None

    del c.log[:]
    c.endpoint.hang = True
    t0 = time.monotonic()
    r = c.connect()
    took = time.monotonic() - t0
    check('endpoint timeout: ConnectProfile fails after the endpoint timeout',
          is_error(r, 'org.bluez.Error.Failed') and 0.4 <= took < 2.5,
          '%s %.2f' % (describe(r), took))
    c.endpoint.hang = False
    check('endpoint timeout: device not Connected', c.get(DEV, DEVICE, 'Connected') is False)


def check_faults(env, c):
    del c.log[:]
    env.mock('SetFault', 'SelectConfiguration', 'garbage:0102')
    r = c.connect()
    sel = c.entries('select')
    check('garbage fault: endpoint receives the garbage caps',
          sel and bytes(sel[0][1]) == b'\x01\x02', repr(sel))
    env.mock('SetFault', 'SelectConfiguration', '')
    check_wrong_types(env, c)
    del c.log[:]
    r = c.call(DEV, DEVICE, 'DisconnectProfile', 's', [A2DP_SINK])
    spin(lambda: c.entries('clear'), 1.0)
    check('DisconnectProfile: ok and ClearConfiguration', r[0] == 'ok' and c.entries('clear'),
          describe(r) + repr(c.log))
    r = c.call(DEV, DEVICE, 'DisconnectProfile', 's', [A2DP_SINK])
    check('DisconnectProfile: when disconnected -> ok', r[0] == 'ok', describe(r))

    del c.log[:]
    env.mock('SetFault', 'ConnectProfile', 'busy')
    r = c.connect()
    env.mock('SetFault', 'ConnectProfile', '')
    check('busy fault: ConnectProfile succeeds without calling us',
          r[0] == 'ok' and not c.entries('select'), describe(r) + repr(c.log))
    foreign = c.transports()
    check('busy fault: someone else\'s active transport exists',
          len(foreign) == 1 and list(foreign.values())[0]['State'] == 'active', repr(foreign))
    if foreign:
        r, fd = acquire(c, list(foreign)[0])
        check('busy fault: Acquire of it -> NotAuthorized',
              is_error(r, 'org.bluez.Error.NotAuthorized'), describe(r))
    env.mock('Vanish')
    check('busy fault: Vanish removes it', not c.transports())

    env.mock('SetFault', 'ConnectProfile', 'error:org.bluez.Error.Failed:boom')
    r = c.connect()
    env.mock('SetFault', 'ConnectProfile', '')
    check('error fault: the given error comes back',
          is_error(r, 'org.bluez.Error.Failed', 'boom'), describe(r))

    env.mock('SetFault', 'GetManagedObjects', 'noreply')
    t0 = time.monotonic()
    r = c.call('/', 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects', timeout=0.5)
    took = time.monotonic() - t0
    env.mock('SetFault', 'GetManagedObjects', '')
    check('noreply fault: the client times out', is_error(r, 'org.freedesktop.DBus.Error.NoReply')
          and took < 2.0, '%s %.2f' % (describe(r), took))
    try:
        env.mock('SetFault', 'Acquire', 'garbage:00')
        bad = False
    except dbus.DBusException:
        bad = True
    check('SetFault rejects an action that does not fit the method', bad)


def check_wrong_types(env, c):
    """wrongtype / wrongsig: what reaches the endpoint has the wrong D-Bus types."""
    cases = [('SelectConfiguration', 'wrongtype', 'select', lambda e: isinstance(e[1], str)),
             ('SelectConfiguration', 'wrongsig', 'select', lambda e: isinstance(e[1], list)),
             ('SetConfiguration', 'wrongtype', 'set',
              lambda e: isinstance(e[2].get('Configuration'), dbus.String)),
             ('SetConfiguration', 'wrongsig', 'set',
              lambda e: not isinstance(e[1], dbus.ObjectPath)
              and isinstance(e[2].get('Codec'), dbus.String))]
    for method, action, kind, test in cases:
        c.call(DEV, DEVICE, 'DisconnectProfile', 's', [A2DP_SINK])
        del c.log[:]
        env.mock('SetFault', method, action)
        c.connect()
        env.mock('SetFault', method, '')
        got = c.entries(kind)
        check('%s fault on %s: endpoint sees the wrong types' % (action, method),
              got and test(got[0]), repr(got))


def check_drain_mode():
    """Without --sink the mock drains the socket and reports what it got."""
    with Env(sink=None, mtu=MTU) as env:
        c = Client(env.address)
        c.register()
        c.connect()
        path = (c.entries('set') or [(None, None)])[0][1]
        r, fd = acquire(c, path)
        if not check('drain: Acquire', fd is not None, describe(r)):
            return
        s = socket.socket(fileno=fd)
        s.setblocking(False)
        env.mock('PauseSink', 0.3)
        sent = fill(s)
        check('drain: paused drain gives EAGAIN', 0 < sent < 1000, sent)
        check('drain: writable after the pause', select.select([], [s], [], 2.0)[1])
        s.send(b'x' * 10)
        s.close()
        line = env.wait_event(r'^SinkEOF ', timeout=2.0)
        check('drain: SinkEOF with the packet count',
              line and 'packets=%d ' % (sent + 1) in line and 'max=%d' % MTU in line, line)
        c.bus.close()


def check_other_devices(c):
    r = c.connect(UNPAIRED)
    check('unpaired device -> Failed', is_error(r, 'org.bluez.Error.Failed'), describe(r))
    r = c.connect(NOSINK)
    check('device without A2DP sink -> NotAvailable',
          is_error(r, 'org.bluez.Error.NotAvailable', 'br-connection-profile-unavailable'),
          describe(r))
    r = c.connect(OFFDEV)
    check('adapter off -> NotReady',
          is_error(r, 'org.bluez.Error.NotReady', 'br-connection-adapter-not-powered'),
          describe(r))


def check_unregister(c):
    r = c.connect()
    check('unregister: connected first', r[0] == 'ok', describe(r))
    del c.log[:]
    r = c.call(HCI0, 'org.bluez.Media1', 'UnregisterEndpoint', 'o', [EP_PATH],
               tag='unregister-reply')
    spin(lambda: c.entries('release'), 1.0)
    order = [e[0] for e in c.log]
    check('unregister: ClearConfiguration, Release, then the reply',
          r[0] == 'ok' and order == ['clear', 'release', 'unregister-reply'], repr(order))
    r = c.call(HCI0, 'org.bluez.Media1', 'UnregisterEndpoint', 'o', [EP_PATH])
    check('unregister: unknown endpoint -> DoesNotExist',
          is_error(r, 'org.bluez.Error.DoesNotExist'), describe(r))


def check_owner_leaves(env):
    other = Client(env.address)
    other.register()
    r = other.connect()
    check('owner leaves: second client connected', r[0] == 'ok', describe(r))
    sets = other.entries('set')
    r, fd = acquire(other, sets[0][1]) if sets else (('err', None), None)
    check('owner leaves: second client acquired', fd is not None, describe(r))
    other.bus.close()
    if fd is not None:
        os.close(fd)
    check('owner leaves: transport released', env.wait_event(r'^OwnerGone ', timeout=2.0))
    check('owner leaves: endpoint dropped', env.wait_event(r'^EndpointGone ', timeout=2.0))
    check('owner leaves: its transport removed', env.wait_event(r'^TransportRemoved ', 2.0))
    check('owner leaves: nothing sent to the dead endpoint',
          not any(e.startswith(('ClearConfiguration', 'ReleaseEndpoint')) for e in env.events()),
          env.events())


def check_harness(env):
    r = env.run(['sleep', '5'], timeout=0.3)
    check('harness: run() is bounded', r.timed_out and r.elapsed < 1.5, r)
    r = env.run(['sh', '-c', 'echo "$DBUS_SYSTEM_BUS_ADDRESS|$HOME|$XDG_RUNTIME_DIR"'], 5)
    check('harness: environment for subprocesses',
          r.rc == 0 and r.stdout.strip() == '%s|%s|%s' % (env.address, env.tmp,
                                                          os.path.join(env.tmp, 'run')),
          r.stdout)
    text = read(os.path.join(env.tmp, '.asoundrc'))
    check('harness: .asoundrc names the plugins and the conf',
          'pcm_type.bluetooth' in text and 'ctl_type.bluetooth' in text
          and '20-bluetooth.conf>' in text, text)


def main_env(fake_sink):
    pids = []
    with Env(adapters=['hci0=00:11:22:33:44:55', 'hci1=00:11:22:33:44:66,off'],
             devices=['hci0/00:1B:66:AA:BB:CC', 'hci0/00:1B:66:00:00:01,unpaired',
                      'hci0/00:1B:66:00:00:02,nosink', 'hci1/00:1B:66:00:00:03'],
             volume=50, delay=150, battery=77, mtu=MTU, sink=fake_sink,
             endpoint_timeout=0.5) as env:
        c = Client(env.address)
        check_objects(c)
        check_register(c)
        path = check_connect(c)
        if path:
            check_acquire(env, c, path)
            check_volume(c, path, env)
            check_pause_and_vanish(env, c, path)
        env.mock('ClearEvents')
        check('control: ClearEvents', env.events() == [])
        check_config_failures(env, c)
        check_faults(env, c)
        check_other_devices(c)
        check_unregister(c)
        env.mock('ClearEvents')
        check_owner_leaves(env)
        check_harness(env)
        pids = [env._mock.pid, env._daemon.pid] + live_sink(env, c)
        c.bus.close()
    alive = [p for p in pids if os.path.exists('/proc/%d' % p)]
    check('harness: no process left behind', not alive, alive)


def live_sink(env, c):
    """Leaves a sink running (fd held) so that Env exit has to stop it."""
    c.register()
    del c.log[:]
    c.connect()
    sets = c.entries('set')
    start = len(env.events())
    r, fd = acquire(c, sets[0][1]) if sets else (('err', None), None)
    line = env.wait_event(r'^Sink \d+ .* pid=\d+', timeout=2.0, start=start)
    pids = [int(m) for m in re.findall(r'pid=(\d+)', line or '')]
    check('harness: a sink is running at exit', fd is not None and pids, describe(r))
    return pids


def side_envs():
    with Env(mock=False) as env:
        bus = dbus.bus.BusConnection(env.address)
        check('mock=False: bus up, nobody owns org.bluez', not bus.name_has_owner('org.bluez'))
        bus.close()
    with Env(bus=False) as env:
        addr = env.environ['DBUS_SYSTEM_BUS_ADDRESS']
        try:
            dbus.bus.BusConnection(addr)
            failed = False
        except dbus.DBusException:
            failed = True
        check('bus=False: the address leads nowhere', failed, addr)


def main():
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='alsabt-sink-') as d:
        main_env(write_fake_sink(d))
    check_drain_mode()
    side_envs()
    check('selfcheck finished quickly', time.monotonic() - t0 < 20, time.monotonic() - t0)
    finish()


if __name__ == '__main__':
    main()
