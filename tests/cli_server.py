"""`cam-cli` without paying Python's and torch's start-up on every call: a fork server for tests
that run many shell commands (tests/test_docs_commands.py).

`start(folder)` starts a server process that imports torch, torchvision and the whole package
once, and writes a `cam-cli` program into `folder`: a small client that hands the server its
argv, working directory, environment and its stdin, stdout and stderr (the file descriptors
themselves, over a Unix socket). The server forks; the child takes those descriptors as its
own 0, 1 and 2 and runs the real entry point, `cam_cli.cli.main.main`, so pipes, redirections
and exit codes are exactly a real process's. A call costs about 50 ms of start-up instead of
about 3 s. The server itself never runs a tensor operation and starts no Python thread
(checked), so a fork copies nothing half-done: torch's own idle native thread is what every
fork-based DataLoader worker copies too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import traceback
from pathlib import Path

HEADER = struct.Struct("!I")
CLIENT = """\
import json, os, socket, struct, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.connect({socket_path!r})
request = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}})
data = request.encode("utf-8", "surrogateescape")
socket.send_fds(connection, [struct.pack("!I", len(data))], [0, 1, 2])
connection.sendall(data)
answer = b""
while len(answer) < 4:
    chunk = connection.recv(4 - len(answer))
    if not chunk:
        sys.exit("cam-cli (test server): the server went away")
    answer += chunk
sys.exit(struct.unpack("!i", answer)[0])
"""


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _child(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the client's `cam-cli` process, then exit with its code."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["cam-cli", *request["argv"]]
        from cam_cli.cli.main import main

        try:
            main()
            code = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
                code = 1
    except BaseException:  # noqa: BLE001 - the test sees the traceback and exit code 1
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            # a reader that has gone: cam-cli says nothing then
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        try:
            connection.sendall(struct.pack("!i", code))
        finally:
            os._exit(code)


def serve(socket_path: str) -> None:
    """The server's loop (run as `python tests/cli_server.py SOCKET`)."""
    import torch  # noqa: F401  (what every call would import: paid once, here)
    import torchvision  # noqa: F401

    import cam_cli.api  # noqa: F401
    import cam_cli.cli.main  # noqa: F401

    if threading.active_count() != 1:
        sys.exit("cli_server: the imports started Python threads; forking would not be safe")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        header, fds, _, _ = socket.recv_fds(connection, HEADER.size, 3)
        request = json.loads(
            _read_exactly(connection, HEADER.unpack(header)[0]).decode("utf-8", "surrogateescape")
        )
        if os.fork() == 0:
            server.close()
            _child(connection, request, fds)
        for fd in fds:
            os.close(fd)
        connection.close()
        while True:  # reap the children that have finished
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


class Server:
    """A running server and the folder holding its `cam-cli` client; `close()` stops it."""

    def __init__(self, folder: Path, repo: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        socket_path = str(folder / "cam-cli.sock")
        env = {**os.environ, "PYTHONPATH": str(repo)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, socket_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline() if self.process.stdout else ""
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"cli_server did not start (exit {self.process.wait()})")
        self.bin = folder
        client = folder / "cam-cli"
        client.write_text(
            f"#!{sys.executable} -S\n" + CLIENT.format(socket_path=socket_path), encoding="utf-8"
        )
        client.chmod(0o755)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    serve(sys.argv[1])
