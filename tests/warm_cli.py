"""A warm interpreter for the docs' commands: tests/test_readme.py runs every command of the README
and docs/ (about 40), and each would spend a second or more importing torch and pyarrow before
scoring 10,000 rows in milliseconds. This server imports them once, then forks a child per request
that runs the installed entry point (``gaussnll.cli.app:main``) or a Python block with the
client's arguments, working directory, environment and stdin/stdout/stderr (passed as file
descriptors), and answers with the child's exit status.

    python tests/warm_cli.py SOCKET   # serve; the client below connects to SOCKET

The client, ``CLIENT`` written as an executable named ``gaussnll`` (a command) or ``python-block``
(its one argument is a program), finds the socket in ``$GAUSSNLL_WARM_SOCKET``."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import socket
import sys
import traceback

HEADER = 16  # the request's length, in ASCII digits, sent with the three file descriptors

CLIENT = """\
import json, os, socket, sys

request = json.dumps({
    "kind": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "cwd": os.getcwd(),
    "env": dict(os.environ),
}).encode()
with socket.socket(socket.AF_UNIX) as server:
    server.connect(os.environ["GAUSSNLL_WARM_SOCKET"])
    socket.send_fds(server, [b"%16d" % len(request)], [0, 1, 2])
    server.sendall(request)
    sys.exit(int(server.makefile().read()))
"""


def warm() -> None:
    """Import what the commands use: torch, pyarrow, pandas, matplotlib's figures (for --html) and
    every module of gaussnll."""
    for name in ("torch", "numpy", "pandas", "pyarrow.parquet", "pyarrow.csv", "pyarrow.dataset"):
        importlib.import_module(name)
    for name in ("matplotlib.figure", "matplotlib.backends.backend_svg"):
        with contextlib.suppress(ImportError):  # --html says what it lacks itself
            importlib.import_module(name)
    for package in ("gaussnll.core", "gaussnll.cli"):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not module.name.endswith(".__main__"):  # that one runs the app
                importlib.import_module(module.name)


def run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: take the client's streams, place and environment, run, exit."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request["kind"] == "python-block":
        sys.argv, sys.path[0] = ["-c"], ""  # as ``python -c``: the working directory first
        code = 0
        try:
            exec(compile(request["argv"][0], "<block>", "exec"), {"__name__": "__main__"})
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    from gaussnll.cli.app import main

    sys.argv = ["gaussnll", *request["argv"]]
    main()  # leaves with os._exit


def serve(path: str) -> None:
    warm()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        while True:
            connection, _ = listener.accept()
            with connection:
                header, fds, _, _ = socket.recv_fds(connection, HEADER, 3)
                length, payload = int(header), b""
                while len(payload) < length:
                    payload += connection.recv(length - len(payload))
                child = os.fork()
                if child == 0:
                    listener.close()
                    connection.close()
                    run_child(json.loads(payload), fds)
                for fd in fds:
                    os.close(fd)
                _, status = os.waitpid(child, 0)
                connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())


if __name__ == "__main__":
    serve(sys.argv[1])
