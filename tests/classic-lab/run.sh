#!/usr/bin/env bash
# Runs a classic lab (three containers of the image build.sh makes) from a
# rendered lab folder, or removes it.
#   run.sh up   NAME LAB_DIR [FAULT]   (the lab folder from `labctl render --subnet ...`)
#   run.sh down NAME
# Every network and container carries the labels io.labctl.classic=1 and
# io.labctl.classic.lab=NAME, which `down` removes by.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="$1" name="$2"
case "$cmd" in
down)
    ids="$(docker ps -aq --filter "label=io.labctl.classic.lab=$name")"
    [ -n "$ids" ] && docker rm -f $ids >/dev/null
    nets="$(docker network ls -q --filter "label=io.labctl.classic.lab=$name")"
    [ -n "$nets" ] && docker network rm $nets >/dev/null
    exit 0
    ;;
up) ;;
*) echo "usage: run.sh up NAME LAB_DIR [FAULT] | run.sh down NAME" >&2; exit 2 ;;
esac
dir="$(cd "$3" && pwd)" fault="${4:-}"
image="$("$here/build.sh")"
json() { python3 -c "import json,sys; j=json.load(open('$dir/lab.json')); print($1)"; }
subnet="$(json 'j["subnet"]')"
labels=(--label io.labctl.classic=1 --label "io.labctl.classic.lab=$name")
docker network create "${labels[@]}" --subnet "$subnet" "$name" >/dev/null
node() { # role container-name host-name ip [domain]
    docker run -d "${labels[@]}" --name "$2" --hostname "$3" --network "$name" --ip "$4" \
        --dns "$(json 'j["dns"]["ip"]')" \
        -e "CLASSIC_ROLE=$1" -e "DOMAIN=${5:-}" -e "CLASSIC_FAULT=$fault" \
        -v "$dir:/lab:ro" -v "$here:/classic:ro" --memory 512m "$image" >/dev/null
}
node dns "$name-dns" "ns.$(json 'j["servers"][0]["domain"]')" "$(json 'j["dns"]["ip"]')"
for i in 0 1; do
    d="$(json "j['servers'][$i]['domain']")"
    node mail "$name-mail.$d" "mail.$d" "$(json "j['servers'][$i]['ip']")" "$d"
done
echo "$name up: dns $(json 'j["dns"]["ip"]'), $(json '", ".join(s["domain"]+" "+s["ip"] for s in j["servers"])')"
