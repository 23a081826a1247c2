"""Waits for the kernel to finish setting up Bluetooth controllers (guest side).

    mgmt.py wait COUNT SECONDS SINCE
    mgmt.py unresponsive SECONDS      a controller that never answers (a test)

Asks the kernel's Bluetooth management interface (the HCI control channel,
what bluetoothd uses) for its index list until it holds COUNT controllers,
and reads the kernel log meanwhile: a controller whose set-up failed (an HCI
command timed out, e.g. "hci0: Opcode 0x0c03 failed: -110" when HCI_Reset
gets no answer under TCG) never reaches that list, so bluetoothd would never
see it.  Kernel lines older than SINCE (seconds since boot: when the
controllers were made) are from earlier attempts and ignored.  Prints "controllers hci0 hci1" or "failed <kernel line>".
Exit 0: ready; 2: a set-up failed; 1: not ready in SECONDS.  No tool of
BlueZ's is used: btmgmt's non-interactive mode differs between versions.
"""
import ctypes
import os
import re
import select
import socket
import struct
import sys
import time

AF_BLUETOOTH, BTPROTO_HCI, HCI_CHANNEL_CONTROL = 31, 1, 3
MGMT_INDEX_NONE = 0xFFFF
MGMT_OP_READ_INDEX_LIST = 0x0003
MGMT_EV_CMD_COMPLETE = 0x0001
SETUP_FAILED = re.compile(r'hci\d+: Opcode 0x[0-9a-f]+ failed')


def control_socket():
    s = socket.socket(AF_BLUETOOTH, socket.SOCK_RAW | socket.SOCK_CLOEXEC, BTPROTO_HCI)
    # struct sockaddr_hci { sa_family_t; unsigned short dev; unsigned short channel; }
    # (Python's own bind() cannot name the channel before 3.12)
    addr = struct.pack('<HHH', AF_BLUETOOTH, MGMT_INDEX_NONE, HCI_CHANNEL_CONTROL)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.bind(s.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        raise OSError(ctypes.get_errno(), 'bind to the HCI control channel')
    return s


def index_list(s, timeout=2.0):
    """The controllers the management interface lists, or None without an answer."""
    s.send(struct.pack('<HHH', MGMT_OP_READ_INDEX_LIST, MGMT_INDEX_NONE, 0))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        pkt = s.recv(1024)
        if len(pkt) < 9:
            continue
        ev, _, _ = struct.unpack_from('<HHH', pkt)
        opcode, status = struct.unpack_from('<HB', pkt, 6)
        if ev != MGMT_EV_CMD_COMPLETE or opcode != MGMT_OP_READ_INDEX_LIST:
            continue        # an unsolicited event (index added, ...)
        if status or len(pkt) < 11:
            return None
        n = struct.unpack_from('<H', pkt, 9)[0]
        return list(struct.unpack_from('<%dH' % n, pkt, 11))
    return None


def kernel_failures(kmsg, since):
    """Kernel log lines since `since` that say a controller's set-up failed."""
    found = []
    while True:
        try:
            rec = os.read(kmsg, 8192).decode(errors='replace')
        except BlockingIOError:
            return found
        except OSError:         # EPIPE: records overwritten; go on
            continue
        head, _, msg = rec.partition(';')
        fields = head.split(',')
        if len(fields) >= 3 and fields[2].isdigit() and int(fields[2]) < since * 1e6:
            continue
        if SETUP_FAILED.search(msg):
            found.append(msg)


def wait(count, seconds, since):
    count, deadline, since = int(count), time.monotonic() + float(seconds), float(since)
    kmsg = os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK)
    s = control_socket()
    while True:
        # A failure first: the others may be listed beside the failed one.
        bad = kernel_failures(kmsg, since)
        if bad:
            print('failed %s' % bad[0], flush=True)
            return 2
        idx = index_list(s) or []
        if len(idx) >= count:
            print('controllers %s' % ' '.join('hci%d' % i for i in sorted(idx)), flush=True)
            return 0
        if time.monotonic() >= deadline:
            print('failed: %d of %d controllers in the management index list after %s s'
                  % (len(idx), count, seconds), flush=True)
            return 1
        time.sleep(0.1)


def unresponsive(seconds):
    """A virtual controller (hci_vhci) whose HCI commands are never answered,
    held for SECONDS: the kernel's HCI_Reset to it times out as it sometimes
    does under TCG when btvirt answers late, deterministically."""
    fd = os.open('/dev/vhci', os.O_RDWR)
    os.write(fd, bytes([0xff, 0x00]))       # HCI_VENDOR_PKT: create a primary controller
    print('made an unresponsive controller', flush=True)
    time.sleep(float(seconds))
    os.close(fd)
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == 'wait':
        sys.exit(wait(*sys.argv[2:]))
    if len(sys.argv) == 3 and sys.argv[1] == 'unresponsive':
        sys.exit(unresponsive(sys.argv[2]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
