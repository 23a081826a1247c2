#!/usr/bin/python3
"""A scripted HFP Hands-Free (the headset) on an RFCOMM channel: the test
stand-in the mock bluetoothd spawns for each HFP connection (--headset).

  headset.py --fd N --log FILE [--script modern|bluealsa40] [--split]
             [--no-bcs] [--bcs-answer ID] [--battery PCT] [--hangup-after S]
             [--hangup-after-voice S]

It sends the script's Service Level Connection commands one at a time,
each after the answer to the one before (OK, ERROR or +CME ERROR; 1 s
without one is logged and the script goes on, as bluez-alsa's HF does),
then answers the AG's unsolicited lines: +BCS: <id> with AT+BCS=<id>
(--bcs-answer: another id; --no-bcs: nothing).  Scripts (hfp.md):
  modern      BRSF 916 (CLI, remote volume, codec negotiation, HF
              indicators, eSCO S4), BAC 1,2, CIND=?, CIND?, CMER, the BIND
              exchange, then VGS 9 and VGM 7
  bluealsa40  bluez-alsa 4.0 as HF: BRSF 116, no BAC, CIND=?, CIND?,
              CMER=3,0,0,1,0, then VGM, VGS and Apple's XAPL
  bluealsa43  bluez-alsa 4.3 as HF (the real stack's trace): BRSF 756, BAC
              1,2,3, CMER=3,0,0,1,0, VGM, VGS, XAPL, BCC; it answers
              "+BCS: 2" with "AT+BCS= 2", the value as it read it
  hfp15       an HFP 1.5 headset: BRSF 116, CIND=?, CIND?, CMER, and then
              nothing (no negotiation, no volume report)
  silent      nothing at all (a headset that never starts the SLC)
--sco PATH: the voice link too: it listens on PATH (SOCK_SEQPACKET), where
the SCO stand-in (tests/tools/sco_shim.c) connects the AG's SCO socket,
and runs --sco-tool (tests/tools/sco_headset) on each connection (--fd),
with --log this log and --sco-args (separated by commas: the mock splits
--headset-args at spaces); it is stopped (SIGTERM) when this
headset ends, as a headset's radio drops the link with the channel.
--then CMD (repeatable): sent --then-after seconds (default 1) after the
start, once the script is done (a headset's volume buttons: AT+VGS=12).
--split sends every command a byte at a time.  The log has a line per line
sent ("> "), received ("< ") or missed ("! "), each after the seconds since
start.  Ends at EOF, SIGTERM, or --hangup-after seconds (closing the channel),
or --hangup-after-voice seconds after the first voice link came up (a
hang-up mid-call, however long the AG took to get there); the hang-up's
line gives its CLOCK_MONOTONIC time.
"""
import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

SCRIPTS = {
    'modern': ['AT+BRSF=916', 'AT+BAC=1,2', 'AT+CIND=?', 'AT+CIND?', 'AT+CMER=3,0,0,1',
               'AT+BIND=1,2', 'AT+BIND=?', 'AT+BIND?', 'AT+VGS=9', 'AT+VGM=7'],
    'bluealsa40': ['AT+BRSF=116', 'AT+CIND=?', 'AT+CIND?', 'AT+CMER=3,0,0,1,0', 'AT+VGM=15',
                   'AT+VGS=15', 'AT+XAPL=BlueALSA-0001-0400,6'],
    'bluealsa43': ['AT+BRSF=756', 'AT+BAC=1,2,3', 'AT+CIND=?', 'AT+CIND?', 'AT+CMER=3,0,0,1,0',
                   'AT+VGM=15', 'AT+VGS=15', 'AT+XAPL=B103-A15A-0400,6', 'AT+BCC'],
    'hfp15': ['AT+BRSF=116', 'AT+CIND=?', 'AT+CIND?', 'AT+CMER=3,0,0,1'],
    'silent': [],
}
ANSWER_TIMEOUT_S = 1.0


