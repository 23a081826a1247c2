"""Shared pieces of the alsa-bt integration tests (run with /usr/bin/python3).

    from harness import Env, check, finish, skip_loudly

    with Env(volume=64) as env:          # private bus + mock bluetoothd
        r = env.run(['aplay', '-D', 'bluetooth', 'x.wav'], timeout=10)
        check('aplay ok', r.rc == 0, r.stderr)
        check('configured', any(e.startswith('SetConfiguration ')
                                for e in env.events()))
    finish()

Env(...) keyword arguments (None = the mock's default):
    adapters   list of "hci0=00:11:22:33:44:55[,off]" (default: one hci0)
    devices    list of "hci0/00:1B:66:AA:BB:CC[,unpaired,connected,nosink,name=X]"
               (default: one paired speaker on hci0; [] for none)
    sink_caps, mtu, volume, delay, battery, endpoint_timeout, volume_delay,
    sndbuf     passed to the mock as --sink-caps, --mtu, ...
    sink_seps  list of "CODEC:HEX" speaker SEPs (--sink-sep), e.g.
               ["00:ffff0235", "ff:4f000000010032"]
    sink       program spawned per Acquire; default BUILD/rtp_sink if it
               exists, else none (the mock drains the socket).  None = none.
    mock=False no bluetoothd (the bus runs, nobody owns org.bluez)
    bus=False  no bus at all (DBUS_SYSTEM_BUS_ADDRESS names a dead socket)
    extra_args more mock arguments

Env members:
    environ        dict for subprocesses: DBUS_SYSTEM_BUS_ADDRESS, HOME (with a
                   generated .asoundrc), XDG_RUNTIME_DIR; the rest of os.environ
                   (LD_PRELOAD, ASAN_OPTIONS, ...) is kept
    address, tmp, outdir, sink_path
    mock(method, *args)    call org.alsabt.Mock1 (see tests/mock/mock_bluez.py)
    events()               the mock's event log; wait_event(regex, timeout)
    run(argv, timeout, input=None) -> Result(rc, stdout, stderr, elapsed,
                   timed_out); rc < 0 means killed by that signal
    spawn(argv, input=None) -> Proc (background; .wait(timeout) -> Result)
    captures()             [(wav, csv), ...] in the order the sink was started
    mock_log()             the mock's stdout/stderr with timestamps

Everything is bounded in time and torn down on exit (processes killed, temp
dir removed unless ALSABT_KEEP_TMP is set).  ALSABT_BUILD overrides the build
directory (default REPO/build).  Reporting: check(), skip_loudly(), finish().
"""

import ctypes
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get('ALSABT_BUILD') or os.path.join(REPO, 'build'))
MOCK = os.path.join(REPO, 'tests', 'mock', 'mock_bluez.py')
BUS_CONF = os.path.join(REPO, 'tests', 'mock', 'bus.conf')
PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
START_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0
CTL_IFACE = 'org.alsabt.Mock1'
CTL_PATH = '/org/alsabt/mock'
AUTO = object()
# Sanitizer passes run the same checks several times slower: their timing
# tolerances (never the expected values) are widened by this factor. The
# plain pass (1) holds the real bounds.
TIME_SCALE = float(os.environ.get('ALSABT_TIME_SCALE') or 1)

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """Child setup: killed (SIGTERM) if the test process dies first."""
    _libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)


