#!/usr/bin/env bash
# Debian packages that the tests (`test`) or the benchmarks (`bench`) need: real data files and
# real peer servers. Installs only what is missing, so a second run costs nothing.
# Usage: install-system-packages.sh test|bench
set -euo pipefail

group=${1:-test}
case "$group" in
    test)
        # The tests make their own data and start their own servers; nothing from Debian yet.
        packages=()
        ;;
    bench)
        packages=(
            opencv-doc        # video: examples/data/vtest.avi (pedestrians, 768x576)
            influxdb          # tsdb serve: InfluxDB 1.6 server, started on loopback
            victoria-metrics  # tsdb serve: VictoriaMetrics server, started on loopback
            postgresql        # tsdb serve: PostgreSQL 15 server (initdb/pg_ctl on loopback)
            mricron-data      # med3d: Colin27 T1 brain with the AAL atlas
        )
        ;;
    *)
        echo "error: unknown package group '$group'; use test or bench" >&2
        exit 2
        ;;
esac

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
