#!/usr/bin/env bash
# A Debian base image made here, without a registry of images: debootstrap installs a minimal Debian (bookworm, whose
# python3 is 3.11) from a Debian mirror into a scratch directory, and podman imports it as an image for the caller.
# debootstrap must run as root: it does through sudo for anyone else.
# Usage: deploy/base-image.sh [image] [mirror]
set -euo pipefail
image=${1:-localhost/tabloop-base:bookworm}
mirror=${2:-http://deb.debian.org/debian}
as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo)
root=$(mktemp -d)
trap '"${as_root[@]}" rm -rf "$root"' EXIT
"${as_root[@]}" debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror"
# Nothing the image does not need at run time: the downloaded packages and the package lists.
"${as_root[@]}" rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
"${as_root[@]}" tar -C "$root" --numeric-owner -c . | podman import --change 'CMD ["python3"]' - "$image"