class Headset:
    def __init__(self, sock, log, args, voice=None):
        self.sock, self.log, self.args, self.voice = sock, log, args, voice
        self.t0 = time.monotonic()
        self.buf = b''
        self.eof = False

    def note(self, mark, text):
        self.log.write('%.3f %s %s\n' % (time.monotonic() - self.t0, mark, text))
        self.log.flush()

    def send(self, line):
        data = (line + '\r').encode()
        self.note('>', line)        # before: whoever gets the line may read the log
        if self.args.split:
            for i in range(len(data)):
                self.sock.sendall(data[i:i + 1])
                time.sleep(0.002)
        else:
            self.sock.sendall(data)

    def lines(self, timeout):
        """The lines that arrive within timeout (at least one, if any)."""
        end = time.monotonic() + timeout
        while not self.eof:
            if b'\r\n' in self.buf.lstrip(b'\r\n'):
                break
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                break
            data = self.sock.recv(4096)
            if not data:
                self.eof = True
            self.buf += data
        out = []
        while b'\r\n' in self.buf:
            line, _, rest = self.buf.partition(b'\r\n')
            self.buf = rest
            if line:
                out.append(line.decode(errors='replace'))
                self.note('<', out[-1])
        return out

    def command(self, line):
        self.send(line)
        end = time.monotonic() + ANSWER_TIMEOUT_S
        while not self.eof and time.monotonic() < end:
            answer = None
            for got in self.lines(end - time.monotonic()):   # all of them: one may be +BCS
                self.unsolicited(got)
                if got == 'OK' or got == 'ERROR' or got.startswith('+CME ERROR'):
                    answer = answer or got
            if answer:
                return answer
        self.note('!', 'no answer to ' + line)
        return None

    def unsolicited(self, line):
        if line.startswith('+BCS:') and not self.args.no_bcs:
            codec = line.split(':', 1)[1]
            if self.args.script != 'bluealsa43':
                codec = codec.strip()
            codec = self.args.bcs_answer or codec
            self.send('AT+BCS=%s' % codec)

    def run(self):
        for line in SCRIPTS[self.args.script]:
            if self.eof:
                return
            self.command(line)
        if self.args.battery is not None:
            self.command('AT+BIEV=2,%d' % self.args.battery)
        later = list(self.args.then)
        while not self.eof and ((end := self.hangup_time()) is None or time.monotonic() < end):
            if later and time.monotonic() >= self.t0 + self.args.then_after:
                for line in later:
                    self.command(line)      # the user pressing the headset's buttons
                later = []
            for got in self.lines(0.2 if end is None else max(0.0, min(0.2, end - time.monotonic()))):
                self.unsolicited(got)
        self.note('!', 'eof' if self.eof else 'hangup at %.3f' % time.monotonic())

    def hangup_time(self):
        if self.args.hangup_after:
            return self.t0 + self.args.hangup_after
        if self.args.hangup_after_voice and self.voice and self.voice.first:
            return self.voice.first + self.args.hangup_after_voice
        return None


class Voice:
    """The SCO stand-in's listener: each connection goes to --sco-tool."""

    def __init__(self, args):
        self.args, self.procs = args, []
        self.first = None           # CLOCK_MONOTONIC of the first connection
        if os.path.exists(args.sco):
            os.unlink(args.sco)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(args.sco)
        self.listener.listen(4)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.first = self.first or time.monotonic()
            argv = [self.args.sco_tool, '--fd', str(conn.fileno()), '--log', self.args.log] + \
                [a for a in self.args.sco_args.split(',') if a]
            self.procs.append(subprocess.Popen(argv, pass_fds=[conn.fileno()]))
            conn.close()

    def stop(self):
        self.listener.close()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument('--fd', type=int, required=True)
    p.add_argument('--log', required=True)
    p.add_argument('--script', choices=sorted(SCRIPTS), default='modern')
    p.add_argument('--split', action='store_true')
    p.add_argument('--no-bcs', action='store_true')
    p.add_argument('--bcs-answer')
    p.add_argument('--battery', type=int)
    p.add_argument('--hangup-after', type=float)
    p.add_argument('--hangup-after-voice', type=float)
    p.add_argument('--then', action='append', default=[])
    p.add_argument('--then-after', type=float, default=1.0)
    p.add_argument('--sco')
    p.add_argument('--sco-tool')
    p.add_argument('--sco-args', default='')
    args = p.parse_args(argv)
    voice = Voice(args) if args.sco else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(True)
    try:
        with open(args.log, 'a') as log:
            try:
                Headset(sock, log, args, voice).run()
            except (BrokenPipeError, ConnectionResetError):
                log.write('! the AG closed the channel\n')
    finally:
        if voice:
            voice.stop()
        sock.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
