#!/usr/bin/env bash
# Benchmark of the Docker runtime (issue 7), figures on stdout:
#   up with the image absent / present (until every service answers), down,
#   image size, RSS of each container at idle (Docker stats API),
#   all 15 variants up at once (time, total RSS).
# Targets: up (image present) <= 3 s, image <= 40 MB, each mail container
# <= 25 MB RSS at idle, 15 labs up in <= 60 s within 1 GB RSS in total.
# Bounded: 15 labs at most, every up with --timeout 120; all labs removed at the end.
# The labs are instance `bench` (LABCTL_INSTANCE) on 10.79.N.0/24: a user's
# labs keep running, and `down --all --purge` here removes only the bench's.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/labctl}
export LABCTL_INSTANCE=bench
subnet() { echo "10.79.$1.0/24"; }
if ! docker info >/dev/null 2>&1; then
    echo "SKIPPED: no Docker engine"; exit 0
fi
WORK=$(mktemp -d)
cleanup() { "$BIN" down --all --purge >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
cleanup_labs() { "$BIN" down --all --purge >/dev/null; }

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

# RSS of the containers with our label, from the Docker stats API (one shot).
rss() {
python3 - "$@" <<'PY'
import http.client, json, os, socket, sys
class Unix(http.client.HTTPConnection):
    def __init__(self, path): super().__init__("localhost"); self.path_ = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(self.path_)
host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
sock = host.removeprefix("unix://")
def get(url):
    c = Unix(sock); c.request("GET", url); r = c.getresponse(); return json.loads(r.read())
flt = json.dumps({"label": ["io.labctl.instance=" + os.environ["LABCTL_INSTANCE"]]})
import urllib.parse
cs = get("/containers/json?filters=" + urllib.parse.quote(flt))
total = 0; rows = []
for c in cs:
    s = get(f"/containers/{c['Id']}/stats?stream=false&one-shot=true")
    st = s.get("memory_stats", {}).get("stats", {})
    # cgroup v2: anon; cgroup v1: rss
    r = st.get("anon", st.get("rss", s.get("memory_stats", {}).get("usage", 0)))
    total += r; rows.append((c["Names"][0].lstrip("/"), r))
mode = sys.argv[1] if len(sys.argv) > 1 else "each"
if mode == "each":
    for n, r in sorted(rows): print(f"  rss {n:32s} {r/2**20:6.1f} MiB")
print(f"  rss total ({len(rows)} containers)       {total/2**20:6.1f} MiB")
PY
}

cleanup_labs
"$BIN" render --variant 7 --subnet "$(subnet 7)" --dir "$WORK/lab-07" >/dev/null
docker rmi -f "labctl:$("$BIN" --version | awk '{print $2}')" >/dev/null 2>&1 || true

t0=$(now); "$BIN" up --variant 7 --subnet "$(subnet 7)" --dir "$WORK/lab-07" --timeout 120 >/dev/null 2>&1; t1=$(now)
echo "up, image absent (lab dir rendered):   $(secs "$t0" "$t1") s"
size=$(docker image inspect "labctl:$("$BIN" --version | awk '{print $2}')" --format '{{.Size}}')
echo "image size:                            $(python3 -c "print(f'{$size/1e6:.1f}')") MB (target <= 40)"
t0=$(now); "$BIN" up --variant 7 --subnet "$(subnet 7)" --dir "$WORK/lab-07" >/dev/null 2>&1; t1=$(now)
echo "up again, nothing changed:             $(secs "$t0" "$t1") s"
t0=$(now); "$BIN" down --variant 7 >/dev/null; t1=$(now)
echo "down:                                  $(secs "$t0" "$t1") s"
t0=$(now); "$BIN" up --variant 7 --subnet "$(subnet 7)" --dir "$WORK/lab-07" --timeout 120 >/dev/null 2>&1; t1=$(now)
echo "up, image present:                     $(secs "$t0" "$t1") s (target <= 3)"
sleep 2
echo "idle RSS (Docker stats API, target <= 25 MiB per mail container):"
rss each
cleanup_labs

for v in $(seq 1 15); do "$BIN" render --variant "$v" --subnet "$(subnet "$v")" --dir "$WORK/lab-$(printf %02d "$v")" >/dev/null; done
t0=$(now)
pids=()
for v in $(seq 1 15); do
    "$BIN" up --variant "$v" --subnet "$(subnet "$v")" --dir "$WORK/lab-$(printf %02d "$v")" --timeout 120 >"$WORK/up-$v.log" 2>&1 & pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=$((fail + 1)); done
t1=$(now)
echo "15 labs up at once:                    $(secs "$t0" "$t1") s (target <= 60), $fail failed"
sleep 2
rss total
echo "  (target: <= 1024 MiB in total)"
t0=$(now); "$BIN" down --all --purge >/dev/null; t1=$(now)
echo "down --all --purge of 15 labs:         $(secs "$t0" "$t1") s"
