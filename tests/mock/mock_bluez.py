#!/usr/bin/python3
"""A stand-in for bluetoothd (BlueZ 5.66) on a private D-Bus bus.

The ALSA plugin under test talks to this process exactly as it would talk to
bluetoothd: it registers an A2DP Source media endpoint on an adapter, asks a
device to connect its A2DP sink profile, gets SelectConfiguration /
SetConfiguration calls back, acquires the transport and writes media packets
to the fd.  No Bluetooth hardware is involved: Acquire hands out one end of an
AF_UNIX SOCK_SEQPACKET socketpair and gives the other end to a test sink.

Command line
------------
  --adapter hci0=00:11:22:33:44:55[,off]   repeatable; "off" = Powered false.
                                           Default: one powered hci0.
  --device hci0/00:1B:66:AA:BB:CC[,flags]  repeatable; flags: unpaired,
                                           connected, nosink, name=Foo,
                                           phone (an A2DP Source instead
                                           of a sink: see "The phone"),
                                           headset (a sink with HFP
                                           Hands-Free: see "The headset")
  --sink-caps HEX        SBC capabilities of the speaker's sink SEP
                         (default ffff0235; any length, for malformed tests)
  --sink-sep CODEC:HEX   repeatable: the speaker's sink SEPs instead, in
                         order (DEV/sep1, sep2, ...): codec id in hex (00 SBC,
                         ff vendor) and capabilities, e.g. 00:ffff0235
                         ff:4f0000000100ff (aptX)
  --mtu N                read and write MTU returned by Acquire (default 672)
  --volume N             transports start with Volume N (0..127); else none
  --sink-delay-readonly  our sink's transport Delay cannot be set (BlueZ
                         before 5.79); else its owner may set it
  --delay N              Delay (1/10 ms) on transports whose endpoint asked
                         for DelayReporting (as BlueZ); else no Delay
  --battery N            devices get org.bluez.Battery1 Percentage N
  --sink PATH            program spawned on each Acquire:
                         PATH --fd 3 --wav OUTDIR/capture-K.wav
                              --log OUTDIR/capture-K.csv --codec NAME
                         [--rate R] --ready-fd 4 (NAME: sbc, aptx, aptx_hd,
                         aac, ldac, or the codec in hex; R: the rate, for
                         aptX, AAC, LDAC; it writes a byte to fd 4 once it
                         reads, and Acquire answers then)
                         (stdout/stderr to OUTDIR/capture-K.out). Without it
                         the mock drains the socket itself.
  --outdir DIR           where captures go (default: current directory)
  --endpoint-timeout S   timeout of calls to endpoints (BlueZ: 3 s)
  --volume-delay S       delay before a Volume Set takes effect (0.02 s)
  --sndbuf N             SO_SNDBUF for the client's socket end (default: kernel)
  --late-release         MediaEndpoint1.Release sent after UnregisterEndpoint's
                         reply, not before it (a client that leaves messages
                         read with the reply undispatched sees this order)
  --bus ADDRESS          bus to use (default: $DBUS_SYSTEM_BUS_ADDRESS)
  --phone PATH           the phone's streaming program, spawned when our
                         sink endpoint acquires a phone's transport:
                         PATH --fd 3 --config HEX --codec NAME --mtu N
                              --log OUTDIR/phone-K.csv [--phone-args ...]
                         (NAME as for --sink)
                         (stdout/stderr to OUTDIR/phone-K.out)
  --phone-args "ARGS"    more arguments for it, split on spaces (write
                         --phone-args="--wav x.wav" for ones that start
                         with --)
  --phone-caps HEX       the phone's SBC source capabilities (ffff0235)
  --phone-sep CODEC:HEX  repeatable: the phone's source SEPs instead, in
                         order, as --sink-sep (e.g. ff:4f0000000100ff for
                         aptX, 02:c0ff8c8004e2 for AAC)
  --headset PATH         the headset's program, spawned for each HFP
                         connection: PATH --fd 3 --log OUTDIR/headset-K.log
                         [--headset-args ...]; fd 3 is the headset's end of
                         the RFCOMM channel (stdout/stderr OUTDIR/headset-K.out)
  --headset-args "ARGS"  more arguments for it (as --phone-args)
  --headset-features N   Features in NewConnection: the headset's SDP HF
                         features (default 0x3f)
  --profile-taken UUID   repeatable: another program registered this
                         profile already (RegisterProfile -> NotPermitted)
  --phone-pause AT:FOR   the phone's transport goes idle AT s after it was
                         acquired, pending (then active) FOR s later, as a
                         phone that pauses; pass the same to the program

The phone
---------
A device with the "phone" flag offers A2DP Source (not Sink). Our
ConnectProfile(A2DP Source) on it: the ACL comes up, its source SEP DEV/sep1
(UUID A2DP Source) appears, our A2DP *Sink* endpoints are tried as BlueZ
tries them (SelectConfiguration with the phone's caps, SetConfiguration),
then the reply; 0.1 s later the transport goes "pending" (the phone starts
streaming). TryAcquire then spawns --phone with the other socket end, and
the transport goes "active". Vanish(): the program is stopped first (the
socket closes), then the D-Bus side follows, as for a speaker.

The headset
-----------
A device with the "headset" flag lists HFP Hands-Free beside A2DP Sink. A
client registers HFP Audio Gateway (ProfileManager1.RegisterProfile at
/org/bluez); ConnectProfile(Hands-Free) then makes the RFCOMM channel, an
AF_UNIX stream socketpair: --headset gets one end as its fd 3, the
registrant the other in Profile1.NewConnection(device, fd, {Version 0x0108,
Features}), and ConnectProfile answers once NewConnection has (an error
reply: Failed "br-connection-refused"). DisconnectProfile(Hands-Free):
Profile1.RequestDisconnection; once that is answered the headset program
is stopped (its end closes). The headset program exiting closes the channel from its side.

It takes the name org.bluez and prints READY on stdout once it serves.
SIGTERM/SIGINT: stops the sinks (bounded) and exits 0.

Control interface: object /org/alsabt/mock, interface org.alsabt.Mock1
---------------------------------------------------------------------
  SetFault(s method, s action)
      method: GetManagedObjects RegisterEndpoint UnregisterEndpoint
              ConnectProfile DisconnectProfile Connect Disconnect
              Acquire TryAcquire Release SelectConfiguration SetConfiguration
      action: ""                  clear
              "error:NAME:MESSAGE" the method replies that D-Bus error
              "noreply"           the method never replies (bluetoothd hung)
              "slow:SECONDS"      the method does its work at once and
                                  replies SECONDS later (a loaded bluetoothd)
              "busy"              (ConnectProfile) another audio service
                                  already streams: a foreign transport
                                  (State active) appears, reply success,
                                  our endpoint is never called
              "garbage:HEX"       (Select/SetConfiguration) send HEX as the
                                  capabilities / as Configuration
              "wrongtype"         (Select) caps as a string 's';
                                  (Set) Configuration as 's', Codec as 'u'
              "wrongsig"          (Select) caps as 'ai';
                                  (Set) arguments signed 'sa{ss}'
      Faults stay until cleared.
  Vanish()                     every connected speaker goes away (link loss)
  SetTransportProperty(s name, v value)
                               Volume/Delay (q) or State (s) on every
                               transport (created if absent); Volume/Delay
                               also become the default for new transports.
                               State "pending" imitates a speaker-initiated
                               start (what TryAcquire needs).
  SetBattery(y percent)        Battery1.Percentage on every device
  PauseSink(d seconds)         SIGSTOP the newest live sink (or stop draining)
                               and resume after that many seconds
  GetEvents() -> as            event log, oldest first
  ClearEvents()

Event log (GetEvents), one line per event, fields separated by spaces; match
lines by prefix, more fields may be appended later:
  Calls from clients:
    GetManagedObjects SENDER
    RegisterEndpoint SENDER EP_PATH hciN uuid=UUID codec=N caps=HEX delay_reporting=0|1
    UnregisterEndpoint SENDER EP_PATH hciN
    ConnectProfile dev_XX_XX_XX_XX_XX_XX UUID SENDER
    DisconnectProfile dev_XX_... UUID SENDER
    Connect dev_XX_... SENDER          Disconnect dev_XX_... SENDER
    Acquire T_PATH SENDER   TryAcquire T_PATH SENDER   Release T_PATH SENDER
    SetVolume N T_PATH SENDER          (Properties.Set of Volume)
    SetProperty OBJ_PATH NAME VALUE SENDER   (other Properties.Set)
  and for each of them, when it is answered:
    METHOD -> ok | METHOD -> ERROR.NAME: message | METHOD -> noreply (fault)
  Calls the mock makes to endpoints:
    SelectConfiguration EP_PATH CAPSHEX
    SelectConfiguration -> CONFIGHEX | -> invalid HEX: reason | -> ERROR.NAME: msg
    SetConfiguration T_PATH CONFIGHEX
    SetConfiguration -> ok | -> ERROR.NAME: msg
    ClearConfiguration T_PATH
    ReleaseEndpoint EP_PATH            (MediaEndpoint1.Release)
  State changes:
    Connected dev_XX_... 0|1
    TransportAdded T_PATH ours|foreign     TransportRemoved T_PATH
    State T_PATH idle|pending|active       Volume T_PATH N
    Sink K T_PATH pid=PID | Sink K T_PATH drain
    SinkEOF T_PATH K packets=N bytes=N max=N   (drain mode: client closed)
    SinkExit K rc=RC                           (spawned sink exited)
    RegisterProfile SENDER PATH UUID   UnregisterProfile SENDER PATH
    NewConnection PROFILE_PATH dev_... (and -> ok | -> ERROR.NAME: msg)
    RequestDisconnection PROFILE_PATH dev_...
    Headset K dev_... pid=PID          HeadsetEnd K WHY rc=RC
      (WHY: exited, DisconnectProfile, link lost, refused, ProfileGone,
      shutdown)
    ProfileGone SENDER PATH            (its owner left the bus)
    EndpointGone SENDER EP_PATH        OwnerGone T_PATH SENDER
    Powered hciN 0|1
    Mock.METHOD ARGS...                (control calls, except Get/ClearEvents)
  Problems of the mock or the test setup (a test should treat them as bugs):
    METHOD -> could not send: why      Sink error: why   Headset error: why
    mock error in CALLBACK: exception  (the pending ConnectProfile then fails)

BlueZ behaviour imitated, and choices where it was not certain
--------------------------------------------------------------
* RegisterEndpoint (media.c): duplicate sender+path is checked before the
  properties -> AlreadyExists; empty/malformed props, missing UUID or Codec,
  wrong variant types or an unknown UUID -> InvalidArguments.
  UnregisterEndpoint of an unknown path -> DoesNotExist.
  Removing an endpoint sends ClearConfiguration for each of its transports
  and then MediaEndpoint1.Release (release_endpoint), before the reply.
  If the owner left the bus, nothing is sent; its transports just vanish.
* ConnectProfile (device.c connect_profiles, 5.66 error strings):
    another connect pending        -> InProgress "br-connection-busy"
    adapter not powered            -> NotReady "br-connection-adapter-not-powered"
    UUID not among device UUIDs    -> NotAvailable "br-connection-profile-unavailable"
    A2DP already connected (ours or someone else's) -> success, nothing
      is called (connect_next() gets -EALREADY and BlueZ replies success;
      docs mention AlreadyConnected but 5.66 does not send it here)
    unpaired device                -> Failed "br-connection-create-socket"
      (uncertain: a real unpaired speaker might also give page-timeout or
      trigger pairing)
    no A2DP Source SBC endpoint, endpoint error/timeout, invalid config
                                   -> Failed "br-connection-create-socket"
      (sink.c completes with -EIO, which maps to that string)
  Device Connected becomes true when the link comes up, i.e. before
  SelectConfiguration (the ACL is up before AVDTP discovery); the reply comes
  after SetConfiguration has been answered.  The remote SEP object
  DEV/sepN (MediaEndpoint1 with UUID/Codec/Capabilities/Device), one per
  --sink-sep, is exported while connected, as BlueZ >= 5.52 does.
* Which of our endpoints (a2dp.c a2dp_select_eps, 5.66): every A2DP Source
  endpoint on the adapter, in registration order, that has a speaker SEP of
  the same codec (for vendor codecs 0xFF, the same vendor and vendor codec
  id, the first 6 bytes of the capabilities); SelectConfiguration goes to
  the first; an error reply moves on to the next; none left -> Failed
  "br-connection-create-socket".
* The configuration returned by SelectConfiguration is checked the way the
  speaker would (bluetoothd itself only forwards it; the remote rejects it
  with AVDTP SET_CONFIGURATION errors): 4 bytes, exactly one bit per field,
  every choice within the speaker caps, 2 <= min <= max <= 250 and within
  the speaker's bitpool range.
* Endpoint calls time out after 3 s (media.c REQUEST_TIMEOUT).  On a
  NoReply error BlueZ clears every transport of that endpoint.
* Transport (transport.c): path DEV/sep1/fdN with a global N; UUID is the
  *local endpoint's* UUID (A2DP Source 0000110a for us), Endpoint is the
  remote SEP path.  Acquire: State pending -> reply (fd, imtu, omtu) ->
  active.  Acquire while owned or not idle -> NotAuthorized; TryAcquire
  when State is not "pending" -> NotAvailable; Release by a non-owner ->
  NotAuthorized; Release -> reply -> State idle.  The owner leaving the bus
  releases it.
* Volume Set (5.66 set_volume): wrong type or > 127 -> org.bluez.Error.
  InvalidArguments; otherwise success at once, the new value is applied and
  signalled when the speaker confirms (here after --volume-delay).  Setting
  the current value changes nothing.  Absent property -> org.freedesktop.
  DBus.Error.UnknownProperty (gdbus); Get of an absent property ->
  org.freedesktop.DBus.Error.InvalidArgs.
* RegisterProfile (profile.c, 5.66): the same sender and path ->
  AlreadyExists; a UUID anyone registered (an exact string compare) ->
  NotPermitted "UUID already registered".  UnregisterProfile of an unknown
  path -> DoesNotExist.  The owner leaving the bus removes its profiles and
  closes their channels.  ConnectProfile(HFP Hands-Free) without an HFP AG
  registered -> NotAvailable "br-connection-profile-unavailable"; while
  its NewConnection is pending -> InProgress; connected -> success.
* DisconnectProfile when not connected -> success (BlueZ >= 5.55);
  UUID not in the device's UUIDs -> InvalidArguments.  Disconnect when not
  connected -> NotConnected.
* Link loss (Vanish): the media socket closes first, then State idle,
  ClearConfiguration, InterfacesRemoved, Connected false.
* The client's socket end is an AF_UNIX SOCK_SEQPACKET socket; the kernel
  queues only net.unix.max_dgram_qlen (usually 10) packets before EAGAIN,
  so a paused sink produces congestion quickly, much like an L2CAP link.
"""

