#!/usr/bin/env bash
# Tools the slow-lane image test needs: buildah (builds deploy/Dockerfile without a Docker daemon) and
# debootstrap (makes a Debian bookworm base with Python 3.11, since no registry image can be pulled here).
# Idempotent; needs root (CI runs as root). Used by `make image-tools` and CI before `make test-slow`.
set -euo pipefail
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -eq 0 ]; then
  echo "image tools present: $(buildah --version)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "need root to install ${missing[*]} (apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" uidmap fuse-overlayfs >/dev/null
echo "installed: ${missing[*]}; $(buildah --version)"
