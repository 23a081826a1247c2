"""The HFP Audio Gateway through BlueZ's Profile API (hfp/profile.c), driven
by tests/tools/hfp_client (no PCM uses it yet, issue 10) against the mock
bluetoothd and the scripted headset (tests/tools/headset.py; its bluez-alsa
4.3 script is what the real stack's trace showed): the profile
registered and connected, the RFCOMM channel taken from NewConnection, the
Service Level Connection brought up to an agreed codec (mSBC when both
sides can, else CVSD), the headset's gains and battery, and every way it
ends: the headset hanging up, the user disconnecting it, another program
owning HFP, a device that is no headset, a headset that never speaks.
After each close: the profile unregistered, the channel shut down (the
headset sees EOF), no descriptor left open.
"""
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, REPO, TIME_SCALE, Env, check, finish  # noqa: E402

ADDR = '00:1B:66:00:00:07'
HEADSET = 'hci0/%s,headset' % ADDR
SPEAKER = '00:1B:66:AA:BB:CC'
HFP_AG = '0000111f-0000-1000-8000-00805f9b34fb'
HFP_HF = '0000111e-0000-1000-8000-00805f9b34fb'
HEADSET_PY = os.path.join(REPO, 'tests', 'tools', 'headset.py')
CLIENT = os.path.join(BUILD, 'hfp_client')


def headset_env(args='', features='0x20', devices=None, extra=()):
    return Env(devices=devices or [HEADSET, 'hci0/' + SPEAKER], sink=None,
               extra_args=['--headset', HEADSET_PY, '--headset-features', features,
                           '--headset-args=' + args] + list(extra))


def parse(stdout):
    """{first word: [its fields as a dict, or the rest of the line], ...}"""
    lines = {}
    for ln in stdout.splitlines():
        key, _, rest = ln.partition(' ')
        lines.setdefault(key, []).append(dict(re.findall(r'(\w+)=(\S+)', rest)) or rest)
    return lines


def client(env, *args, address=ADDR, timeout=20):
    r = env.run([CLIENT, address] + list(args), timeout=timeout)
    return r, parse(r.stdout)


def headset_log(env, k=0):
    path = os.path.join(env.outdir, 'headset-%d.log' % k)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [ln.split(' ', 1)[1].rstrip('\n') for ln in f if ' ' in ln]


def alsa_errors(r):
    return [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]


def check_closed_cleanly(name, env, r, lines):
    fds = lines.get('FDS', [])
    check(name + ': closed, no descriptor left open', r.rc == 0 and len(fds) == 2 and
          fds[0] == fds[1] and 'CLOSED' in lines, '%s %s' % (fds, r.stdout[-300:]))
    check(name + ': the profile unregistered', env.wait_event(r'^UnregisterProfile ', timeout=2.0),
          str(env.events()[-5:]))
    check(name + ': the headset saw its channel end', env.wait_event(r'^HeadsetEnd ', timeout=3.0),
          str(env.events()[-5:]))


def test_modern():
    with headset_env('--battery 80') as env:
        r, lines = client(env, '--hold', '1500')
        slc = (lines.get('SLC') or [{}])[0]
        check('modern headset: SLC up, mSBC agreed', r.rc == 0 and slc.get('codec') == 'msbc',
              '%s %s' % (r.stdout[-300:], r.stderr[-300:]))
        check('... the headset\'s SDP Version and Features from NewConnection, BRSF 916',
              slc.get('hf_version') == '0x0108' and slc.get('hf_features') == '32' and
              slc.get('brsf') == '916', str(slc))
        ev = env.events()
        reg = [e for e in ev if e.startswith('RegisterProfile :')]
        check('RegisterProfile: the lowercase 128-bit HFP AG UUID, once',
              len(reg) == 1 and reg[0].endswith(HFP_AG), str(reg))
        check('ConnectProfile(Hands-Free) on the headset',
              any(e.startswith('ConnectProfile ') and HFP_HF in e and 'dev_00_1B_66_00_00_07' in e
                  for e in ev), str(ev[-8:]))
        log = headset_log(env)
        check('... +BCS: 2 sent, AT+BCS=2 answered', '< +BCS: 2' in log and '> AT+BCS=2' in log,
              str(log))
        gains = lines.get('GAINS', [])
        check('the headset\'s gains and battery: speaker 9, mic 7, battery 80',
              gains and gains[-1] == {'speaker': '9', 'mic': '7', 'battery': '80'}, str(gains))
        check('open within 2 s', slc and int(slc.get('open_ms', 1e9)) < 2000 * TIME_SCALE, str(slc))
        check_closed_cleanly('modern', env, r, lines)


def test_bluealsa43():
    with headset_env('--script bluealsa43') as env:
        r, lines = client(env, '--hold', '1000')
        slc = (lines.get('SLC') or [{}])[0]
        check('bluez-alsa 4.3 as the headset ("AT+BCS= 2", with a space): mSBC agreed',
              r.rc == 0 and slc.get('codec') == 'msbc' and slc.get('brsf') == '756' and
              '> AT+BCS= 2' in headset_log(env), '%s %s %s' % (slc, headset_log(env)[-6:],
                                                               r.stderr[-300:]))
        check_closed_cleanly('bluealsa43', env, r, lines)