import argparse
import ctypes
import functools
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback

import dbus
import dbus.service
import dbus.lowlevel
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

BLUEZ_NAME = 'org.bluez'
PROPS = 'org.freedesktop.DBus.Properties'
INTROSPECT = 'org.freedesktop.DBus.Introspectable'
OBJMGR = 'org.freedesktop.DBus.ObjectManager'
ADAPTER = 'org.bluez.Adapter1'
MEDIA = 'org.bluez.Media1'
DEVICE = 'org.bluez.Device1'
BATTERY = 'org.bluez.Battery1'
TRANSPORT = 'org.bluez.MediaTransport1'
ENDPOINT = 'org.bluez.MediaEndpoint1'
CTL = 'org.alsabt.Mock1'
CTL_PATH = '/org/alsabt/mock'
SO_TIMESTAMPNS = 35                  # Linux; socket lacks the name
SINK_READY_TIMEOUT_S = 10          # a sink that says nothing by then is the test's to report


def full_uuid(short):
    return '0000%s-0000-1000-8000-00805f9b34fb' % short


A2DP_SOURCE = full_uuid('110a')
A2DP_SINK = full_uuid('110b')
AVRCP_TARGET = full_uuid('110c')
AVRCP = full_uuid('110e')
HSP_HS = full_uuid('1108')
HSP_AG = full_uuid('1112')
HFP_HF = full_uuid('111e')
HFP_AG = full_uuid('111f')
PROFILE_MANAGER = 'org.bluez.ProfileManager1'
PROFILE = 'org.bluez.Profile1'
PNP = full_uuid('1200')
# The UUIDs media.c accepts for RegisterEndpoint.
ENDPOINT_UUIDS = {A2DP_SOURCE, A2DP_SINK, HFP_AG, HSP_AG, HFP_HF, HSP_HS}

FAULT_METHODS = {
    'GetManagedObjects', 'RegisterEndpoint', 'UnregisterEndpoint',
    'ConnectProfile', 'DisconnectProfile', 'Connect', 'Disconnect',
    'Acquire', 'TryAcquire', 'Release', 'SelectConfiguration',
    'SetConfiguration',
}
OUTGOING = {'SelectConfiguration', 'SetConfiguration'}

# SBC codec information element: (byte, mask, field name).
SBC_FIELDS = [(0, 0xF0, 'sampling frequency'), (0, 0x0F, 'channel mode'),
              (1, 0xF0, 'block length'), (1, 0x0C, 'subbands'),
              (1, 0x03, 'allocation method')]
FOREIGN_CONFIG = bytes.fromhex('21150235')  # 44.1 kHz joint stereo, 16/8/loudness


# ---------------------------------------------------------------- helpers

class BluezError(dbus.DBusException):
    """An error reply with a given D-Bus error name."""

    def __init__(self, name, message):
        super().__init__(message, name=name)


def bluez_error(short, message):
    return BluezError('org.bluez.Error.' + short, message)


def invalid_args():
    return bluez_error('InvalidArguments', 'Invalid arguments in method call')


def ay(data):
    return dbus.Array([dbus.Byte(b) for b in data], signature='y')


