"""Lint deploy/Dockerfile against the image rules: multi-stage, base image by build argument, non-root
under any UID in group 0, HEALTHCHECK, no model downloads, and a build context that carries what the
COPY steps need (and nothing of the venv, tests or model files)."""

from __future__ import annotations

import fnmatch
import os
import re

import pytest

from tests.deploy.rendered import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
FINAL_TARGETS = ("slim", "local")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            match = re.match(r"(\S+)\s+AS\s+(\S+)", rest, re.I)
            assert match, f"every stage is named: FROM {rest}"
            current = match.group(2)
            out[current] = [(word, rest)]
        elif current is not None:
            out[current].append((word, rest))
    return out


def test_multi_stage_with_base_image_as_build_arg() -> None:
    ins = instructions()
    first_from = next(i for i, (w, _) in enumerate(ins) if w == "FROM")
    global_args = {rest.split("=")[0] for w, rest in ins[:first_from] if w == "ARG"}
    assert "BASE_IMAGE" in global_args
    default = next(rest for w, rest in ins[:first_from] if w == "ARG" and rest.startswith("BASE_IMAGE="))
    assert "python:3.11" in default, "default base: the official Python 3.11 slim image"
    all_stages = stages()
    assert set(FINAL_TARGETS) <= set(all_stages) and len(all_stages) >= 4
    for name, body in all_stages.items():
        base = body[0][1].split()[0]
        assert base.startswith("${") or base in all_stages, f"stage {name}: base {base} must be an arg or a stage"


def _stage_chain(name: str) -> list[str]:
    all_stages = stages()
    chain = [name]
    while (base := all_stages[chain[-1]][0][1].split()[0]) in all_stages:
        chain.append(base)
    return chain


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_images_run_non_root_in_group_zero_with_healthcheck(target: str) -> None:
    body = stages()[target]
    users = [rest for w, rest in body if w == "USER"]
    assert users, f"{target}: no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root UID (Kubernetes runAsNonRoot checks it)"
    assert gid == "0", "primary group 0: OpenShift's arbitrary UIDs are in group 0"
    assert any(w == "HEALTHCHECK" and "CMD" in rest for w, rest in body), target
    assert any(w == "ENTRYPOINT" for w in (w for w, _ in body))
    # /data is mounted by the deployment; an image VOLUME shadows bind mounts (buildah run) and hides data.
    assert not any(w == "VOLUME" for w, _ in body)
    # The directories the process writes are group-0 owned and group-writable, in this stage or its base.
    steps = " ".join(rest for stage in _stage_chain(target) for w, rest in stages()[stage] if w == "RUN")
    assert re.search(r"chown 10001:0 /data", steps) and re.search(r"chmod 0?775 /data", steps)
    assert "chgrp -R 0 /app" in steps and "g=u" in steps


def test_slim_target_has_no_local_model_stack() -> None:
    chain = _stage_chain("slim")
    sources = {rest.split("--from=")[1].split()[0] for w, rest in stages()["slim"]
               if w == "COPY" and "--from=" in rest}
    text = " ".join(rest for s in [*chain, *sources] for w, rest in stages()[s] if w == "RUN")
    assert "[nemo,prod]" in text
    assert "local" not in re.findall(r"\.\[([^\]]*)\]", text)[0].split(",")
    assert not re.search(r"\b(torch|llama)", text)


def test_no_model_downloads() -> None:
    text = DOCKERFILE.read_text()
    for pattern in (r"huggingface-cli", r"hf_hub_download", r"snapshot_download", r"from_pretrained",
                    r"(curl|wget)\s[^\n]*\.(gguf|safetensors|bin)\b", r"ollama pull", r"\bhf download"):
        assert not re.search(pattern, text), pattern


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, "**/" + pat.removeprefix("**/"))
               or fnmatch.fnmatch(os.path.basename(p), pat.removeprefix("**/")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    assert DOCKERIGNORE.exists()
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for must in (".git", ".venv", "tests", ".flywheel", "*.gguf"):
        assert _ignored(must if "*" not in must else "x/model.gguf", patterns), must
    # Every COPY source from the context exists and is not excluded by .dockerignore.
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"


def test_entrypoint_knows_every_role_the_manifests_use() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh")
    for role in ("api)", "worker)", "temporal-dev)", "flywheel)", "healthcheck)"):
        assert role in text
    for manifest in (REPO / "deploy" / "kubernetes").rglob("*.yaml"):
        for role in re.findall(r"args: \[([a-z-]+)", manifest.read_text()):
            assert f"{role})" in text, f"{manifest}: role {role}"
