#!/usr/bin/env bash
# Builds the classic lab's image from Debian's packages only and prints its
# reference, `maillab-classic:<hash>`. No registry is reachable here: the
# root file system is made with mmdebstrap from deb.debian.org and turned
# into an image with `docker import`. The image is cached by the hash of this
# script and of `packages`: a second run with the same files prints the same
# reference at once. The configuration (start.sh and conf/) is not in the
# image: the containers mount this folder, so editing it needs no rebuild.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash="$(cat "$here/build.sh" "$here/packages" | sha256sum | cut -c1-12)"
image="maillab-classic:$hash"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
    echo "classic lab: installing mmdebstrap" >&2
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2
    fi
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "classic lab: building $image (Debian bookworm, $(wc -l <"$here/packages") packages)" >&2
mmdebstrap --variant=apt --include="$(paste -sd, "$here/packages")" \
    --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname' \
    bookworm "$tmp/rootfs.tar" http://deb.debian.org/debian >&2
docker import \
    --change 'LABEL io.labctl.classic=1' \
    --change 'CMD ["/bin/bash", "/classic/start.sh"]' \
    "$tmp/rootfs.tar" "$image" >&2
echo "classic lab: $image built in $((SECONDS - start)) s, $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)" >&2
echo "$image"
