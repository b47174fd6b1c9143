#!/usr/bin/env bash
# Debian packages that the tests and benchmarks need (real data files, real servers).
# Installs only what is missing, so a second run costs nothing. Runs as root on CI and dev machines.
set -euo pipefail

packages=(
    opencv-doc  # video benchmark: examples/data/vtest.avi (pedestrians, 768x576)
    influxdb  # tsdb serve benchmark: InfluxDB 1.6 server, started on loopback
    victoria-metrics  # tsdb serve benchmark: VictoriaMetrics server, started on loopback
)

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
