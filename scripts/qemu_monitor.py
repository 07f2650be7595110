#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Drive a QEMU human monitor (HMP) on a unix socket for the test runner.

  qemu_monitor.py SOCK save STATE   stop the VM, migrate it to the file STATE,
                                    wait for the migration to complete, quit
  qemu_monitor.py SOCK resume       wait for an incoming migration to finish
                                    (-incoming), then let the VM run

Each step is bounded in time; exits non-zero with a message if one fails.
"""
import socket
import sys
import time

PROMPT = b'(qemu) '


class Monitor:
    def __init__(self, path, wait=30.0):
        deadline = time.monotonic() + wait
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(60)
        self._read()

    def _read(self):
        data = b''
        while not data.endswith(PROMPT):
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors='replace')

    def cmd(self, line):
        self.sock.sendall(line.encode() + b'\n')
        out = self._read()
        # The monitor echoes the command line (with terminal escapes) before its answer.
        answer = out.split('\r\n', 1)[1] if '\r\n' in out else ''
        answer = answer.removesuffix(PROMPT.decode()).strip()
        print(f'monitor: {line} -> {answer!r}', flush=True)
        return out


def wait_for(mon, line, done, what, limit=120.0):
    deadline = time.monotonic() + limit
    while True:
        out = mon.cmd(line)
        if done(out):
            return out
        if 'status: failed' in out:
            sys.exit(f'qemu_monitor: {what} failed: {out.strip()}')
        if time.monotonic() > deadline:
            sys.exit(f'qemu_monitor: {what} did not finish in {limit} s')
        time.sleep(0.2)


def main():
    path, action = sys.argv[1], sys.argv[2]
    mon = Monitor(path)
    if action == 'save':
        state = sys.argv[3]
        mon.cmd('stop')
        mon.cmd(f'migrate "exec:cat > {state}"')
        wait_for(mon, 'info migrate', lambda o: 'Migration status: completed' in o, 'migration')
        mon.sock.sendall(b'quit\n')
    elif action == 'resume':
        wait_for(mon, 'info status', lambda o: 'inmigrate' not in o and 'VM status' in o,
                 'incoming migration')
        mon.cmd('cont')
        wait_for(mon, 'info status', lambda o: 'running' in o, 'cont')
    else:
        sys.exit(f'qemu_monitor: unknown action {action}')


if __name__ == '__main__':
    main()