def as_bytes(value):
    """bytes of a D-Bus 'ay' value, or None when it is something else."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dbus.Array) and value.signature == 'y':
        return bytes(int(b) for b in value)
    return None


def show(value):
    """A D-Bus value for the event log (bytes as hex, numbers as numbers)."""
    data = as_bytes(value)
    if data is not None:
        return data.hex()
    if isinstance(value, int):
        return str(int(value))
    return str(value)


def describe_endpoint(props):
    """RegisterEndpoint properties for the event log, whatever their types."""
    found = {str(k).lower(): v for k, v in props.items()}
    uuid, codec = found.get('uuid', '-'), found.get('codec')
    caps = as_bytes(found.get('capabilities', b''))
    return 'uuid=%s codec=%s caps=%s delay_reporting=%d' % (
        uuid, int(codec) if isinstance(codec, int) else '-',
        caps.hex() if caps is not None else '?', bool(found.get('delayreporting')))


def normalize_uuid(text):
    """Accepts full UUIDs and the short 0x110b / 110b forms bt_name2string takes."""
    text = str(text).strip().lower()
    if text.startswith('0x'):
        text = text[2:]
    if len(text) == 4 and all(c in '0123456789abcdef' for c in text):
        return full_uuid(text)
    return text


def codec_key(codec, caps):
    """(codec, vendor, vendor codec) as BlueZ matches endpoints."""
    if codec == 0xff:
        return (codec, bytes(caps[:6])) if len(caps) >= 6 else None
    return (codec, b'')


def codec_name(codec, config):
    names = {(0, b''): 'sbc', (2, b''): 'aac', (0xff, bytes.fromhex('4f0000000100')): 'aptx',
             (0xff, bytes.fromhex('d70000002400')): 'aptx_hd',
             (0xff, bytes.fromhex('2d010000aa00')): 'ldac'}
    return names.get(codec_key(codec, config), '%02x' % codec)


def config_problem(codec, config, caps):
    """Why the speaker would reject this configuration, or None."""
    if codec == 0:
        return sbc_config_problem(config, caps)
    if codec == 2:
        return aac_config_problem(config, caps)
    if config is None:
        return 'not an array of bytes'
    if len(config) != len(caps):
        return 'length %d, the speaker\'s capabilities have %d' % (len(config), len(caps))
    if config[:6] != caps[:6]:
        return 'vendor/codec id %s, the speaker has %s' % (config[:6].hex(), caps[:6].hex())
    for i in range(6, len(config)):
        if config[i] & ~caps[i]:
            return 'byte %d: 0x%02x not within the speaker\'s 0x%02x' % (i, config[i], caps[i])
    fields = {'aptx': ((6, 0xf0, 'frequency'), (6, 0x0f, 'channel mode')),
              'aptx_hd': ((6, 0xf0, 'frequency'), (6, 0x0f, 'channel mode')),
              'ldac': ((6, 0xff, 'frequency'), (7, 0xff, 'channel mode'))}
    for index, mask, name in fields.get(codec_name(codec, config), ()):
        value = config[index] & mask
        if value == 0 or value & (value - 1):
            return '%s: not exactly one choice (0x%02x)' % (name, value)
    return None


def aac_config_problem(config, caps):
    """MPEG-2,4 AAC (A2DP 1.3 section 4.5): one object type, rate and channel
    mode within the caps; a bitrate no higher than the speaker's (if it says one)."""
    if config is None:
        return 'not an array of bytes'
    if len(config) != 6 or len(caps) != 6:
        return 'length %d, AAC needs 6' % len(config)
    fields = ((config[0], caps[0], 'object type'),
              (config[1] << 4 | config[2] >> 4, caps[1] << 4 | caps[2] >> 4, 'frequency'),
              (config[2] & 0x0f, caps[2] & 0x0f, 'channels'))
    for value, allowed, name in fields:
        if value == 0 or value & (value - 1):
            return '%s: not exactly one choice (0x%x)' % (name, value)
        if value & ~allowed:
            return '%s: 0x%x not supported by the speaker' % (name, value)
    rate = (config[3] & 0x7f) << 16 | config[4] << 8 | config[5]
    peak = (caps[3] & 0x7f) << 16 | caps[4] << 8 | caps[5]
    if peak and rate > peak:
        return 'bitrate %d above the speaker\'s %d' % (rate, peak)
    return None


def sbc_config_problem(config, caps):
    """Why the speaker would reject this SBC configuration, or None."""
    if config is None:
        return 'not an array of bytes'
    if len(config) != 4:
        return 'length %d, SBC needs 4' % len(config)
    if len(caps) < 4:
        return 'speaker capabilities malformed'
    for index, mask, name in SBC_FIELDS:
        value = config[index] & mask
        if value == 0 or value & (value - 1):
            return '%s: not exactly one choice (0x%02x)' % (name, value)
        if value & ~caps[index]:
            return '%s: 0x%02x not supported by the speaker' % (name, value)
    low, high = config[2], config[3]
    if low < 2 or low > high or high > 250:
        return 'bitpool range %d..%d invalid' % (low, high)
    if low < caps[2] or high > caps[3]:
        return 'bitpool range %d..%d outside speaker %d..%d' % (
            low, high, caps[2], caps[3])
    return None


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig):
    """prctl(PR_SET_PDEATHSIG): no orphan is left if our parent is killed."""
    _libc.prctl(1, int(sig), 0, 0, 0)


# ---------------------------------------------------------------- call bookkeeping

class Call:
    """One incoming method call: logs it, applies faults, logs the answer."""

    def __init__(self, mock, method, ok, err):
        self.mock, self.method = mock, method
        self._ok, self._err = ok, err
        self.done = False

    def reply(self, *values):
        if self.done:
            return
        self.done = True
        slow = self.mock.faults.get(self.method)
        if slow.startswith('slow:'):
            def later():
                self.mock.log('%s -> ok (%s)' % (self.method, slow))
                self._ok(*values)
                return False
            GLib.timeout_add(int(float(slow[5:]) * 1000), later)
            return
        self.mock.log('%s -> ok' % self.method)
        self._ok(*values)

    def fail(self, exc):
        if self.done:
            return
        self.done = True
        self.mock.log('%s -> %s: %s' % (self.method, exc.get_dbus_name(),
                                         exc.get_dbus_message()))
        self._err(exc)


# ---------------------------------------------------------------- objects

class PropObject(dbus.service.Object):
    """An exported object with org.freedesktop.DBus.Properties like gdbus."""

    def __init__(self, mock, path):
        super().__init__(mock.bus, path)
        self.mock = mock
        self.path = path
        self.props = {}          # interface -> {name: typed dbus value}
        self.writable = set()    # (interface, name)

    def managed(self):
        """This object's entry in GetManagedObjects, like BlueZ's gdbus."""
        data = {INTROSPECT: dbus.Dictionary({}, signature='sv')}
        for iface, props in self.props.items():
            data[iface] = dbus.Dictionary(props, signature='sv')
        data[PROPS] = dbus.Dictionary({}, signature='sv')
        return dbus.Dictionary(data, signature='sa{sv}')

    def update(self, iface, **changes):
        """Sets properties and emits PropertiesChanged for real changes."""
        props = self.props[iface]
        changed = {k: v for k, v in changes.items() if props.get(k) != v or k not in props}
        if not changed:
            return
        props.update(changed)
        self.PropertiesChanged(iface, dbus.Dictionary(changed, signature='sv'),
                               dbus.Array([], signature='s'))

    def _iface_props(self, iface):
        if iface not in self.props:
            raise BluezError('org.freedesktop.DBus.Error.InvalidArgs',
                             "No such interface '%s'" % iface)
        return self.props[iface]

    @dbus.service.method(PROPS, in_signature='ss', out_signature='v')
    def Get(self, iface, name):
        props = self._iface_props(iface)
        if name not in props:
            raise BluezError('org.freedesktop.DBus.Error.InvalidArgs',
                             "No such property '%s'" % name)
        return props[name]

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return dbus.Dictionary(self._iface_props(iface), signature='sv')

    @dbus.service.method(PROPS, in_signature='ssv', sender_keyword='sender')
    def Set(self, iface, name, value, sender=None):
        tag = 'SetVolume' if (iface, name) == (TRANSPORT, 'Volume') else 'SetProperty'
        if tag == 'SetVolume':
            self.mock.log('SetVolume %s %s %s' % (show(value), self.path, sender))
        else:
            self.mock.log('SetProperty %s %s %s %s' % (self.path, name, show(value), sender))
        try:
            self._set(iface, name, value, sender)
        except BluezError as e:
            self.mock.log('%s -> %s: %s' % (tag, e.get_dbus_name(), e.get_dbus_message()))
            raise
        self.mock.log('%s -> ok' % tag)

    def _set(self, iface, name, value, sender):
        """gdbus properties_set(): existence, then writability, then the setter."""
        props = self._iface_props(iface)
        if name not in props:
            raise BluezError('org.freedesktop.DBus.Error.UnknownProperty',
                             "No such property '%s'" % name)
        if (iface, name) not in self.writable:
            raise BluezError('org.freedesktop.DBus.Error.PropertyReadOnly',
                             "Property '%s' is not writable" % name)
        self.on_set(iface, name, value, sender)

    def on_set(self, iface, name, value, sender):
        """Default for writable properties: store and signal."""
        self.update(iface, **{name: value})

    @dbus.service.signal(PROPS, signature='sa{sv}as')
    def PropertiesChanged(self, iface, changed, invalidated):
        pass


