"""A2DP media packets in a btmon capture (`btmon -w FILE`, btsnoop monitor format).

    python3 tests/system/snoop.py FILE      # prints a summary per adapter and direction

media_packets(path) -> {(adapter index, 'tx'|'rx'): [(t_s, rtp_seq, rtp_ts, frames, nbytes)]}
for every reassembled L2CAP frame that is an RTP packet with an SBC payload
(version 2, payload type >= 96).  Used by the system tests to see on the
emulated air what the plugin sent: sequence gaps are packets the plugin
dropped (its socket was full), arrival times show the pacing.
"""
import struct
import sys

ACL_TX, ACL_RX = 4, 5      # btsnoop monitor opcodes


def records(path):
    with open(path, 'rb') as f:
        head = f.read(16)
        if head[:8] != b'btsnoop\0':
            raise ValueError('%s: not a btsnoop file' % path)
        while True:
            h = f.read(24)
            if len(h) < 24:
                return
            orig, incl, flags, drops, ts = struct.unpack('>IIIIq', h)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield flags >> 16, flags & 0xffff, ts, data


def media_packets(path):
    out = {}
    partial = {}
    for index, opcode, ts, data in records(path):
        if opcode not in (ACL_TX, ACL_RX) or len(data) < 4:
            continue
        hf, dlen = struct.unpack('<HH', data[:4])
        handle, pb = hf & 0x0fff, (hf >> 12) & 0x3
        key = (index, opcode, handle)
        payload = data[4:4 + dlen]
        if pb in (0, 2):                     # first fragment of an L2CAP frame
            if len(payload) < 4:
                continue
            l2len = struct.unpack('<H', payload[:2])[0]
            partial[key] = [l2len, bytearray(payload[4:])]
        elif key in partial:                 # continuation
            partial[key][1] += payload
        else:
            continue
        l2len, buf = partial[key]
        if len(buf) < l2len:
            continue
        del partial[key]
        frame = bytes(buf[:l2len])
        if len(frame) < 13 or frame[0] >> 6 != 2 or (frame[1] & 0x7f) < 96:
            continue
        seq, rts = struct.unpack('>HI', frame[2:8])
        frames = frame[12] & 0x0f
        t = ts / 1e6
        out.setdefault((index, 'tx' if opcode == ACL_TX else 'rx'), []).append(
            (t, seq, rts, frames, len(frame)))
    return out


def summary(pkts):
    """dict: packets, seq_gaps (missing sequence numbers), first/last time,
    the longest interval between packets (ms), bytes."""
    if not pkts:
        return {'packets': 0}
    gaps = 0
    longest = 0.0
    for a, b in zip(pkts, pkts[1:]):
        d = (b[1] - a[1]) % 65536
        if 1 < d < 1000:
            gaps += d - 1
        longest = max(longest, b[0] - a[0])
    return {'packets': len(pkts), 'seq_missing': gaps, 'first_s': pkts[0][0],
            'last_s': pkts[-1][0], 'longest_interval_ms': longest * 1000,
            'bytes': sum(p[4] for p in pkts)}


if __name__ == '__main__':
    for (index, d), pkts in sorted(media_packets(sys.argv[1]).items()):
        # split into streams at time gaps > 1 s or sequence restarts
        streams, cur = [], [pkts[0]]
        for a, b in zip(pkts, pkts[1:]):
            if b[0] - a[0] > 1.0 or (b[1] - a[1]) % 65536 > 1000:
                streams.append(cur)
                cur = []
            cur.append(b)
        streams.append(cur)
        for s in streams:
            print('hci%d %s %s' % (index, d, summary(s)))