def _kill_group(pgid, sig=signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exited(pid, timeout):
    """Waits up to timeout s for pid to exit WITHOUT reaping it, so its
    process group id stays ours until we have killed the rest of the group."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _stop(proc, timeout=STOP_TIMEOUT):
    """SIGTERM, bounded wait, then SIGKILL for whatever is left of its group."""
    if proc is None:
        return
    if proc.returncode is None:
        if not _exited(proc.pid, 0):
            os.kill(proc.pid, signal.SIGTERM)   # not terminate(): it may reap
            _exited(proc.pid, timeout)
        _kill_group(proc.pid)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


class Result:
    """Outcome of Env.run(): rc, stdout, stderr, elapsed (s), timed_out."""

    def __init__(self, rc, stdout, stderr, elapsed, timed_out):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.elapsed, self.timed_out = elapsed, timed_out

    def __repr__(self):
        return 'Result(rc=%r, elapsed=%.2f, timed_out=%r)' % (
            self.rc, self.elapsed, self.timed_out)


class Proc:
    """A command started in the background by Env.spawn()."""

    def __init__(self, argv, environ, tmp, index, input):
        self.argv = argv
        self._out = os.path.join(tmp, 'spawn-%d.out' % index)
        self._err = os.path.join(tmp, 'spawn-%d.err' % index)
        stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
        with open(self._out, 'wb') as out, open(self._err, 'wb') as err:
            self.start = time.monotonic()
            self.popen = subprocess.Popen(argv, env=environ, stdin=stdin, stdout=out,
                                          stderr=err, start_new_session=True,
                                          preexec_fn=_die_with_parent)
        if input is not None:
            self._feed(input)

    def _feed(self, data):
        try:
            self.popen.stdin.write(data.encode() if isinstance(data, str) else data)
            self.popen.stdin.close()
        except BrokenPipeError:
            pass

    @property
    def pid(self):
        return self.popen.pid

    def output(self):
        """What it has printed on stdout so far."""
        with open(self._out, errors='replace') as f:
            return f.read()

    def running(self):
        return not _exited(self.popen.pid, 0)

    def signal(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def wait(self, timeout):
        """Waits at most timeout s; kills the process group if it is exceeded."""
        timed_out = not _exited(self.popen.pid, timeout)
        elapsed = time.monotonic() - self.start
        if self.popen.returncode is None:
            _kill_group(self.popen.pid)      # leftovers, or all of it on timeout
        self.popen.wait(timeout=STOP_TIMEOUT)
        with open(self._out, errors='replace') as f:
            out = f.read()
        with open(self._err, errors='replace') as f:
            err = f.read()
        return Result(self.popen.returncode, out, err, elapsed, timed_out)

    def kill(self):
        if self.popen.returncode is None:
            _kill_group(self.popen.pid)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass


class Env:
    """A private system bus with the mock bluetoothd, and a HOME for ALSA."""

    def __init__(self, adapters=None, devices=None, sink_caps=None, mtu=None, volume=None,
                 delay=None, battery=None, sink=AUTO, mock=True, bus=True,
                 endpoint_timeout=None, volume_delay=None, sndbuf=None, sink_seps=(),
                 extra_args=(), activatable=False):
        self.want_mock, self.want_bus = mock and bus, bus
        # activatable: org.bluez can be started on demand, as Debian's service
        # file allows, but starting it fails (bluetooth.service stopped).
        self.activatable = activatable
        self.mock_args = self._mock_args(adapters, devices, sink_caps, mtu, volume, delay,
                                         battery, endpoint_timeout, volume_delay, sndbuf)
        for spec in sink_seps:
            self.mock_args += ['--sink-sep', spec]
        self.mock_args += list(extra_args)
        if sink is AUTO:
            default = os.path.join(BUILD, 'rtp_sink')
            sink = default if os.access(default, os.X_OK) else None
        self.sink_path = sink
        self.tmp = None
        self.address = None
        self.environ = None
        self._daemon = self._mock = self._ctl = None
        self._procs = []

    @staticmethod
    def _mock_args(adapters, devices, sink_caps, mtu, volume, delay, battery,
                   endpoint_timeout, volume_delay, sndbuf):
        args = []
        for spec in adapters or []:
            args += ['--adapter', spec]
        for spec in ['hci0/00:1B:66:AA:BB:CC'] if devices is None else devices:
            args += ['--device', spec]
        options = [('--sink-caps', sink_caps), ('--mtu', mtu), ('--volume', volume),
                   ('--delay', delay), ('--battery', battery),
                   ('--endpoint-timeout', endpoint_timeout),
                   ('--volume-delay', volume_delay), ('--sndbuf', sndbuf)]
        for flag, value in options:
            if value is not None:
                args += [flag, str(value)]
        return args

    # -- lifetime

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _start(self):
        self.tmp = tempfile.mkdtemp(prefix='alsabt-', dir='/tmp')
        self.outdir = self.tmp
        self.home = self.tmp
        os.makedirs(os.path.join(self.tmp, 'run'), mode=0o700)
        self._write_asoundrc()
        if self.want_bus:
            self.address = self._start_daemon()
        else:
            self.address = 'unix:path=%s' % os.path.join(self.tmp, 'no-bus')
        self.environ = self._make_environ()
        if self.want_mock:
            self._start_mock()

    def close(self):
        """Stops everything we started; safe to call more than once."""
        for p in self._procs:
            p.kill()
        self._procs = []
        if self._ctl is not None:
            try:
                self._ctl.close()
            except Exception:
                pass
            self._ctl = None
        _stop(self._mock)
        self._mock = None
        _stop(self._daemon)
        self._daemon = None
        if self.tmp and not os.environ.get('ALSABT_KEEP_TMP'):
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp:
            print('kept %s' % self.tmp, file=sys.stderr)
        self.tmp = None

    def _write_asoundrc(self):
        with open(os.path.join(self.tmp, '.asoundrc'), 'w') as f:
            f.write('pcm_type.bluetooth { lib "%s" }\n'
                    % os.path.join(BUILD, 'libasound_module_pcm_bluetooth.so'))
            f.write('ctl_type.bluetooth { lib "%s" }\n'
                    % os.path.join(BUILD, 'libasound_module_ctl_bluetooth.so'))
            f.write('<%s>\n' % os.path.join(REPO, 'conf', '20-bluetooth.conf'))

    def _make_environ(self):
        env = dict(os.environ)            # keeps LD_PRELOAD, ASAN_OPTIONS, ...
        env.pop('DBUS_SESSION_BUS_ADDRESS', None)
        env['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        env['HOME'] = self.tmp
        env['XDG_RUNTIME_DIR'] = os.path.join(self.tmp, 'run')
        # Sanitizer runs: the runtime goes into the programs under test only,
        # not into python or dbus-daemon.
        if os.environ.get('ALSABT_PRELOAD'):
            env['LD_PRELOAD'] = os.environ['ALSABT_PRELOAD']
        return env

    def _activating_conf(self):
        """bus.conf plus a service directory where starting org.bluez fails
        (after touching TMP/activated).
        Not a <type>system</type> bus: that would need the setuid launch helper."""
        services = os.path.join(self.tmp, 'services')
        os.makedirs(services)
        with open(os.path.join(services, 'org.bluez.service'), 'w') as f:
            # Leaves a trace, so a test can tell whether someone asked for it.
            f.write("[D-BUS Service]\nName=org.bluez\nExec=/bin/sh -c 'touch %s; exit 1'\n"
                    % os.path.join(self.tmp, 'activated'))
        with open(BUS_CONF) as f:
            conf = f.read().replace('<type>system</type>',
                                    '<servicedir>%s</servicedir>' % services)
        path = os.path.join(self.tmp, 'bus-activating.conf')
        with open(path, 'w') as f:
            f.write(conf)
        return path

    def _start_daemon(self):
        bus_path = os.path.join(self.tmp, 'bus')
        conf = self._activating_conf() if self.activatable else BUS_CONF
        with open(os.path.join(self.tmp, 'dbus-daemon.log'), 'wb') as log:
            self._daemon = subprocess.Popen(
                ['dbus-daemon', '--config-file=' + conf,
                 '--address=unix:path=' + bus_path, '--nofork', '--print-address=1'],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True, preexec_fn=_die_with_parent)
        line = self._read_line(self._daemon.stdout, START_TIMEOUT)
        self._daemon.stdout.close()     # it prints nothing else
        if not line.startswith('unix:'):
            raise RuntimeError('dbus-daemon did not start: %r' % line)
        return line.strip()

    @staticmethod
    def _read_line(pipe, timeout):
        import select
        fd, data = pipe.fileno(), b''
        deadline = time.monotonic() + timeout
        while not data.endswith(b'\n'):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors='replace')

    def _start_mock(self):
        log_path = os.path.join(self.tmp, 'mock.log')
        args = [PYTHON, MOCK, '--bus', self.address, '--outdir', self.outdir] + self.mock_args
        if self.sink_path:
            args += ['--sink', self.sink_path]
        env = dict(self.environ)
        env.pop('LD_PRELOAD', None)       # python is not under test
        with open(log_path, 'wb') as log:
            self._mock = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, start_new_session=True,
                                          preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if re.search(r'^READY$', self.mock_log(), re.M):
                return
            if _exited(self._mock.pid, 0):
                break
            time.sleep(0.02)
        raise RuntimeError('mock did not become READY:\n' + self.mock_log())

    def stop_mock(self):
        """bluetoothd goes away (its name leaves the bus)."""
        _stop(self._mock)
        self._mock = None

    def restart_mock(self):
        """bluetoothd starts again (a new unique name owns org.bluez)."""
        self._ctl = None
        self._start_mock()

    def mock_log(self):
        """The mock's stdout+stderr so far (its event log with timestamps)."""
        try:
            with open(os.path.join(self.tmp, 'mock.log'), errors='replace') as f:
                return f.read()
        except (OSError, TypeError):
            return ''

    # -- talking to the mock

    def _control(self):
        """Proxy for the mock's control object, on a connection of our own."""
        if self._ctl is None:
            import dbus
            self._ctl = dbus.bus.BusConnection(self.address)
            # Introspected, so arguments get the declared signatures (e.g. 'v').
            self._ctl_obj = self._ctl.get_object('org.bluez', CTL_PATH)
        return self._ctl_obj

    def mock(self, method, *args, timeout=5.0):
        """Calls org.alsabt.Mock1.<method>(*args) and returns plain Python values."""
        proxy = self._control()
        result = proxy.get_dbus_method(method, CTL_IFACE)(*args, timeout=timeout)
        return _plain(result)

    def events(self):
        return self.mock('GetEvents')

    def wait_event(self, pattern, timeout=5.0, start=0):
        """First event (at index >= start) matching regex pattern, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.events()[start:]:
                if re.search(pattern, line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def captures(self):
        """(wav, csv) paths the sink was told to write, in order of K."""
        found = set()
        for path in glob.glob(os.path.join(self.outdir, 'capture-*.*')):
            m = re.match(r'capture-(\d+)\.', os.path.basename(path))
            if m:
                found.add(int(m.group(1)))
        return [(os.path.join(self.outdir, 'capture-%d.wav' % k),
                 os.path.join(self.outdir, 'capture-%d.csv' % k)) for k in sorted(found)]

    def mixer_pids(self):
        """The speakers' mixers (alsa-bt-mixer, MIX=1) on this Env's bus."""
        pids = []
        want = ('DBUS_SYSTEM_BUS_ADDRESS=%s' % self.address).encode()
        for d in os.listdir('/proc'):
            if not d.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % d, 'rb') as f:
                    if not f.read().startswith(b'alsa-bt-mixer\0'):
                        continue
                with open('/proc/%s/environ' % d, 'rb') as f:
                    if want in f.read().split(b'\0'):
                        pids.append(int(d))
            except OSError:
                pass
        return pids

    # -- running commands

    def run(self, argv, timeout, input=None):
        """Runs argv with env.environ, never longer than timeout seconds."""
        return self.spawn(argv, input=input).wait(timeout)

    def spawn(self, argv, input=None):
        """Starts argv in the background; call .wait(timeout) on the result."""
        proc = Proc(list(argv), self.environ, self.tmp, len(self._procs), input)
        self._procs.append(proc)
        return proc


def _plain(value):
    """dbus-python values -> plain Python (str, int, bool, float, list, dict)."""
    import dbus
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.ByteArray, bytes)):
        return bytes(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- reporting

_passed = []
_failed = []


def check(name, condition, detail=''):
    """Records one check and prints PASS/FAIL; returns the condition."""
    if condition:
        _passed.append(name)
        print('PASS %s' % name, flush=True)
    else:
        _failed.append(name)
        # One line: run-all repeats FAIL lines at the end, and CI shows only that.
        print('FAIL %s: %s' % (name, str(detail).replace('\n', ' | ')), flush=True)
    return bool(condition)


def skip_loudly(name, reason):
    """A skipped check fails unless ALSABT_ALLOW_SKIP=1: nothing skips silently."""
    if os.environ.get('ALSABT_ALLOW_SKIP') == '1':
        print('SKIP %s: %s' % (name, reason), flush=True)
    else:
        check(name, False, 'skipped: %s (set ALSABT_ALLOW_SKIP=1 to allow)' % reason)


def finish():
    """Prints the totals and exits 1 if anything failed."""
    print('%d passed, %d failed' % (len(_passed), len(_failed)), flush=True)
    sys.exit(1 if _failed else 0)
