"""The codecs beyond plain SBC, through the real aplay against the mock
bluetoothd playing a speaker with several sink endpoints: which codec is
chosen (best first, CODEC= restricting and reordering, the errors), and
each one checked as audio at the test sink (aptX and aptX HD decoded with
libfreeaptx, SBC-XQ with libsbc): lag, SNR against what the codec alone
gives on the same signal (tests/integration/audio.py runs the library's own
encoder and decoder), the whole signal, no gaps, framing, every packet
within the MTU, real-time pacing; and snd_pcm_delay before START.

Measured on the CI machine kind (2 cores), 3 s at 44.1 kHz, plugin vs the
codec alone: aptX sweep 50.7 / 50.7 dB, noise 11.2 / 11.2 dB; aptX HD sweep
64.6 / 64.6, noise 21.0 / 21.0; SBC-XQ (dual channel, bitpool 43) sweep
65.9 / 65.9, noise 23.3 / 23.3 (plain SBC: 12.7); AAC at 149 kb/s sweep
54.9 / 54.9, noise 5.3 / 5.3. Lag 0 for aptX (the decoder drops its own
90-sample start-up), 73 for SBC-XQ, 2048 for AAC. LDAC, which nothing in
Debian decodes, is checked as structure.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio  # noqa: E402
from harness import BUILD, TIME_SCALE, Env, check, finish, skip_loudly  # noqa: E402

ADDR = '00:1B:66:AA:BB:CC'
DEV = 'hci0/' + ADDR
CONNECTED = [DEV + ',connected']
PLUG = 'bluetooth:DEV=' + ADDR
ALONE = PLUG + ',MIX=0'
SBC = '00:ffff0250'                         # dual channel allowed, bitpool up to 80
APTX = 'ff:4f000000010032'                  # 44.1 + 48 kHz, stereo
APTX_HD = 'ff:d700000024003200000000'
AAC = '02:80018c83e800'                     # MPEG-2 LC, 44.1 + 48 kHz, mono + stereo, VBR 256 kb/s
LDAC = 'ff:2d010000aa003007'                # 44.1 + 48 kHz, mono, dual, stereo
AAC_DELAY = 2048                            # the primed frame + libavcodec's 1024 of padding
SNR_MARGIN_DB = 1.0                         # measured: the plugin gives what the codec gives
PACING_MAX_MS = 10.0          # for 95% of the packets
PACING_STALL_MS = 40.0        # any packet (see test_pcm_audio.py)
# AAC: libavcodec's encoder runs when the packet is due and its rate loop
# encodes some frames several times: measured 2-16 ms late on the loaded
# 2-core machine, against 23 ms of audio a packet.
AAC_PACING_MAX_MS = 25.0


def play(env, wav, dev=PLUG, timeout=30):
    return env.run(['aplay', '-q', '-D', dev, wav], timeout=timeout)


def configured(env):
    """(endpoint path, configuration hex) of the last SetConfiguration."""
    ev = env.events()
    sel = [e.split()[1] for e in ev if e.startswith('SelectConfiguration /org/alsa_bt')]
    cfg = [e.split()[2] for e in ev if e.startswith('SetConfiguration /org/bluez')]
    return (sel[-1] if sel else None, cfg[-1] if cfg else None)


def check_audio(name, env, sig, rate, r, alone, lag_want, rtp, mtu=672, pacing_ms=PACING_MAX_MS):
    check(name + ': aplay succeeded', r.rc == 0 and not r.timed_out, r.stderr[-500:])
    caps = env.captures()
    if not caps:
        check(name + ': the sink received audio', False, 'no capture')
        return
    wav, csv = caps[-1]
    env.wait_event(r'^SinkExit ', timeout=3.0)
    got, grate = audio.read_wav(wav)
    check(name + ': sink rate is the file rate', grate == rate, str(grate))
    lag = audio.align(sig, got, expected_lag=lag_want, search=512)
    check(name + ': aligned at lag %d' % lag_want, lag == lag_want, 'lag %d' % lag)
    ref_lag = audio.align(sig, alone, expected_lag=lag_want, search=2048)
    alone_db = audio.snr_db(sig, alone, ref_lag, rate)
    snr = audio.snr_db(sig, got, lag, grate)
    check(name + ': SNR %.1f dB >= the codec alone (%.1f) - %.0f dB' % (snr, alone_db, SNR_MARGIN_DB),
          snr >= alone_db - SNR_MARGIN_DB, '%.1f dB' % snr)
    check(name + ': the whole signal arrived', len(got) >= len(sig) + lag,
          '%d < %d' % (len(got), len(sig) + lag))
    tail = got[len(sig) + lag + 256:]
    check(name + ': nothing but silence after it', not len(tail) or abs(tail).max() < 64,
          'max %d' % (abs(tail).max() if len(tail) else 0))
    body = got[lag:lag + len(sig)]
    check(name + ': no gaps', not audio.gaps(body, grate), str(audio.gaps(body, grate)[:3]))
    rep = audio.packet_report(csv, grate)
    if rtp:
        check(name + ': RTP sequence and timestamps continuous',
              rep['seq_continuous'] and rep['ts_continuous'] and rep['errors'] == 0 and
              rep['non_rtp'] == 0, str({k: rep[k] for k in ('seq_breaks', 'ts_breaks', 'errors')}))
    else:
        check(name + ': no RTP header at all, whole codewords, no decode errors',
              rep['non_rtp'] == rep['packets'] and rep['errors'] == 0,
              str({k: rep[k] for k in ('non_rtp', 'packets', 'errors')}))
    check(name + ': every packet <= MTU %d' % mtu, rep['max_len'] <= mtu, str(rep['max_len']))
    secs = len(sig) / rate
    check(name + ': arrival paced in real time (within %.0f ms)' % pacing_ms,
          abs(rep['duration_of_arrival_s'] - secs) < 0.25 * TIME_SCALE and
          rep['pacing_p95_ms'] < pacing_ms * TIME_SCALE and
          rep['pacing_ms'] < max(PACING_STALL_MS, 2 * pacing_ms) * TIME_SCALE and
          audio.early_within_bound(rep, pacing_ms * TIME_SCALE),
          'arrival %.3f s for %s s, pacing %.2f ms (95%%), %.2f ms at most, %.2f ms early '
          '(a packet %.2f ms)' % (rep['duration_of_arrival_s'], secs, rep['pacing_p95_ms'],
                                  rep['pacing_ms'], rep['pacing_early_ms'], rep['packet_ms']))
    check(name + ': playback took real time', secs - 0.05 <= r.elapsed <= secs + 1.5 * TIME_SCALE,
          '%.2f s for %s s' % (r.elapsed, secs))
    return rep


def play_signals(codec, seps, dev=PLUG):
    """A sweep, then white noise (3 s, 44.1 kHz), each played to a speaker
    with these SEPs: yields (name, env, signal, aplay's result)."""
    for kind, make in (('sweep', audio.sweep), ('noise', audio.noise)):
        with Env(devices=CONNECTED, sink_seps=seps) as env:
            sig = make(44100, 3.0)
            audio.write_wav(env.tmp + '/in.wav', sig, 44100)
            yield '%s %s' % (codec, kind), env, sig, play(env, env.tmp + '/in.wav', dev=dev)


def test_aptx():
    """Best first: aptX where the speaker has SBC and aptX, aptX HD where it has all."""
    for codec, seps, hd in (('aptx', [SBC, APTX], False), ('aptx_hd', [SBC, APTX, APTX_HD], True)):
        for name, env, sig, r in play_signals(codec, seps):
            path, cfg = configured(env)
            check(name + ': the best codec the speaker offers was configured',
                  path and path.endswith('/' + codec) and cfg and
                  cfg.startswith(APTX_HD[3:15] if hd else APTX[3:15]) and cfg[12:14] == '22',
                  '%s %s' % (path, cfg))
            rep = check_audio(name, env, sig, 44100, r, audio.aptx_alone(sig, hd), 0, rtp=hd)
            if rep and not hd:
                check(name + ': full packets are the MTU in 4-byte codewords (672)',
                      rep['max_len'] == 672, str(rep['max_len']))
            if rep and hd:
                check(name + ': RTP + 110 six-byte codewords = 672', rep['max_len'] == 672,
                      str(rep['max_len']))


def test_aptx_48k_mtu():
    with Env(devices=CONNECTED, sink_seps=[SBC, APTX], mtu=895) as env:
        sig = audio.sweep(48000, 2.0)
        audio.write_wav(env.tmp + '/in.wav', sig, 48000)
        r = play(env, env.tmp + '/in.wav')
        check('aptX 48 kHz: negotiated again at 48 kHz', configured(env)[1] == APTX[3:15] + '12',
              str(configured(env)))
        rep = check_audio('aptX 48 kHz MTU 895', env, sig, 48000, r, audio.aptx_alone(sig, False),
                          0, rtp=False, mtu=895)
        if rep:
            check('aptX at MTU 895: 223 codewords (892 bytes)', rep['max_len'] == 892,
                  str(rep['max_len']))


def test_sbc_xq():
    for name, env, sig, r in play_signals('sbc_xq', [SBC, APTX], dev=PLUG + ',CODEC=sbc_xq'):
        path, cfg = configured(env)
        # 44.1 kHz dual channel, 16 blocks, 8 subbands, loudness, bitpool 2..43
        check(name + ': dual channel at bitpool 43 on the SBC endpoint',
              path and path.endswith('/sbc_xq') and cfg == '2415022b', '%s %s' % (path, cfg))
        check(name + ': the aptX endpoint was never registered (CODEC= restricts)',
              not any(e.startswith('RegisterEndpoint') and '/aptx' in e for e in env.events()))
        check_audio(name, env, sig, 44100, r, audio.sbc_alone(sig, bytes.fromhex('2415022b')),
                    audio.SBC_DELAY, rtp=True)


def aac_bitrate(mtu, rate):
    """What the plugin encodes at: two thirds of what fits the MTU (aac_codec.c)."""
    room = mtu - 12 - (9 + mtu // 255 + 1)
    return room * 8 * rate // 1024 * 2 // 3


def test_aac():
    for name, env, sig, r in play_signals('aac', [SBC, AAC]):
        path, cfg = configured(env)
        check(name + ': AAC chosen over SBC: MPEG-2 LC, 44.1 kHz, stereo, the sink\'s 256 kb/s',
              path and path.endswith('/aac') and cfg == '80010403e800', '%s %s' % (path, cfg))
        alone = audio.aac_alone(sig, 44100, aac_bitrate(672, 44100), BUILD)
        rep = check_audio(name, env, sig, 44100, r, alone, AAC_DELAY, rtp=True,
                          pacing_ms=AAC_PACING_MAX_MS)
        if rep:
            frames = rep['pcm_frames'] // 1024
            check(name + ': one AAC frame a packet, a rare frame in two (RFC 3016 fragments)',
                  frames <= rep['packets'] <= frames * 1.1, '%d packets for %d frames'
                  % (rep['packets'], frames))


def ldac_play(quality, frames):
    """LDAC has no decoder in Debian: its frames are checked as structure by
    the sink (0xAA sync, rate, stereo, equal lengths, count = header)."""
    dev = PLUG + (',LDAC_QUALITY=' + quality if quality else '')
    name = 'ldac %s' % (quality or 'auto')
    with Env(devices=CONNECTED, sink_seps=[SBC, LDAC], mtu=895) as env:
        sig = audio.sweep(44100, 2.0)
        audio.write_wav(env.tmp + '/in.wav', sig, 44100)
        r = play(env, env.tmp + '/in.wav', dev=dev)
        path, cfg = configured(env)
        check(name + ': aplay succeeded, LDAC 44.1 kHz stereo configured',
              r.rc == 0 and path.endswith('/ldac') and cfg == '2d010000aa002001',
              '%s %s %s' % (path, cfg, r.stderr[-300:]))
        env.wait_event(r'^SinkExit ', timeout=3.0)
        rep = audio.packet_report(env.captures()[-1][1], 44100)
        with open(env.captures()[-1][1]) as f:
            order = [line.split(',')[6] for line in f.readlines()[1:]]
        counts = set(order)
        check(name + ': every frame well formed, counts match, RTP continuous',
              rep['errors'] == 0 and rep['non_rtp'] == 0 and rep['seq_continuous'] and
              rep['ts_continuous'], str({k: rep[k] for k in ('errors', 'seq_breaks', 'ts_breaks')}))
        if quality is None and TIME_SCALE > 1:
            # Under a sanitizer the sink may read the socket late enough for
            # libldacBT_abr to step down (4, 5 or 6 frames): auto starts at SQ.
            check(name + ': %d frames (of 128 samples) in the first packet, then SQ or lower'
                  % frames, order[:1] == [str(frames)] and counts <= {'3', '4', '5', '6'},
                  str(order[:20]))
        else:
            check(name + ': %d frames (of 128 samples) in every packet' % frames,
                  counts == {str(frames)}, str(counts))
        check(name + ': every packet 12 + 1 + 660 bytes (the library packs to 679 - 18)',
              rep['max_len'] == 673, str(rep['max_len']))
        check(name + ': the whole signal sent (timestamps cover it)', rep['pcm_frames'] >= len(sig),
              '%d < %d' % (rep['pcm_frames'], len(sig)))
        check(name + ': arrival paced in real time',
              abs(rep['duration_of_arrival_s'] - 2.0) < 0.25 * TIME_SCALE and
              rep['pacing_p95_ms'] < AAC_PACING_MAX_MS * TIME_SCALE and
              rep['pacing_ms'] < 2 * AAC_PACING_MAX_MS * TIME_SCALE,
              'arrival %.3f s, pacing %.2f ms' % (rep['duration_of_arrival_s'], rep['pacing_ms']))


def test_ldac():
    for quality, frames in ((None, 3), ('hq', 2), ('sq', 3), ('mq', 6)):
        ldac_play(quality, frames)
    # The default L2CAP MTU: the library refuses it, the next codec plays.
    with Env(devices=CONNECTED, sink_seps=[SBC, LDAC]) as env:
        r = short_play(env, PLUG)
        errs = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check('ldac at MTU 672: SBC plays instead, one line says why',
              r.rc == 0 and configured(env)[0].endswith('/sbc') and len(errs) == 1 and
              'MTU (672 bytes) is too small for LDAC' in errs[0], '%s %s' % (configured(env), errs))
    # bluetoothd slow to answer UnregisterEndpoint (a loaded machine): every
    # endpoint is unregistered all the same before the next codec registers.
    with Env(devices=CONNECTED, sink_seps=[SBC, LDAC]) as env:
        env.mock('SetFault', 'UnregisterEndpoint', 'slow:1.5')
        r = short_play(env, PLUG)
        errs = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check('... bluetoothd 1.5 s slow to unregister: SBC plays all the same, one line',
              r.rc == 0 and (configured(env)[0] or '').endswith('/sbc') and len(errs) == 1, '%s %s %s' % (configured(env), errs, [
                  e for e in env.events() if 'Endpoint' in e][-8:]))
    open_error('LDAC_QUALITY=best', {'devices': CONNECTED}, PLUG + ',LDAC_QUALITY=best',
               'Invalid argument', r'LDAC_QUALITY=best: say hq, sq, mq or auto')


LDAC_PAUSE_S = 2.0


def test_ldac_congestion():
    """Quality auto under congestion: the sink stops reading for 2 s, the
    socket's queue grows, libldacBT_abr (or, without it, the congestion
    steps) lowers the quality: more, smaller frames a packet (SQ 3, then 4,
    5 or MQ 6), every packet still well formed and within the MTU."""
    name = 'ldac auto congested'
    with Env(devices=CONNECTED, sink_seps=[SBC, LDAC], mtu=895) as env:
        sig = audio.noise(44100, 5.0)
        audio.write_wav(env.tmp + '/in.wav', sig, 44100)
        p = env.spawn(['aplay', '-q', '-D', PLUG, env.tmp + '/in.wav'])
        if not env.wait_event(r'^Sink 0 ', 5.0):
            check(name + ': playback started', False, p.wait(5).stderr[-300:])
            return
        time.sleep(0.5)
        env.mock('PauseSink', LDAC_PAUSE_S)
        r = p.wait(30)
        env.wait_event(r'^SinkExit ', timeout=3.0)
        rep = audio.packet_report(env.captures()[-1][1], 44100)
        with open(env.captures()[-1][1]) as f:
            rows = [line.split(',') for line in f.readlines()[1:]]
        counts = [int(x[6]) for x in rows if x[6]]
        lens = [int(x[1]) for x in rows]
        check(name + ': aplay succeeded, LDAC configured',
              r.rc == 0 and configured(env)[0].endswith('/ldac'), r.stderr[-300:])
        check(name + ': every frame well formed, counts match the header',
              rep['errors'] == 0 and rep['non_rtp'] == 0, str(rep['errors']))
        # (Under a sanitizer the sink may start reading late enough for
        # libldacBT_abr to step down already in the first packets.)
        check(name + ': SQ (3 frames a packet) at the start', counts[:1] == [3],
              str(counts[:20]))
        lower = sorted({c for c in counts if c > 3})
        steps = [c for k, c in enumerate(counts) if not k or c != counts[k - 1]]
        print('# %s: frames a packet, in the order they changed: %s' % (name, steps), flush=True)
        check(name + ': the quality went down (more frames a packet: 4, 5 or MQ 6)',
              lower and set(counts) <= {2, 3, 4, 5, 6}, str(sorted(set(counts))))
        check(name + ': every packet within the MTU (at most 12 + 1 + 660 bytes)',
              max(lens) <= 673 <= 895, str(max(lens)))


def without_library(env, soname, dev):
    """aplay with soname unloadable: /dev/null bound over it in a private
    mount namespace (a user namespace, so no root is needed)."""
    lib = os.path.realpath('/usr/lib/x86_64-linux-gnu/' + soname)
    path = env.tmp + '/in.wav'
    audio.write_wav(path, audio.sweep(44100, 0.3), 44100)
    # A sanitizer's runtime (ALSABT_PRELOAD) goes into aplay only: TSan's
    # crashes mount and the shell.
    return env.run(['env', '-u', 'LD_PRELOAD', 'unshare', '-rm', 'sh', '-c',
                    'mount --bind /dev/null "$0" && LD_PRELOAD="$3" exec aplay -q -D "$1" "$2"',
                    lib, dev, path, env.environ.get('LD_PRELOAD', '')], timeout=15)


def test_library_missing():
    """A codec whose library does not load is not offered; one line says so."""
    if subprocess.run(['unshare', '-rm', 'true'], capture_output=True).returncode:
        skip_loudly('codec library missing', 'unshare -rm (user namespaces) not available')
        return
    for soname, lost, plays, pattern in (
            ('libfreeaptx.so.0', ('aptx_hd', 'aptx'), 'ldac', r'aptX and aptX HD are not offered: '
             r'cannot load libfreeaptx.so.0 .*install libfreeaptx0'),
            ('libldacBT_enc.so.2', ('ldac',), 'aptx_hd', r'LDAC is not offered: cannot load '
             r'libldacBT_enc.so.2 .*install libldacbt-enc2'),
            # Not a codec lost: LDAC's quality auto falls back to the congestion steps.
            ('libldacBT_abr.so.2', (), 'ldac', r'LDAC quality auto steps with the link.s congestion '
             r'instead: cannot load libldacBT_abr.so.2 .*install libldacbt-abr2')):
        with Env(devices=CONNECTED, sink_seps=[SBC, AAC, APTX, APTX_HD, LDAC], mtu=895) as env:
            r = without_library(env, soname, PLUG)
            errs = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
            check('%s missing: plays with %s, one line says why' % (soname, plays),
                  r.rc == 0 and configured(env)[0].endswith('/' + plays) and len(errs) == 1 and
                  re.search(pattern, errs[0]), '%s %s' % (configured(env), r.stderr[-300:]))
            if lost:
                check('%s missing: no endpoint for %s' % (soname, ', '.join(lost)),
                      not set(lost) & set(registered(env)), str(registered(env)))


def registered(env):
    return [e.split()[2].rsplit('/', 1)[1] for e in env.events()
            if e.startswith('RegisterEndpoint :')]


def short_play(env, dev):
    path = env.tmp + '/in.wav'
    audio.write_wav(path, audio.sweep(44100, 0.3), 44100)
    return play(env, path, dev=dev, timeout=15)


def test_choice():
    with Env(devices=CONNECTED, sink_seps=[SBC, APTX, APTX_HD]) as env:
        r = short_play(env, PLUG)
        check('default: one endpoint per codec the speaker has, best first',
              r.rc == 0 and registered(env) == ['aptx_hd', 'aptx', 'sbc'], str(registered(env)))
    with Env(devices=CONNECTED, sink_seps=[SBC, AAC, APTX, APTX_HD]) as env:
        r = short_play(env, PLUG)
        check('default with all four: aptX HD, aptX, AAC, SBC',
              r.rc == 0 and registered(env) == ['aptx_hd', 'aptx', 'aac', 'sbc'] and
              configured(env)[0].endswith('/aptx_hd'), str(registered(env)))
    with Env(devices=CONNECTED, sink_seps=[SBC, APTX]) as env:
        r = short_play(env, PLUG + ',CODEC=sbc')
        check('CODEC=sbc: only SBC registered and played', r.rc == 0 and
              registered(env) == ['sbc'] and configured(env)[1] == '21150235',
              '%s %s %s' % (registered(env), configured(env), r.stderr[-300:]))
    with Env(devices=CONNECTED, sink_seps=[SBC, APTX]) as env:
        r = short_play(env, PLUG + ',CODEC=aptx_hd:sbc:aptx')
        check('CODEC=aptx_hd:sbc:aptx on an SBC + aptX speaker: the order is the user\'s, SBC',
              r.rc == 0 and registered(env) == ['sbc', 'aptx'] and
              configured(env)[0].endswith('/sbc'), '%s %s' % (registered(env), configured(env)))
    # The speaker's aptX is mono only: our aptX endpoint refuses, BlueZ tries the next.
    with Env(devices=CONNECTED, sink_seps=['00:ffff0235', 'ff:4f000000010031']) as env:
        r = short_play(env, PLUG)
        sel = [e for e in env.events() if e.startswith('SelectConfiguration ')]
        check('aptX refused (mono only): falls back to SBC and plays',
              r.rc == 0 and configured(env)[0].endswith('/sbc') and len(sel) == 4 and
              'InvalidArguments' in sel[1], '%s %s' % (sel, r.stderr[-300:]))
    # Not connected yet: BlueZ does not know the speaker's endpoints, all of ours are offered.
    with Env(devices=[DEV], sink_seps=[SBC, APTX]) as env:
        r = short_play(env, PLUG)
        check('speaker not yet connected: every codec offered, aptX chosen',
              r.rc == 0 and registered(env) == ['ldac', 'aptx_hd', 'aptx', 'aac', 'sbc'] and
              configured(env)[0].endswith('/aptx'), '%s %s' % (registered(env), configured(env)))


def state_file(env):
    return os.path.join(env.tmp, '.local/state/alsa-bt', ADDR.replace(':', '_'))


def remembered_offers(env):
    with open(state_file(env)) as f:
        m = re.search(r' offers (\S+)', f.read())
    return m.group(1) if m else None


def play_disconnected(env, dev):
    """The speaker switched off and on again, then an aplay whose dynamic
    loader logs each library it loads (LD_DEBUG=files)."""
    env.mock('Vanish')
    env.mock('ClearEvents')
    path = env.tmp + '/in.wav'
    audio.write_wav(path, audio.sweep(44100, 0.3), 44100)
    r = env.run(['env', 'LD_DEBUG=files', 'aplay', '-q', '-D', dev, path], timeout=15)
    loaded = set(re.findall(r'file=(lib[\w+-]+)\.so\S*\s+\[\d+\];\s+dynamically loaded', r.stderr))
    return r, loaded


def test_remembered():
    """BlueZ lists a speaker's endpoints only while it is connected. An open
    that finds it disconnected offers what it offered when it last was, and
    loads no library of a codec it lacks (libavcodec alone costs 48 M
    instructions): the README's figures. Played alone (MIX=0), so that the
    libraries are loaded by the process LD_DEBUG watches, not by a mixer."""
    with Env(devices=[DEV], sink_seps=[SBC, APTX]) as env:
        r, loaded = play_disconnected(env, ALONE)
        check('nothing remembered: every codec offered, aptX chosen, libavcodec loaded',
              r.rc == 0 and registered(env) == ['ldac', 'aptx_hd', 'aptx', 'aac', 'sbc'] and
              configured(env)[0].endswith('/aptx') and 'libavcodec' in loaded,
              '%s %s %s' % (registered(env), configured(env), sorted(loaded)))
        check('what the speaker offered is remembered',
              remembered_offers(env) == 'aptx:sbc:sbc_xq', str(remembered_offers(env)))
        r, loaded = play_disconnected(env, ALONE)
        check('disconnected again: only aptX and SBC offered, aptX chosen',
              r.rc == 0 and registered(env) == ['aptx', 'sbc'] and
              configured(env)[0].endswith('/aptx'), '%s %s' % (registered(env), r.stderr[-300:]))
        check('disconnected again: no library of a codec the speaker lacks loaded',
              not {'libavcodec', 'libldacBT_enc', 'libldacBT_abr'} & loaded and
              'libfreeaptx' in loaded, str(sorted(loaded)))
        r, loaded = play_disconnected(env, ALONE + ',CODEC=aac:sbc')
        check('CODEC=aac:sbc, remembered aptX + SBC: only SBC offered, played',
              r.rc == 0 and registered(env) == ['sbc'] and configured(env)[0].endswith('/sbc') and
              'libavcodec' not in loaded, '%s %s' % (registered(env), sorted(loaded)))
    # What is remembered is out of date: the speaker gained aptX.
    with Env(devices=[DEV], sink_seps=[SBC, APTX]) as env:
        os.makedirs(os.path.dirname(state_file(env)), exist_ok=True)
        with open(state_file(env), 'w') as f:
            f.write('volume 127 muted 0 pending 0 codec sbc wanted - offers sbc:sbc_xq\n')
        r, _ = play_disconnected(env, PLUG + ',CODEC=aptx')
        check('remembered SBC only, CODEC=aptx: the memory leaves nothing, so it is set aside',
              r.rc == 0 and registered(env) == ['aptx'] and configured(env)[0].endswith('/aptx'),
              '%s %s %s' % (registered(env), configured(env), r.stderr[-300:]))
        check('... and what the speaker offers now is remembered',
              remembered_offers(env) == 'aptx:sbc:sbc_xq', str(remembered_offers(env)))
        with open(state_file(env), 'w') as f:
            f.write('volume 127 muted 0 pending 0 codec sbc wanted - offers sbc:sbc_xq\n')
        r, _ = play_disconnected(env, PLUG)
        check('remembered SBC only, default: SBC plays this once', r.rc == 0 and
              registered(env) == ['sbc'] and configured(env)[0].endswith('/sbc'), str(registered(env)))
        r, _ = play_disconnected(env, PLUG)
        check('... and the next open has learnt aptX', r.rc == 0 and
              registered(env) == ['aptx', 'sbc'] and configured(env)[0].endswith('/aptx'),
              str(registered(env)))


def open_error(name, env_kw, dev, errno_text, pattern, max_s=1.0):
    with Env(**env_kw) as env:
        r = short_play(env, dev)
        errs = [ln for ln in r.stderr.splitlines() if ln.startswith('ALSA lib')]
        check(name + ': fails with "%s"' % errno_text, r.rc != 0 and errno_text in r.stderr,
              r.stderr[-400:])
        check(name + ': one SNDERR line saying what to do',
              len(errs) == 1 and re.search(pattern, errs[0]), str(errs))
        check(name + ': within %s s' % max_s, r.elapsed < max_s * TIME_SCALE, '%.2f s' % r.elapsed)
        return env.events()


def test_errors():
    open_error('CODEC=lhdc (unknown)', {'devices': CONNECTED}, PLUG + ',CODEC=lhdc',
               'Invalid argument',
               r"CODEC=lhdc: unknown codec 'lhdc' \(known: sbc, sbc_xq, aptx, aptx_hd, aac, ldac;")
    open_error('CODEC=sbc:aptx_hdd', {'devices': CONNECTED}, PLUG + ',CODEC=sbc:aptx_hdd',
               'Invalid argument', r"unknown codec 'aptx_hdd'")
    ev = open_error('CODEC=aptx_hd on an SBC + aptX speaker', {'devices': CONNECTED,
                    'sink_seps': [SBC, APTX]}, PLUG + ',CODEC=aptx_hd', 'Operation not supported',
                    r'with CODEC=aptx_hd: it offers sbc, aptx')
    check('CODEC= the speaker lacks: nothing registered, no connection attempted',
          not any(e.startswith(('RegisterEndpoint', 'ConnectProfile')) for e in ev), str(ev[-4:]))
    open_error('CODEC=sbc_xq on a speaker without dual channel',
               {'devices': CONNECTED, 'sink_seps': ['00:fbff0235']}, PLUG + ',CODEC=sbc_xq',
               'Protocol error', r'SBC-XQ capabilities .* offer nothing playable')


def test_delay():
    """Before START, snd_pcm_delay is exactly the buffer + the codec's delay."""
    client = os.path.join(BUILD, 'pcm_client')
    for codec, seps, want in (('sbc', [SBC], 73), ('aptx', [SBC, APTX], 90),
                              ('aptx_hd', [SBC, APTX_HD], 90)):
        with Env(devices=CONNECTED, sink_seps=seps) as env:
            path = env.tmp + '/in.wav'
            audio.write_wav(path, audio.sweep(44100, 1.0), 44100)
            r = env.run([client, '-D', PLUG, '-i', path, '--timeout', '15'], timeout=20)
            pre = [ln for ln in r.stdout.splitlines()
                   if ln.startswith('DELAY ') and 'state=PREPARED' in ln]
            m = re.search(r'frames=(-?\d+) written=(\d+)', pre[-1]) if pre else None
            extra = int(m.group(1)) - int(m.group(2)) if m else None
            check('%s: delay before START = written + %d' % (codec, want),
                  r.rc == 0 and extra == want, '%s %s' % (extra, r.stderr[-300:]))
            drain = [ln for ln in r.stdout.splitlines() if ln.startswith('DRAIN_END')]
            check('%s: drain returns 0' % codec, drain and 'rc=0' in drain[-1], str(drain))


test_choice()
test_remembered()
test_errors()
test_aptx()
test_aptx_48k_mtu()
test_sbc_xq()
test_aac()
test_ldac()
test_ldac_congestion()
test_library_missing()
test_delay()
finish()
