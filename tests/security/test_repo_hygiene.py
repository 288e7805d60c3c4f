"""What the repository itself must never contain: committed secrets, anonymous access outside the demo."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.helpers import REPO_ROOT

SECRET_PATTERNS = {
    "flywheel API key": re.compile(rb"fwk_[0-9a-f]{12}_[0-9a-f]{64}"),
    "private key": re.compile(rb"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    "NGC / NVIDIA API key": re.compile(rb"nvapi-[A-Za-z0-9_-]{40,}"),
    "AWS access key": re.compile(rb"AKIA[0-9A-Z]{16}"),
}


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc})")
    return [p for p in out.decode().split("\0") if p]


def test_no_secrets_are_committed():
    files = tracked_files()
    assert files
    found = []
    for path in files:
        full = REPO_ROOT / path
        if not full.is_file() or full.stat().st_size > 5_000_000:
            continue
        data = full.read_bytes()
        found += [f"{path}: {what}" for what, pattern in SECRET_PATTERNS.items() if pattern.search(data)]
    assert not found, found
    assert not [p for p in files if p.endswith("api_keys.json")]


def test_anonymous_read_only_in_the_demo_profile():
    """Never by default and never in deploy/: only config/demo.yaml may turn it on."""
    enabled = []
    for path in tracked_files():
        if not path.endswith((".yaml", ".yml")):
            continue
        text = (REPO_ROOT / path).read_text(errors="replace")
        if "anonymous_read" not in text.lower():
            continue
        for doc in yaml.safe_load_all(text):
            if _anonymous_enabled(doc):
                enabled.append(path)
    assert enabled == ["config/demo.yaml"], enabled


def _anonymous_enabled(node: object) -> bool:
    if isinstance(node, dict):
        name, value = str(node.get("name", "")).upper(), str(node.get("value")).lower()
        as_env = name.endswith("ANONYMOUS_READ") and value == "true"
        return (node.get("anonymous_read") is True or as_env
                or any(_anonymous_enabled(v) for v in node.values()))
    if isinstance(node, list):
        return any(_anonymous_enabled(v) for v in node)
    if isinstance(node, str) and "anonymous_read" in node:  # a ConfigMap holding YAML or env text
        return bool(re.search(r"anonymous_read\W+true", node, re.I))
    return False