class Root(dbus.service.Object):
    """"/" with the ObjectManager, as bluetoothd exports it."""

    def __init__(self, mock):
        super().__init__(mock.bus, '/')
        self.mock = mock

    @dbus.service.method(OBJMGR, out_signature='a{oa{sa{sv}}}', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def GetManagedObjects(self, sender=None, ok=None, err=None):
        call = self.mock.begin('GetManagedObjects', sender, ok, err)
        if call:
            call.reply(self.mock.managed_objects())

    @dbus.service.signal(OBJMGR, signature='oa{sa{sv}}')
    def InterfacesAdded(self, path, interfaces):
        pass

    @dbus.service.signal(OBJMGR, signature='oas')
    def InterfacesRemoved(self, path, interfaces):
        pass


class Endpoint:
    """A media endpoint some client registered on an adapter (media.c)."""

    def __init__(self, adapter, sender, path, uuid, codec, caps, delay_reporting):
        self.adapter, self.sender, self.path = adapter, sender, path
        self.uuid, self.codec, self.caps = uuid, codec, caps
        self.delay_reporting = delay_reporting
        self.transports = []
        self.jobs = set()        # ConnectJobs waiting on this endpoint


class Adapter(PropObject):
    """/org/bluez/hciN: Adapter1 + Media1."""

    def __init__(self, mock, name, address, powered):
        super().__init__(mock, '/org/bluez/' + name)
        self.name = name
        self.endpoints = []
        self.props[ADAPTER] = {
            'Address': dbus.String(address), 'AddressType': dbus.String('public'),
            'Name': dbus.String('alsabt-mock'), 'Alias': dbus.String('alsabt-mock'),
            'Class': dbus.UInt32(0x7c010c), 'Powered': dbus.Boolean(powered),
            'Discoverable': dbus.Boolean(False), 'Pairable': dbus.Boolean(True),
            'Discovering': dbus.Boolean(False),
            'UUIDs': dbus.Array([A2DP_SOURCE, AVRCP, AVRCP_TARGET, PNP], signature='s'),
        }
        self.props[MEDIA] = {}
        self.writable = {(ADAPTER, 'Powered'), (ADAPTER, 'Alias'),
                         (ADAPTER, 'Discoverable'), (ADAPTER, 'Pairable')}

    @property
    def powered(self):
        return bool(self.props[ADAPTER]['Powered'])

    def on_set(self, iface, name, value, sender):
        if name == 'Powered':
            self.mock.log('Powered %s %d' % (self.name, bool(value)))
            self.update(ADAPTER, Powered=dbus.Boolean(bool(value)))
            if not value:   # powering off drops every link, like link loss
                for dev in self.mock.devices_of(self):
                    dev.link_lost()
            return
        super().on_set(iface, name, value, sender)

    def find_endpoint(self, sender=None, path=None):
        for ep in self.endpoints:
            if (sender is None or ep.sender == sender) and (path is None or ep.path == path):
                return ep
        return None

    @dbus.service.method(MEDIA, in_signature='oa{sv}', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def RegisterEndpoint(self, path, props, sender=None, ok=None, err=None):
        args = '%s %s %s %s' % (sender, path, self.name, describe_endpoint(props))
        call = self.mock.begin('RegisterEndpoint', args, ok, err)
        if not call:
            return
        try:
            if self.find_endpoint(sender, str(path)):
                raise bluez_error('AlreadyExists', 'Already Exists')
            ep = self._parse_endpoint(sender, str(path), props)
        except BluezError as e:
            call.fail(e)
            return
        self.endpoints.append(ep)
        self.mock.watch_owner(sender)
        call.reply()

    def _parse_endpoint(self, sender, path, props):
        """media.c parse_properties(): keys are case-insensitive."""
        if not props:
            raise invalid_args()
        uuid = codec = None
        caps, delay = b'', False
        for key, value in props.items():
            key = key.lower()
            if key == 'uuid':
                if not isinstance(value, dbus.String):
                    raise invalid_args()
                uuid = str(value).lower()
            elif key == 'codec':
                if not isinstance(value, dbus.Byte):
                    raise invalid_args()
                codec = int(value)
            elif key == 'delayreporting':
                if not isinstance(value, dbus.Boolean):
                    raise invalid_args()
                delay = bool(value)
            elif key == 'capabilities':
                caps = as_bytes(value)
                if caps is None:
                    raise invalid_args()
        if uuid is None or codec is None or uuid not in ENDPOINT_UUIDS:
            raise invalid_args()
        return Endpoint(self, sender, path, uuid, codec, caps, delay)

    @dbus.service.method(MEDIA, in_signature='o', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def UnregisterEndpoint(self, path, sender=None, ok=None, err=None):
        call = self.mock.begin('UnregisterEndpoint',
                               '%s %s %s' % (sender, path, self.name), ok, err)
        if not call:
            return
        ep = self.find_endpoint(sender, str(path))
        if ep is None:
            call.fail(bluez_error('DoesNotExist', 'Does Not Exist'))
            return
        self.mock.remove_endpoint(ep, owner_alive=True)
        call.reply()


class RemoteSep(PropObject):
    """DEV/sepN: one of the speaker's sink SEPs, exported while connected."""

    def __init__(self, mock, device, number, codec, caps, source=False):
        super().__init__(mock, '%s/sep%d' % (device.path, number))
        self.codec, self.caps = codec, caps
        self.props[ENDPOINT] = {
            'UUID': dbus.String(A2DP_SOURCE if source else A2DP_SINK), 'Codec': dbus.Byte(codec),
            'Capabilities': ay(caps), 'Device': dbus.ObjectPath(device.path),
        }


class Device(PropObject):
    """/org/bluez/hciN/dev_XX_..: Device1 (+ Battery1)."""

    def __init__(self, mock, adapter, address, flags):
        super().__init__(mock, '%s/dev_%s' % (adapter.path, address.replace(':', '_').upper()))
        self.adapter = adapter
        self.short = self.path.rsplit('/', 1)[1]
        self.transports = []
        self.connecting = None   # ConnectJob while a connect is pending
        self.seps = []           # RemoteSeps while connected
        self.hfp = None          # HfpLink while HFP is connected
        name = flags.get('name', 'Mock Speaker')
        self.phone = 'phone' in flags
        uuids = [HFP_HF, PNP] if 'nosink' in flags else [A2DP_SINK, AVRCP, AVRCP_TARGET, PNP]
        if self.phone:
            uuids = [A2DP_SOURCE, AVRCP, AVRCP_TARGET, PNP]
        if 'headset' in flags:
            uuids = [A2DP_SINK, AVRCP, AVRCP_TARGET, HFP_HF, PNP]
        paired = 'unpaired' not in flags
        self.props[DEVICE] = {
            'Address': dbus.String(address.upper()), 'AddressType': dbus.String('public'),
            'Name': dbus.String(name), 'Alias': dbus.String(name),
            'Class': dbus.UInt32(0x240414), 'Icon': dbus.String('audio-card'),
            'Paired': dbus.Boolean(paired), 'Trusted': dbus.Boolean(paired),
            'Blocked': dbus.Boolean(False), 'LegacyPairing': dbus.Boolean(False),
            'Connected': dbus.Boolean('connected' in flags),
            'UUIDs': dbus.Array(uuids, signature='s'),
            'Adapter': dbus.ObjectPath(adapter.path),
            'ServicesResolved': dbus.Boolean('connected' in flags),
        }
        self.writable = {(DEVICE, 'Alias'), (DEVICE, 'Trusted'), (DEVICE, 'Blocked')}
        if mock.args.battery is not None:
            self.props[BATTERY] = {'Percentage': dbus.Byte(mock.args.battery)}

    @property
    def connected(self):
        return bool(self.props[DEVICE]['Connected'])

    def has_uuid(self, uuid):
        return uuid in [str(u) for u in self.props[DEVICE]['UUIDs']]

    def set_connected(self, value):
        if self.connected != value:
            self.mock.log('Connected %s %d' % (self.short, value))
        self.update(DEVICE, Connected=dbus.Boolean(value),
                    ServicesResolved=dbus.Boolean(value))
        if value and not self.seps:
            self.add_seps()
        elif not value and self.seps:
            for sep in self.seps:
                self.mock.remove_object(sep)
            self.seps = []

    def add_seps(self):
        seps = self.mock.phone_seps if self.phone else self.mock.sink_seps
        self.seps = [RemoteSep(self.mock, self, i + 1, codec, caps, self.phone)
                     for i, (codec, caps) in enumerate(seps)]
        for sep in self.seps:
            self.mock.add_object(sep)

    def candidates(self):
        """(our endpoint, speaker SEP) pairs BlueZ would try, in its order."""
        pairs = []
        ours = A2DP_SINK if self.phone else A2DP_SOURCE
        for ep in self.adapter.endpoints:
            if ep.uuid != ours:
                continue
            for sep in self.seps:
                key = codec_key(sep.codec, sep.caps)
                if key is not None and key == codec_key(ep.codec, ep.caps):
                    pairs.append((ep, sep))
                    break
        return pairs

    def set_battery(self, percent):
        if BATTERY in self.props:
            self.update(BATTERY, Percentage=dbus.Byte(percent))
        else:
            self.props[BATTERY] = {'Percentage': dbus.Byte(percent)}
            self.mock.root.InterfacesAdded(self.path, dbus.Dictionary(
                {BATTERY: dbus.Dictionary(self.props[BATTERY], signature='sv')},
                signature='sa{sv}'))

    def drop_transports(self, clear):
        if self.connecting:
            self.connecting.abort()
        for t in list(self.transports):
            self.mock.drop_transport(t, clear=clear)

    def link_lost(self):
        """The speaker disappeared: sockets close, then the D-Bus side follows."""
        if self.hfp:
            self.hfp.end('link lost')
        for t in self.transports:
            t.stop_sinks()
        self.drop_transports(clear=True)
        self.set_connected(False)

    # -- Device1 methods

    @dbus.service.method(DEVICE, in_signature='s', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def ConnectProfile(self, uuid, sender=None, ok=None, err=None):
        call = self.mock.begin('ConnectProfile', '%s %s %s' % (self.short, uuid, sender), ok, err)
        if not call:
            return
        uuid = normalize_uuid(uuid)
        if uuid == HFP_HF:
            self.connect_hfp(call)
        else:
            self.connect_a2dp(call, uuid)

    def connect_hfp(self, call):
        """Our HFP Audio Gateway to the headset's Hands-Free: its RFCOMM
        channel to the profile that registered HFP AG."""
        prof = self.mock.profile_manager.find(uuid=HFP_AG)
        try:
            if self.connecting or (self.hfp and not self.hfp.up):
                raise bluez_error('InProgress', 'br-connection-busy')
            if not self.adapter.powered:
                raise bluez_error('NotReady', 'br-connection-adapter-not-powered')
            if not self.has_uuid(HFP_HF) or not prof:
                raise bluez_error('NotAvailable', 'br-connection-profile-unavailable')
            if self.hfp:
                call.reply()        # -EALREADY: success
                return
            if not self.props[DEVICE]['Paired']:
                raise bluez_error('Failed', 'br-connection-create-socket')
            if not self.mock.args.headset:
                self.mock.log('Headset error: no --headset')
                raise bluez_error('Failed', 'mock has no --headset')
        except BluezError as e:
            call.fail(e)
            return
        HfpLink(self.mock, self, prof).start(call)

    @dbus.service.method(DEVICE, sender_keyword='sender', async_callbacks=('ok', 'err'))
    def Connect(self, sender=None, ok=None, err=None):
        call = self.mock.begin('Connect', '%s %s' % (self.short, sender), ok, err)
        if call:
            # Connect() connects every auto-connect profile; A2DP is the one we model.
            uuid = A2DP_SINK if self.has_uuid(A2DP_SINK) else 'none'
            self.connect_a2dp(call, uuid)

    def connect_a2dp(self, call, uuid):
        try:
            if self.connecting:
                raise bluez_error('InProgress', 'br-connection-busy')
            if not self.adapter.powered:
                raise bluez_error('NotReady', 'br-connection-adapter-not-powered')
            if not self.has_uuid(uuid):
                raise bluez_error('NotAvailable', 'br-connection-profile-unavailable')
            if uuid != (A2DP_SOURCE if self.phone else A2DP_SINK) or self.transports:
                call.reply()        # not modelled, or -EALREADY: BlueZ says success
                return
            if not self.props[DEVICE]['Paired']:
                raise bluez_error('Failed', 'br-connection-create-socket')
            if self.mock.faults.get('ConnectProfile') == 'busy':
                self.set_connected(True)
                self.mock.foreign_transport(self)
                call.reply()
                return
            had_seps = bool(self.seps)
            if not had_seps:
                self.add_seps()          # AVDTP discovery
            pairs = self.candidates()
            if not pairs:
                if not had_seps:
                    self.set_connected(False)
                raise bluez_error('Failed', 'br-connection-create-socket')
        except BluezError as e:
            call.fail(e)
            return
        ConnectJob(self.mock, self, pairs, call).start()

    @dbus.service.method(DEVICE, in_signature='s', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def DisconnectProfile(self, uuid, sender=None, ok=None, err=None):
        call = self.mock.begin('DisconnectProfile', '%s %s %s' % (self.short, uuid, sender),
                               ok, err)
        if not call:
            return
        uuid = normalize_uuid(uuid)
        if not self.has_uuid(uuid):
            call.fail(invalid_args())
            return
        if uuid == HFP_HF and self.hfp:
            self.hfp.request_disconnection()
        if uuid == (A2DP_SOURCE if self.phone else A2DP_SINK) and (self.transports or self.connecting):
            self.drop_transports(clear=True)
            self.set_connected(False)
        call.reply()

    @dbus.service.method(DEVICE, sender_keyword='sender', async_callbacks=('ok', 'err'))
    def Disconnect(self, sender=None, ok=None, err=None):
        call = self.mock.begin('Disconnect', '%s %s' % (self.short, sender), ok, err)
        if not call:
            return
        if not self.connected:
            call.fail(bluez_error('NotConnected', 'Not Connected'))
            return
        self.drop_transports(clear=True)
        self.set_connected(False)
        call.reply()


def guarded(callback):
    """For endpoint-reply callbacks: a bug in the mock fails the pending
    ConnectProfile (and says so) instead of leaving it unanswered."""
    @functools.wraps(callback)
    def wrapper(self, *args):
        try:
            return callback(self, *args)
        except Exception as e:
            traceback.print_exc()
            self.mock.log('mock error in %s: %r' % (callback.__name__, e))
            if not self.finished:
                self.fail()
    return wrapper


class ConnectJob:
    """The A2DP setup behind one pending ConnectProfile (sink.c + a2dp.c).

    SelectConfiguration -> transport object -> SetConfiguration -> reply,
    all while the ConnectProfile call waits for its answer.
    """

    def __init__(self, mock, device, pairs, call):
        self.mock, self.device, self.call = mock, device, call
        self.pairs = list(pairs)
        self.ep, self.sep = self.pairs.pop(0)
        self.transport = None
        self.finished = False

    def start(self):
        self.device.connecting = self
        self.ep.jobs.add(self)
        self.device.set_connected(True)      # the ACL is up before AVDTP discovery
        self._select()

    def _select(self):
        action = self.mock.faults.get('SelectConfiguration')
        caps = self.sep.caps
        sig, args = 'ay', [ay(caps)]
        if action.startswith('garbage:'):
            caps = bytes.fromhex(action[8:])
            args = [ay(caps)]
        elif action == 'wrongtype':
            sig, args = 's', [caps.hex()]
        elif action == 'wrongsig':
            sig, args = 'ai', [dbus.Array([dbus.Int32(b) for b in caps], signature='i')]
        self.mock.log('SelectConfiguration %s %s' % (self.ep.path, caps.hex()))
        self.mock.endpoint_call(self.ep, 'SelectConfiguration', sig, args,
                                self._selected, self._select_failed)

    @guarded
    def _selected(self, *values):
        if self.finished:
            return
        config = as_bytes(values[0]) if len(values) == 1 else None
        problem = config_problem(self.sep.codec, config, self.sep.caps)
        if problem:
            self.mock.log('SelectConfiguration -> invalid %s: %s'
                          % (config.hex() if config is not None else repr(values), problem))
            self.fail()
            return
        self.mock.log('SelectConfiguration -> %s' % config.hex())
        self._configure(config)

    @guarded
    def _select_failed(self, exc):
        if self.finished:
            return
        self.mock.log('SelectConfiguration -> %s: %s' % (exc.get_dbus_name(),
                                                         exc.get_dbus_message()))
        if exc.get_dbus_name() == 'org.freedesktop.DBus.Error.NoReply':
            self.mock.clear_endpoint(self.ep)
        elif self.pairs:                     # a2dp.c select_cb: the next endpoint
            self.ep.jobs.discard(self)
            self.ep, self.sep = self.pairs.pop(0)
            self.ep.jobs.add(self)
            self._select()
            return
        self.fail()

    def _configure(self, config):
        action = self.mock.faults.get('SetConfiguration')
        if action.startswith('garbage:'):
            config = bytes.fromhex(action[8:])
        self.transport = self.mock.new_transport(self.device, self.ep, config, self.sep)
        path, props = self.transport.path, self.transport.props[TRANSPORT]
        sig, args = 'oa{sv}', [dbus.ObjectPath(path), dbus.Dictionary(props, signature='sv')]
        if action == 'wrongtype':
            bad = dict(props, Configuration=dbus.String(config.hex()),
                       Codec=dbus.UInt32(int(props['Codec'])))
            args = [dbus.ObjectPath(path), dbus.Dictionary(bad, signature='sv')]
        elif action == 'wrongsig':
            sig = 'sa{ss}'
            args = [dbus.String(path),
                    dbus.Dictionary({k: show(v) for k, v in props.items()}, signature='ss')]
        self.mock.log('SetConfiguration %s %s' % (path, config.hex()))
        self.mock.endpoint_call(self.ep, 'SetConfiguration', sig, args,
                                self._configured, self._configure_failed)

    @guarded
    def _configured(self, *values):
        if self.finished:
            return
        self.mock.log('SetConfiguration -> ok')
        self._end()
        self.call.reply()
        if self.device.phone:
            t = self.transport
            GLib.timeout_add(100, lambda: self.mock.phone_starts(t))

    @guarded
    def _configure_failed(self, exc):
        if self.finished:
            return
        self.mock.log('SetConfiguration -> %s: %s' % (exc.get_dbus_name(),
                                                      exc.get_dbus_message()))
        if exc.get_dbus_name() == 'org.freedesktop.DBus.Error.NoReply':
            self.mock.clear_endpoint(self.ep)
        elif self.transport in self.device.transports:
            self.mock.drop_transport(self.transport, clear=True)   # stream aborted
        self.fail()

    def _end(self):
        self.finished = True
        self.ep.jobs.discard(self)
        if self.device.connecting is self:
            self.device.connecting = None

    def fail(self):
        """Setup failed: -EIO from sink.c, the link goes down again."""
        self._end()
        if self.transport in self.device.transports:
            self.mock.drop_transport(self.transport, clear=True)
        if not self.device.transports:
            self.device.set_connected(False)
        self.call.fail(bluez_error('Failed', 'br-connection-create-socket'))

    def abort(self):
        if not self.finished:
            self.fail()


def spawn_on_fd3(argv, fd, base, ready_w=None):
    """Runs argv (the sink, the phone or the headset) with our end of a
    socket as its fd 3 (and ready_w, if given, as its fd 4), its output into
    base.out.  Closes fd here: only the child may hold it, so that it sees
    the client's EOF."""
    def child_setup():
        if fd != 3:
            os.dup2(fd, 3)
        os.set_inheritable(3, True)
        if ready_w is not None:
            os.dup2(ready_w, 4)
            os.set_inheritable(4, True)
        die_with_parent(signal.SIGKILL)

    try:
        with open(base + '.out', 'ab') as out:
            # close_fds=False: everything else is close-on-exec already,
            # and the socket must arrive as fd 3 (dup2 in child_setup).
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, close_fds=False,
                                    preexec_fn=child_setup)
    finally:
        os.close(fd)


class Sink:
    """The speaker end of one acquired socket: a spawned program or a drain."""

    def __init__(self, mock, transport, k, fd):
        self.mock, self.transport, self.k = mock, transport, k
        self.proc = None
        self.fd = None
        self.watch = None
        self.packets = self.bytes = self.max = 0
        self.exited = False
        if transport.device.phone and mock.args.phone:
            self._spawn_phone(fd)
        elif mock.args.sink:
            self._spawn(fd)
        else:
            self._drain(fd)

    def _spawn_on_fd3(self, argv, fd, base, ready_w=None):
        self.proc = spawn_on_fd3(argv, fd, base, ready_w)

    def _spawn(self, fd):
        base = os.path.join(self.mock.outdir, 'capture-%d' % self.k)
        argv = [self.mock.args.sink, '--fd', '3', '--wav', base + '.wav', '--log', base + '.csv',
                '--codec', self.transport.codec_name()]
        rate = self.transport.stream_rate()
        if rate:                # aptX streams do not say their rate; the AAC decoder warms up
            argv += ['--rate', str(rate)]

        # A speaker's link drains the socket from the moment it is acquired;
        # a sink still starting (an exec, libavcodec loading: 100 ms and more
        # on a loaded machine) would let the first packets fill the socket and
        # the client would rightly drop one as congestion.  So the socket is
        # handed over once the sink says, on fd 4, that it is reading.
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._spawn_on_fd3(argv + ['--ready-fd', '4'], fd, base, ready_w)
        finally:
            os.close(ready_w)
        try:
            ok = select.select([ready_r], [], [], SINK_READY_TIMEOUT_S)[0] and os.read(ready_r, 1)
        finally:
            os.close(ready_r)
        self.mock.log('Sink %d %s pid=%d%s' % (self.k, self.transport.path, self.proc.pid,
                                               '' if ok else ' (never said it was ready)'))

    def _spawn_phone(self, fd):
        base = os.path.join(self.mock.outdir, 'phone-%d' % self.k)
        argv = [self.mock.args.phone, '--fd', '3', '--config', self.transport.config.hex(),
                '--codec', self.transport.codec_name(),
                '--mtu', str(self.mock.args.mtu), '--log', base + '.csv']
        argv += self.mock.args.phone_args.split()

        self._spawn_on_fd3(argv, fd, base)
        self.mock.log('Phone %d %s pid=%d' % (self.k, self.transport.path, self.proc.pid))

    def _drain(self, fd):
        os.set_blocking(fd, False)
        self.fd = fd
        self._watch_on()
        self.mock.log('Sink %d %s drain' % (self.k, self.transport.path))

    def _watch_on(self):
        self.watch = GLib.io_add_watch(self.fd, GLib.PRIORITY_DEFAULT,
                                       GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, self._readable)

    def _readable(self, fd, cond):
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                data = b''
            if not data:
                self.mock.log('SinkEOF %s %d packets=%d bytes=%d max=%d' % (
                    self.transport.path, self.k, self.packets, self.bytes, self.max))
                self.watch = None
                self._close_fd()
                return False
            self.packets += 1
            self.bytes += len(data)
            self.max = max(self.max, len(data))

    def _close_fd(self):
        if self.watch is not None:
            GLib.source_remove(self.watch)
            self.watch = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def alive(self):
        if self.proc:
            return not self.exited and self.proc.poll() is None
        return self.fd is not None

    def poll(self):
        """Called periodically: reports a spawned sink's exit once."""
        if self.proc and not self.exited and self.proc.poll() is not None:
            self.exited = True
            self.mock.log('SinkExit %d rc=%d' % (self.k, self.proc.returncode))

    def pause(self, seconds):
        if self.proc:
            os.kill(self.proc.pid, signal.SIGSTOP)
            GLib.timeout_add(int(seconds * 1000), self._resume_proc)
        elif self.watch is not None:
            GLib.source_remove(self.watch)
            self.watch = None
            GLib.timeout_add(int(seconds * 1000), self._resume_drain)

    def _resume_proc(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        return False

    def _resume_drain(self):
        if self.fd is not None and self.watch is None:
            self._watch_on()
        return False

    def stop(self):
        """Closes the speaker end now: the client's next write fails (EPIPE)."""
        if self.proc:
            self._stop_proc()
        else:
            self._close_fd()

    def _stop_proc(self):
        if not self.alive():
            self.poll()
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=1.0)   # lets the sink finish its files
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=2.0)
        self.poll()


class Transport(PropObject):
    """DEV/sep1/fdN: org.bluez.MediaTransport1 (transport.c)."""

    def __init__(self, mock, device, endpoint, config, number, foreign=False, sep=None):
        sep_path = sep.path if sep else device.path + '/sep1'
        super().__init__(mock, '%s/fd%d' % (sep_path, number))
        self.config = config
        self.device, self.endpoint, self.foreign = device, endpoint, foreign
        self.owner = 'foreign' if foreign else None
        self.sinks = []
        props = {
            'Device': dbus.ObjectPath(device.path),
            # BlueZ reports the local endpoint's UUID, i.e. A2DP Source for us.
            'UUID': dbus.String(endpoint.uuid if endpoint else A2DP_SOURCE),
            'Codec': dbus.Byte(endpoint.codec if endpoint else 0),
            'Configuration': ay(config),
            'State': dbus.String('active' if foreign else 'idle'),
        }
        # Delay exists only if both sides negotiated delay reporting.
        if mock.delay is not None and (foreign or endpoint.delay_reporting):
            props['Delay'] = dbus.UInt16(mock.delay)
        if mock.volume is not None:
            props['Volume'] = dbus.UInt16(mock.volume)
        props['Endpoint'] = dbus.ObjectPath(sep_path)
        self.props[TRANSPORT] = props
        self.writable = {(TRANSPORT, 'Volume')}
        # A local sink that asked for delay reporting has a Delay; BlueZ
        # 5.79 and later let its owner set it (sent to the phone as an
        # AVDTP delay report), earlier ones only show it.
        if endpoint and endpoint.uuid == A2DP_SINK and endpoint.delay_reporting:
            props.setdefault('Delay', dbus.UInt16(0))
            if not mock.args.sink_delay_readonly:
                self.writable.add((TRANSPORT, 'Delay'))

    @property
    def state(self):
        return str(self.props[TRANSPORT]['State'])

    def codec_name(self):
        return codec_name(int(self.props[TRANSPORT]['Codec']), self.config)

    def stream_rate(self):
        """The configured rate, for the sink of a codec other than SBC."""
        name = self.codec_name()
        if name.startswith('aptx') and len(self.config) >= 7:
            return {0x80: 16000, 0x40: 32000, 0x20: 44100, 0x10: 48000}.get(self.config[6] & 0xf0)
        if name == 'ldac' and len(self.config) == 8:
            return {0x20: 44100, 0x10: 48000}.get(self.config[6])
        if name == 'aac' and len(self.config) == 6:
            return 44100 if self.config[1] & 0x01 else 48000 if self.config[2] & 0x80 else None
        return None

    def set_state(self, state):
        if self.state != state:
            self.mock.log('State %s %s' % (self.path, state))
            self.update(TRANSPORT, State=dbus.String(state))

    def set_volume(self, volume):
        self.mock.log('Volume %s %d' % (self.path, volume))
        # A real speaker keeps its volume: the next stream starts from it.
        self.mock.volume = volume
        self.update(TRANSPORT, Volume=dbus.UInt16(volume))

    def stop_sinks(self):
        for s in self.sinks:
            s.stop()

    def on_set(self, iface, name, value, sender):
        if name == 'Delay':
            self.set_delay(value, sender)
        else:
            self.set_volume_later(value)

    def set_delay(self, value, sender):
        """As BlueZ: only the owner of an acquired transport may set it."""
        if self.owner is not None and self.owner != sender:
            raise bluez_error('NotAuthorized', 'Operation Not Authorized')
        if not isinstance(value, dbus.UInt16):
            raise invalid_args()
        self.update(TRANSPORT, Delay=value)

    def set_volume_later(self, value):
        """Volume: validated and accepted now, applied when the speaker confirms."""
        if not isinstance(value, dbus.UInt16) or int(value) > 127:
            raise invalid_args()
        volume = int(value)
        if volume == int(self.props[TRANSPORT]['Volume']):
            return

        def apply():
            if self.mock.transports.get(self.path) is self:
                self.set_volume(volume)
            return False
        GLib.timeout_add(max(0, int(self.mock.args.volume_delay * 1000)), apply)

    def _acquire(self, call, sender, try_only):
        if self.owner is not None:
            raise bluez_error('NotAuthorized', 'Operation Not Authorized')
        if try_only and self.state != 'pending':
            raise bluez_error('NotAvailable', 'Operation currently not available')
        if not try_only and self.state != 'idle':
            raise bluez_error('NotAuthorized', 'Operation Not Authorized')
        self.set_state('pending')
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        if self.mock.args.sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.mock.args.sndbuf)
        # The kernel stamps each packet as it is queued for the sink, so the
        # sink logs true arrival times even while it is still starting up.
        theirs.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            self.sinks.append(Sink(self.mock, self, self.mock.next_capture(), theirs.detach()))
        except OSError as e:     # test setup error (bad --sink): fail loudly
            ours.close()
            self.set_state('idle')
            self.mock.log('Sink error: %s' % e)
            raise bluez_error('Failed', 'mock could not start the sink: %s' % e)
        self.owner = sender
        self.mock.watch_owner(sender)
        fd = dbus.types.UnixFd(ours)   # keeps a dup ...
        ours.close()
        mtu = dbus.UInt16(self.mock.args.mtu)
        call.reply(fd, mtu, mtu)
        os.close(fd.take())            # ... which we close once the reply is out
        self.set_state('active')
        if self.device.phone and self.mock.args.phone_pause:
            self.mock.schedule_phone_pause(self)

    @dbus.service.method(TRANSPORT, out_signature='hqq', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def Acquire(self, sender=None, ok=None, err=None):
        call = self.mock.begin('Acquire', '%s %s' % (self.path, sender), ok, err)
        if call:
            try:
                self._acquire(call, sender, try_only=False)
            except BluezError as e:
                call.fail(e)

    @dbus.service.method(TRANSPORT, out_signature='hqq', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def TryAcquire(self, sender=None, ok=None, err=None):
        call = self.mock.begin('TryAcquire', '%s %s' % (self.path, sender), ok, err)
        if call:
            try:
                self._acquire(call, sender, try_only=True)
            except BluezError as e:
                call.fail(e)

    @dbus.service.method(TRANSPORT, sender_keyword='sender', async_callbacks=('ok', 'err'))
    def Release(self, sender=None, ok=None, err=None):
        call = self.mock.begin('Release', '%s %s' % (self.path, sender), ok, err)
        if not call:
            return
        if self.owner is None or self.owner != sender:
            call.fail(bluez_error('NotAuthorized', 'Operation Not Authorized'))
            return
        self.owner = None
        call.reply()
        self.set_state('idle')


class Profile:
    """An external profile a client registered (profile.c ext_profile)."""

    def __init__(self, sender, path, uuid, opts):
        self.sender, self.path, self.uuid, self.opts = sender, path, uuid, opts
        self.links = []


class ProfileManager(dbus.service.Object):
    """/org/bluez: ProfileManager1 (profile.c register_profile)."""

    def __init__(self, mock):
        super().__init__(mock.bus, '/org/bluez')
        self.mock = mock
        self.profiles = []

    def find(self, sender=None, path=None, uuid=None):
        for p in self.profiles:
            if ((sender is None or p.sender == sender) and (path is None or p.path == path)
                    and (uuid is None or p.uuid == uuid)):
                return p
        return None

    @dbus.service.method(PROFILE_MANAGER, in_signature='osa{sv}', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def RegisterProfile(self, path, uuid, opts, sender=None, ok=None, err=None):
        call = self.mock.begin('RegisterProfile', '%s %s %s' % (sender, path, uuid), ok, err)
        if not call:
            return
        if self.find(sender=sender, path=str(path)):
            call.fail(bluez_error('AlreadyExists', 'Already Exists'))
        # An exact string compare, as profile.c's: a short or uppercase UUID
        # would slip past it there (hfp.md); lowercase 128-bit is the rule.
        elif str(uuid) in self.mock.args.profile_taken or self.find(uuid=str(uuid)):
            call.fail(bluez_error('NotPermitted', 'UUID already registered'))
        else:
            self.profiles.append(Profile(str(sender), str(path), str(uuid), opts))
            self.mock.watch_owner(sender)
            call.reply()

    @dbus.service.method(PROFILE_MANAGER, in_signature='o', sender_keyword='sender',
                         async_callbacks=('ok', 'err'))
    def UnregisterProfile(self, path, sender=None, ok=None, err=None):
        call = self.mock.begin('UnregisterProfile', '%s %s' % (sender, path), ok, err)
        if not call:
            return
        prof = self.find(sender=sender, path=str(path))
        if not prof:
            call.fail(bluez_error('DoesNotExist', 'Does Not Exist'))
            return
        self.remove(prof)
        call.reply()

    def remove(self, prof):
        for link in list(prof.links):
            link.end('ProfileGone')
        self.profiles.remove(prof)


class HfpLink:
    """One HFP connection: the RFCOMM channel is a stream socket whose other
    end the spawned --headset program holds; ours goes to the profile's
    owner in Profile1.NewConnection, and ConnectProfile is answered once
    that is (profile.c ext_connect, new_conn_reply)."""

    def __init__(self, mock, device, profile):
        self.mock, self.device, self.profile = mock, device, profile
        self.k = mock.next_capture()
        self.proc = None
        self.up = False

    def start(self, call):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        base = os.path.join(self.mock.outdir, 'headset-%d' % self.k)
        argv = [self.mock.args.headset, '--fd', '3', '--log', base + '.log']
        argv += self.mock.args.headset_args.split()
        try:
            self.proc = spawn_on_fd3(argv, theirs.detach(), base)
        except OSError as e:
            ours.close()
            self.mock.log('Headset error: %s' % e)
            call.fail(bluez_error('Failed', 'mock could not start the headset: %s' % e))
            return
        self.mock.log('Headset %d %s pid=%d' % (self.k, self.device.short, self.proc.pid))
        self.device.hfp = self
        self.profile.links.append(self)
        props = dbus.Dictionary({'Version': dbus.UInt16(0x0108),
                                 'Features': dbus.UInt16(self.mock.args.headset_features)},
                                signature='sv')
        fd = dbus.types.UnixFd(ours)   # a dup; ours closes now, the dup once sent
        ours.close()
        self.mock.log('NewConnection %s %s' % (self.profile.path, self.device.short))

        def on_ok(*_):
            self.mock.log('NewConnection -> ok')
            if self.device.hfp is self:
                self.up = True
                self.device.set_connected(True)
                call.reply()
            else:
                call.fail(bluez_error('Failed', 'br-connection-refused'))

        def on_err(e):
            self.mock.log('NewConnection -> %s: %s' % (e.get_dbus_name(), e.get_dbus_message()))
            self.end('refused')
            call.fail(bluez_error('Failed', 'br-connection-refused'))
        try:
            self.mock.bus.call_async(self.profile.sender, self.profile.path, PROFILE,
                                     'NewConnection', 'oha{sv}',
                                     [dbus.ObjectPath(self.device.path), fd, props],
                                     on_ok, on_err, timeout=25)
        except (TypeError, ValueError, dbus.DBusException) as e:
            self.mock.log('NewConnection -> could not send: %s' % e)
            self.end('refused')
            call.fail(bluez_error('Failed', 'br-connection-refused'))
        os.close(fd.take())

    def request_disconnection(self):
        """Device1.DisconnectProfile: bluetoothd asks the owner to let go.
        The channel stays up until the owner answers, as in bluetoothd, so
        the owner sees the request before its channel's end."""
        self.mock.log('RequestDisconnection %s %s' % (self.profile.path, self.device.short))
        self.mock.bus.call_async(self.profile.sender, self.profile.path, PROFILE,
                                 'RequestDisconnection', 'o', [dbus.ObjectPath(self.device.path)],
                                 lambda *_: self.end('DisconnectProfile'),
                                 lambda *_: self.end('DisconnectProfile'), timeout=25)

    def end(self, why):
        """The RFCOMM channel closes: the headset program is stopped."""
        if self.device.hfp is self:
            self.device.hfp = None
        if self in self.profile.links:
            self.profile.links.remove(self)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.mock.log('HeadsetEnd %d %s rc=%s' % (self.k, why, self.proc.returncode))
            self.proc = None

    def poll(self):
        if self.proc and self.proc.poll() is not None:
            self.end('exited')       # the headset dropped the channel


class Control(dbus.service.Object):
    """/org/alsabt/mock, org.alsabt.Mock1: what tests use to steer the mock."""

    def __init__(self, mock):
        super().__init__(mock.bus, CTL_PATH)
        self.mock = mock

    @dbus.service.method(CTL, in_signature='ss')
    def SetFault(self, method, action):
        self.mock.log('Mock.SetFault %s %s' % (method, action))
        self.mock.faults.set(str(method), str(action))

    @dbus.service.method(CTL)
    def Vanish(self):
        self.mock.log('Mock.Vanish')
        for dev in self.mock.devices.values():
            if dev.connected or dev.transports:
                dev.link_lost()

    @dbus.service.method(CTL)
    def EndStreams(self):
        """The device ends its streams but stays connected (a phone that
        reconfigures, or disconnects the A2DP profile): BlueZ clears each
        configuration and removes the transport."""
        self.mock.log('Mock.EndStreams')
        for dev in self.mock.devices.values():
            dev.drop_transports(clear=True)

    @dbus.service.method(CTL, in_signature='sv')
    def SetTransportProperty(self, name, value):
        self.mock.log('Mock.SetTransportProperty %s %s' % (name, show(value)))
        self.mock.set_transport_property(str(name), value)

    @dbus.service.method(CTL, in_signature='y')
    def SetBattery(self, percent):
        self.mock.log('Mock.SetBattery %d' % percent)
        for dev in self.mock.devices.values():
            dev.set_battery(int(percent))

    @dbus.service.method(CTL, in_signature='d')
    def PauseSink(self, seconds):
        self.mock.log('Mock.PauseSink %g' % seconds)
        live = [s for t in self.mock.transports.values() for s in t.sinks if s.alive()]
        if not live:
            raise BluezError('org.alsabt.Mock.Error.NoSink', 'no live sink to pause')
        max(live, key=lambda s: s.k).pause(float(seconds))

    @dbus.service.method(CTL, out_signature='as')
    def GetEvents(self):
        return dbus.Array(self.mock.events, signature='s')

    @dbus.service.method(CTL)
    def ClearEvents(self):
        del self.mock.events[:]


# ---------------------------------------------------------------- faults

class Faults:
    """Per-method fault injection set through Mock1.SetFault."""

    def __init__(self):
        self.actions = {}

    def get(self, method):
        return self.actions.get(method, '')

    def set(self, method, action):
        if method not in FAULT_METHODS:
            raise BluezError('org.alsabt.Mock.Error.InvalidArguments',
                             'unknown method %r' % method)
        if action and not self._valid(method, action):
            raise BluezError('org.alsabt.Mock.Error.InvalidArguments',
                             'action %r not valid for %s' % (action, method))
        if action:
            self.actions[method] = action
        else:
            self.actions.pop(method, None)

    @staticmethod
    def _valid(method, action):
        if method in OUTGOING:
            if action.startswith('garbage:'):
                try:
                    bytes.fromhex(action[8:])
                    return True
                except ValueError:
                    return False
            return action in ('wrongtype', 'wrongsig')
        if action.startswith('error:'):
            return len(action.split(':', 2)) == 3 and '.' in action.split(':', 2)[1]
        if action.startswith('slow:'):
            try:
                return float(action[5:]) >= 0
            except ValueError:
                return False
        return action == 'noreply' or (action == 'busy' and method == 'ConnectProfile')


# ---------------------------------------------------------------- the mock

class Mock:
    def __init__(self, args, bus):
        self.args, self.bus = args, bus
        self.events = []
        self.faults = Faults()
        self.sink_caps = bytes.fromhex(args.sink_caps)
        self.phone_caps = bytes.fromhex(args.phone_caps)
        self.sink_seps = [(0, self.sink_caps)]
        if args.sink_sep:
            self.sink_seps = [(int(c, 16), bytes.fromhex(h))
                              for c, _, h in (spec.partition(':') for spec in args.sink_sep)]
        self.phone_seps = [(0, self.phone_caps)]
        if args.phone_sep:
            self.phone_seps = [(int(c, 16), bytes.fromhex(h))
                               for c, _, h in (spec.partition(':') for spec in args.phone_sep)]
        self.volume, self.delay = args.volume, args.delay
        self.outdir = os.path.abspath(args.outdir)
        self.adapters, self.devices, self.transports = {}, {}, {}
        self.objects = {}            # path -> PropObject, in creation order
        self.watched = set()
        self._fd_number = 0
        self._capture = 0
        self.root = Root(self)
        self.control = Control(self)
        self.profile_manager = ProfileManager(self)

    # -- bookkeeping

    def log(self, line):
        self.events.append(line)
        print('[%.3f] %s' % (time.monotonic(), line), file=sys.stderr, flush=True)

    def note_auto_start(self, _conn, msg):
        """Logs "AutoStart IFACE.METHOD" for a call to BlueZ that would have
        started a stopped bluetoothd (D-Bus activation): only the device
        lookup (GetManagedObjects) should."""
        if msg.get_type() == dbus.lowlevel.MESSAGE_TYPE_METHOD_CALL and msg.get_auto_start() \
                and msg.get_member() != 'GetManagedObjects' \
                and msg.get_path() != CTL_PATH:      # the tests' own control calls
            self.log('AutoStart %s.%s' % (msg.get_interface(), msg.get_member()))
        return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED

    def begin(self, method, args, ok, err):
        """Logs an incoming call and applies its fault; None if consumed."""
        self.log('%s %s' % (method, args))
        call = Call(self, method, ok, err)
        action = self.faults.get(method)
        if action.startswith('error:'):
            _, name, message = action.split(':', 2)
            call.fail(BluezError(name, message))
            return None
        if action == 'noreply':
            self.log('%s -> noreply (fault)' % method)
            return None
        return call

    def next_capture(self):
        self._capture += 1
        return self._capture - 1

    def add_object(self, obj):
        self.objects[obj.path] = obj
        self.root.InterfacesAdded(obj.path, obj.managed())

    def remove_object(self, obj):
        self.objects.pop(obj.path, None)
        self.root.InterfacesRemoved(obj.path, dbus.Array(list(obj.managed().keys()),
                                                         signature='s'))
        obj.remove_from_connection()

    def managed_objects(self):
        result = {'/org/bluez': dbus.Dictionary({
            INTROSPECT: {}, 'org.bluez.AgentManager1': {},
            'org.bluez.ProfileManager1': {}}, signature='sa{sv}')}
        for path, obj in self.objects.items():
            result[path] = obj.managed()
        return dbus.Dictionary(result, signature='oa{sa{sv}}')

    def devices_of(self, adapter):
        return [d for d in self.devices.values() if d.adapter is adapter]

    # -- setup from the command line

    def add_adapter(self, spec):
        name, _, rest = spec.partition('=')
        address, *flags = rest.split(',')
        adapter = Adapter(self, name, address, 'off' not in flags)
        self.adapters[name] = adapter
        self.add_object(adapter)

    def add_device(self, spec):
        where, *flag_list = spec.split(',')
        adapter_name, _, address = where.partition('/')
        if adapter_name not in self.adapters:
            raise SystemExit('--device %s: no adapter %s' % (spec, adapter_name))
        flags = {}
        for f in flag_list:
            key, _, value = f.partition('=')
            flags[key] = value
        dev = Device(self, self.adapters[adapter_name], address, flags)
        self.devices[dev.path] = dev
        self.add_object(dev)
        if dev.connected:
            dev.add_seps()

    # -- endpoints and transports

    def endpoint_call(self, ep, method, signature, args, on_reply=None, on_error=None):
        """Calls the endpoint's owner with BlueZ's 3 s timeout."""
        def ignore(*_):
            pass
        try:
            self.bus.call_async(ep.sender, ep.path, ENDPOINT, method, signature, args,
                                on_reply or ignore, on_error or ignore,
                                timeout=self.args.endpoint_timeout, byte_arrays=True)
        except (TypeError, ValueError, dbus.DBusException) as e:
            # A mock bug must not leave a ConnectProfile hanging forever.
            self.log('%s -> could not send: %s' % (method, e))
            (on_error or ignore)(BluezError('org.freedesktop.DBus.Error.Failed', str(e)))

    def new_transport(self, device, ep, config, sep):
        t = Transport(self, device, ep, config, self._fd_number, sep=sep)
        self._fd_number += 1
        self.transports[t.path] = t
        device.transports.append(t)
        ep.transports.append(t)
        self.add_object(t)
        self.log('TransportAdded %s ours' % t.path)
        return t

    def foreign_transport(self, device):
        """Another audio service's stream to the speaker (the "busy" fault)."""
        t = Transport(self, device, None, FOREIGN_CONFIG, self._fd_number, foreign=True)
        self._fd_number += 1
        self.transports[t.path] = t
        device.transports.append(t)
        self.add_object(t)
        self.log('TransportAdded %s foreign' % t.path)
        return t

    def drop_transport(self, t, clear):
        """Ends a transport as bluetoothd does when its stream goes away."""
        t.stop_sinks()
        t.set_state('idle')
        t.owner = None
        if clear and t.endpoint:
            self.log('ClearConfiguration %s' % t.path)
            self.endpoint_call(t.endpoint, 'ClearConfiguration', 'o', [dbus.ObjectPath(t.path)])
        if t.endpoint and t in t.endpoint.transports:
            t.endpoint.transports.remove(t)
        if t in t.device.transports:
            t.device.transports.remove(t)
        self.transports.pop(t.path, None)
        self.remove_object(t)
        self.log('TransportRemoved %s' % t.path)

    def clear_endpoint(self, ep):
        """media.c clear_endpoint(): ClearConfiguration for all its transports."""
        for t in list(ep.transports):
            self.drop_transport(t, clear=True)

    def remove_endpoint(self, ep, owner_alive):
        """UnregisterEndpoint, or its owner left the bus (then nothing is sent)."""
        for job in list(ep.jobs):
            job.abort()
        devices = {t.device for t in ep.transports}
        for t in list(ep.transports):
            self.drop_transport(t, clear=owner_alive)
        if owner_alive:
            self.log('ReleaseEndpoint %s' % ep.path)
            if self.args.late_release:
                # After the reply: how a client sees it when both came in
                # one read and it stopped dispatching at the reply.
                GLib.idle_add(lambda: self.endpoint_call(ep, 'Release', '', []) and False)
            else:
                self.endpoint_call(ep, 'Release', '', [])
        ep.adapter.endpoints.remove(ep)
        for dev in devices:
            if not dev.transports:
                dev.set_connected(False)

    def set_transport_property(self, name, value):
        if name in ('Volume', 'Delay'):
            number = int(value)
            setattr(self, name.lower(), number)
            for t in self.transports.values():
                if name == 'Volume':
                    t.set_volume(number)
                else:
                    t.update(TRANSPORT, Delay=dbus.UInt16(number))
        elif name == 'State' and str(value) in ('idle', 'pending', 'active'):
            for t in self.transports.values():
                t.set_state(str(value))
        else:
            raise BluezError('org.alsabt.Mock.Error.InvalidArguments',
                             'cannot set %s=%r' % (name, value))

    # -- bus names

    def watch_owner(self, name):
        self.watched.add(str(name))

    def on_name_owner_changed(self, name, old, new):
        if new or name not in self.watched:
            return
        self.watched.discard(name)
        for t in list(self.transports.values()):
            if t.owner == name:          # media_owner_exit(): suspend
                self.log('OwnerGone %s %s' % (t.path, name))
                t.owner = None
                t.set_state('idle')
        for prof in [p for p in self.profile_manager.profiles if p.sender == name]:
            self.log('ProfileGone %s %s' % (name, prof.path))
            self.profile_manager.remove(prof)
        for adapter in self.adapters.values():
            for ep in [e for e in adapter.endpoints if e.sender == name]:
                self.log('EndpointGone %s %s' % (name, ep.path))
                self.remove_endpoint(ep, owner_alive=False)

    def phone_starts(self, t):
        """The phone starts streaming: its transport waits to be acquired."""
        if self.transports.get(t.path) is t and t.owner is None:
            t.set_state('pending')
        return False

    def schedule_phone_pause(self, t):
        at, _, length = self.args.phone_pause.partition(':')

        def pause():
            if self.transports.get(t.path) is t:
                t.set_state('idle')
            return False

        def resume():
            if self.transports.get(t.path) is t:
                t.set_state('pending')
                if t.owner is not None:     # still held: the stream just resumes
                    t.set_state('active')
            return False
        GLib.timeout_add(int(float(at) * 1000), pause)
        GLib.timeout_add(int((float(at) + float(length)) * 1000), resume)

    def poll_sinks(self):
        for t in self.transports.values():
            for s in t.sinks:
                s.poll()
        for dev in self.devices.values():
            if dev.hfp:
                dev.hfp.poll()
        return True

    def shutdown(self):
        for t in list(self.transports.values()):
            t.stop_sinks()
        for dev in self.devices.values():
            if dev.hfp:
                dev.hfp.end('shutdown')


def parse_args(argv):
    p = argparse.ArgumentParser(description='BlueZ 5.66 stand-in for alsa-bt tests')
    p.add_argument('--adapter', action='append', default=[])
    p.add_argument('--device', action='append', default=[])
    p.add_argument('--sink-caps', default='ffff0235')
    p.add_argument('--sink-sep', action='append', default=[])
    p.add_argument('--mtu', type=int, default=672)
    p.add_argument('--volume', type=int)
    p.add_argument('--delay', type=int)
    p.add_argument('--sink-delay-readonly', action='store_true')
    p.add_argument('--battery', type=int)
    p.add_argument('--sink')
    p.add_argument('--outdir', default='.')
    p.add_argument('--endpoint-timeout', type=float, default=3.0)
    p.add_argument('--volume-delay', type=float, default=0.02)
    p.add_argument('--sndbuf', type=int)
    p.add_argument('--late-release', action='store_true')
    p.add_argument('--bus', default=os.environ.get('DBUS_SYSTEM_BUS_ADDRESS'))
    p.add_argument('--phone')
    p.add_argument('--phone-args', default='')
    p.add_argument('--phone-caps', default='ffff0235')
    p.add_argument('--phone-sep', action='append')
    p.add_argument('--phone-pause')
    p.add_argument('--headset')
    p.add_argument('--headset-args', default='')
    p.add_argument('--headset-features', type=lambda v: int(v, 0), default=0x3f)
    p.add_argument('--profile-taken', action='append', default=[])
    args = p.parse_args(argv)
    if not args.bus:
        p.error('no bus: pass --bus or set DBUS_SYSTEM_BUS_ADDRESS')
    if not args.adapter:
        args.adapter = ['hci0=00:11:22:33:44:55']
    return args


def main(argv):
    args = parse_args(argv)
    die_with_parent(signal.SIGTERM)
    bus = dbus.bus.BusConnection(args.bus, mainloop=DBusGMainLoop())
    loop = GLib.MainLoop()
    mock = Mock(args, bus)
    for spec in args.adapter:
        mock.add_adapter(spec)
    for spec in args.device:
        mock.add_device(spec)
    bus.add_signal_receiver(mock.on_name_owner_changed, signal_name='NameOwnerChanged',
                            dbus_interface='org.freedesktop.DBus',
                            bus_name='org.freedesktop.DBus', path='/org/freedesktop/DBus')
    bus.call_on_disconnection(lambda *_: loop.quit())
    bus.add_message_filter(mock.note_auto_start)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, lambda *_: loop.quit() or False)
    GLib.timeout_add(100, mock.poll_sinks)
    if bus.request_name(BLUEZ_NAME, dbus.bus.NAME_FLAG_DO_NOT_QUEUE) != \
            dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
        print('org.bluez is already owned', file=sys.stderr)
        return 1
    print('READY', flush=True)
    try:
        loop.run()
    finally:
        mock.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
