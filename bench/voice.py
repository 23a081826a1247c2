"""Section 7 of make bench: a headset's voice (PROFILE=hfp), both directions.

duplex_client (tests/tools) reads the headset's microphone and writes each
20 ms period to its earpiece for SECONDS, against the mock bluetoothd's
scripted headset and its radio (tests/tools/sco_headset: a 48-byte SCO
packet every 3 ms for CVSD, 6 ms for mSBC), as tests/integration/
test_voice.py sets them up. Per codec:
  - CPU of the program per second of call (both directions; the plugin's
    I/O thread is in it), and its context switches per second;
  - the lag from the headset's microphone to its earpiece, and what of it
    the plugin adds: the lag minus the program's own buffering (three periods
    written ahead, 60 ms) and minus the codec's (mSBC: 73 samples each way
    in libsbc); capture shows whole periods, so a period's wait is the
    program's too.
"""
import os

import audio
import test_voice

SECONDS = 10
PERIOD_MS = 20
AHEAD_PERIODS = 3          # duplex_client writes three periods of silence first
CODEC_DELAY_MS = {'cvsd': 0.0, 'msbc': 2 * 73 / 16.0}


def one(codec, spawn, tmp):
    rate = test_voice.RATE[codec]
    mic = os.path.join(tmp, 'voice-mic-%s.wav' % codec)
    ref = test_voice.speech_like(rate, SECONDS + 2)     # a voice-band sweep
    audio.write_wav(mic, ref, rate)
    with test_voice.Voice(codec, sco_args='--play %s' % mic) as v:
        r = spawn(v.env, [os.path.join(test_voice.BUILD, 'duplex_client'), '-D', test_voice.PCM,
                          '--rate', str(rate), '--seconds', str(SECONDS),
                          '--period-ms', str(PERIOD_MS)], SECONDS + 30)
        v.env.stop_mock()
        v.sco_end()
        got = audio.read_wav(v.ear)[0][:, 0] if os.path.exists(v.ear) else None
    out = {'codec': codec, 'cpu_ms_per_s': r['cpu'] / SECONDS * 1000,
           'csw_per_s': r['csw'] / SECONDS, 'rss_kb': r['rss_kb'], 'ok': r['status'] == 0}
    if got is not None and len(got) > rate:
        lag = audio.align(ref, got, expected_lag=rate // 2, search=rate // 2)
        out['lag_ms'] = lag * 1000.0 / rate
        out['snr_db'] = audio.snr_db(ref, got, lag, rate=rate)
        out['added_ms'] = out['lag_ms'] - AHEAD_PERIODS * PERIOD_MS - CODEC_DELAY_MS[codec]
    return out


def section(spawn, tmp):
    return [one(codec, spawn, tmp) for codec in ('cvsd', 'msbc')]


def report(rows):
    lines = ['7. A headset\'s voice (PROFILE=hfp): duplex_client, microphone -> earpiece, '
             '%d s, %d ms periods;' % (SECONDS, PERIOD_MS),
             '   the mock headset\'s radio sends 48-byte SCO packets on its own clock',
             '   codec   CPU ms / s of call   switches / s   max RSS   mic -> ear lag   '
             'added by the plugin   SNR']
    for r in rows:
        lines.append('   %-6s  %18.2f   %12.0f   %5d KB   %11.1f ms   %17.1f ms   %s' % (
            r['codec'], r['cpu_ms_per_s'], r['csw_per_s'], r['rss_kb'], r.get('lag_ms', float('nan')),
            r.get('added_ms', float('nan')),
            'exact' if r.get('snr_db') == float('inf') else '%.1f dB' % r.get('snr_db', float('nan'))))
    return lines
