#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Drive a QEMU human monitor (HMP) on a unix socket for the test runner.

  qemu_monitor.py SOCK save STATE   stop the VM, migrate it to the file STATE,
                                    wait for the migration to complete, quit
  qemu_monitor.py SOCK resume [STATE]
                                    load STATE into a QEMU started with
                                    "-incoming defer" (or, without STATE, wait
                                    for its -incoming migration), wait for it
                                    to finish, then let the VM run

Save/restore leaves shared memory (the pmem backing files) out of the saved
state (capability x-ignore-shared, set on both sides): the new process maps the
same files, and QEMU 10 under TCG was seen to abort on an assertion
(tlb_reset_dirty_range_all) while saving it.
  qemu_monitor.py QMP cpr MAIN CPR  live update (cpr-transfer) on the QMP
                                    socket QMP: once the new QEMU listens on
                                    the unix socket CPR, migrate with mode
                                    cpr-transfer over MAIN and CPR, wait for
                                    completion, quit the old QEMU

  qemu_monitor.py SOCK hmp LINE...  run one monitor command (e.g. "mce ..."),
                                    fail if QEMU answers with an error

Each step is bounded in time; exits non-zero with a message if one fails.
"""
import json
import os
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


class Qmp:
    """A QMP client: one command at a time, events skipped."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(60)
        self.buf = b''
        self._message()
        self.cmd('qmp_capabilities')

    def _message(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                sys.exit('qemu_monitor: QMP connection closed')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            reply = self._message()
            if 'return' in reply or 'error' in reply:
                print(f'qmp: {name} -> {reply}', flush=True)
                if 'error' in reply:
                    sys.exit(f'qemu_monitor: {name} failed: {reply["error"]}')
                return reply['return']


def cpr_transfer(path, main_sock, cpr_sock, limit=120.0):
    """Live update: hand the VM to the new QEMU listening on cpr_sock and main_sock."""
    deadline = time.monotonic() + limit
    while not os.path.exists(cpr_sock):
        if time.monotonic() > deadline:
            sys.exit('qemu_monitor: the new QEMU does not listen for cpr')
        time.sleep(0.1)
    qmp = Qmp(path)
    qmp.cmd('migrate-set-parameters', mode='cpr-transfer')
    t0 = time.monotonic()
    qmp.cmd('migrate', channels=[
        {'channel-type': 'main',
         'addr': {'transport': 'socket', 'type': 'unix', 'path': main_sock}},
        {'channel-type': 'cpr',
         'addr': {'transport': 'socket', 'type': 'unix', 'path': cpr_sock}}])
    while True:
        status = qmp.cmd('query-migrate').get('status')
        if status == 'completed':
            break
        if status in ('failed', 'cancelled') or time.monotonic() > deadline:
            sys.exit(f'qemu_monitor: cpr-transfer ended {status}')
        time.sleep(0.05)
    print(f'qmp: cpr-transfer completed in {time.monotonic() - t0:.2f} s', flush=True)
    try:
        qmp.cmd('quit')
    except (OSError, SystemExit):
        pass


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
    if action == 'cpr':
        cpr_transfer(path, sys.argv[3], sys.argv[4])
        return
    mon = Monitor(path)
    if action == 'save':
        state = sys.argv[3]
        mon.cmd('stop')
        mon.cmd('migrate_set_capability x-ignore-shared on')
        mon.cmd(f'migrate "exec:cat > {state}"')
        wait_for(mon, 'info migrate', lambda o: 'Migration status: completed' in o, 'migration')
        mon.sock.sendall(b'quit\n')
    elif action == 'resume':
        if len(sys.argv) > 3:
            mon.cmd('migrate_set_capability x-ignore-shared on')
            mon.cmd(f'migrate_incoming "exec:cat {sys.argv[3]}"')
        out = wait_for(mon, 'info status',
                       lambda o: 'inmigrate' not in o and 'VM status' in o,
                       'incoming migration')
        if 'running' not in out:
            mon.cmd('cont')
        wait_for(mon, 'info status', lambda o: 'running' in o, 'cont')
    elif action == 'hmp':
        out = mon.cmd(' '.join(sys.argv[3:]))
        if 'rror' in out or 'nknown' in out:
            sys.exit(f'qemu_monitor: {" ".join(sys.argv[3:])}: {out.strip()}')
    else:
        sys.exit(f'qemu_monitor: unknown action {action}')


if __name__ == '__main__':
    main()