def test_cvsd():
    with headset_env() as env:
        r, lines = client(env, '--no-msbc')
        slc = (lines.get('SLC') or [{}])[0]
        check('our side without mSBC: CVSD, no codec negotiation',
              r.rc == 0 and slc.get('codec') == 'cvsd' and
              not any('+BCS' in ln for ln in headset_log(env)), '%s %s' % (slc, headset_log(env)))
    with headset_env('--script bluealsa40 --split') as env:
        r, lines = client(env, '--hold', '1000')
        slc = (lines.get('SLC') or [{}])[0]
        check('bluez-alsa 4.0 as the headset, a byte at a time: CVSD (it has no negotiation)',
              r.rc == 0 and slc.get('codec') == 'cvsd' and slc.get('brsf') == '116',
              '%s %s' % (r.stdout[-300:], r.stderr[-300:]))
        gains = lines.get('GAINS', [])
        check('... its Apple XAPL answered, gains 15 and 15',
              any(ln.startswith('< +XAPL') for ln in headset_log(env)) and gains and
              gains[-1].get('speaker') == '15' and gains[-1].get('mic') == '15',
              '%s %s' % (gains, headset_log(env)))
        check_closed_cleanly('bluealsa40', env, r, lines)
    # The SLC's last command is AT+CMER and CVSD needs no negotiation: the
    # open must not wait for a line that never comes.
    with headset_env('--script hfp15') as env:
        r, lines = client(env)
        slc = (lines.get('SLC') or [{}])[0]
        check('an HFP 1.5 headset that sends nothing after AT+CMER: CVSD, open within 1 s',
              r.rc == 0 and slc.get('codec') == 'cvsd' and
              int(slc.get('open_ms', 1e9)) < 1000 * TIME_SCALE,
              '%s %s %s' % (slc, r.stdout[-300:], r.stderr[-300:]))


def test_endings():
    with headset_env('--hangup-after 1') as env:
        r, lines = client(env, '--hold', '5000')
        check('the headset hangs up: seen as the channel closing',
              r.rc == 0 and 'CHANNEL_CLOSED' in lines, r.stdout[-300:])
        check_closed_cleanly('hung up', env, r, lines)
    with headset_env() as env:
        p = env.spawn([CLIENT, ADDR, '--hold', '5000'])
        for _ in range(100):
            if 'SLC ' in p.output() or not p.running():
                break
            time.sleep(0.05)
        d = subprocess.run(['dbus-send', '--system', '--print-reply', '--dest=org.bluez',
                            '/org/bluez/hci0/dev_00_1B_66_00_00_07', 'org.bluez.Device1.DisconnectProfile',
                            'string:' + HFP_HF], env=env.environ, capture_output=True, text=True,
                           timeout=10)
        r = p.wait(10)
        check('the user disconnects the headset: RequestDisconnection ends the link',
              d.returncode == 0 and r.rc == 0 and 'GONE' in r.stdout, r.stdout[-300:] + d.stderr)
        check_closed_cleanly('disconnected', env, r, parse(r.stdout))


def test_errors():
    with headset_env(extra=['--profile-taken', HFP_AG]) as env:
        r, lines = client(env)
        errs = alsa_errors(r)
        check('another program owns HFP: EBUSY, one line naming who might',
              r.rc == 1 and 'rc=-16' in r.stdout and len(errs) == 1 and
              'owns the headset profile' in errs[0], '%s %s' % (r.stdout, errs))
        check('... nothing connected', not any(e.startswith('ConnectProfile') for e in env.events()),
              str(env.events()[-4:]))
    with headset_env() as env:
        r, lines = client(env, address=SPEAKER)
        errs = alsa_errors(r)
        check('a speaker without Hands-Free: ENOTSUP, "is not a headset"',
              r.rc == 1 and 'rc=-95' in r.stdout and len(errs) == 1 and
              'is not a headset' in errs[0], '%s %s' % (r.stdout, errs))
    with headset_env('--script silent') as env:
        r, lines = client(env, '--timeout', '1500')
        errs = alsa_errors(r)
        check('a headset that never speaks: ETIMEDOUT naming the step',
              r.rc == 1 and 'rc=-110' in r.stdout and len(errs) == 1 and
              'sent no AT+BRSF' in errs[0] and r.elapsed < 3.0 * TIME_SCALE,
              '%s %s %.2f s' % (r.stdout, errs, r.elapsed))
        check('... the profile unregistered all the same',
              env.wait_event(r'^UnregisterProfile ', timeout=2.0), str(env.events()[-5:]))


test_modern()
test_bluealsa43()
test_cvsd()
test_endings()
test_errors()
finish()
