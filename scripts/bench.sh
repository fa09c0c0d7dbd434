#!/usr/bin/env bash
# `make bench`: every benchmark of the project, figures on stdout.
# Criterion benches (hot paths) run with cargo bench; end-to-end benches are
# scripts named scripts/bench-*.{sh,py}, each bounded in count and time.
# bench-smtp.py prints maillab's and Postfix's figures side by side (as root
# it installs Debian's postfix, sasl2-bin and opendkim when they are missing;
# docs/smtp-benchmark.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G "crates/*/benches/*.rs" >/dev/null || compgen -G "benches/*.rs" >/dev/null; then
    cargo bench --workspace
fi
for script in scripts/bench-*; do
    [ -e "$script" ] || continue
    echo "== $script"
    case "$script" in
        *.py) python3 "$script" ;;
        *.sh) bash "$script" ;;
    esac
done
