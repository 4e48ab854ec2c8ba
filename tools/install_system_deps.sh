#!/usr/bin/env bash
# Install the Debian parts the demo and the tests use (Mosquitto, mbpoll, socat, fuse3, tmux, RabbitMQ), when they are
# missing and we may install them. Without root, say what is missing and go on:
# the demo then falls back to the embedded broker.
set -eu
need=()
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)  # verifies the shipped unit file
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)  # the power-cut filesystem (tools/sim/power_cut_fs.py)
command -v tmux >/dev/null 2>&1 || need+=(tmux)  # the terminal `streetedge watch` is tested in
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)  # builds the Debian package (packaging/build_deb.py)
command -v adduser >/dev/null 2>&1 || need+=(adduser)  # the package's system user
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the dashboard's browser tests (headless)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)  # the 3-node broker cluster (tools/cluster)
# Debian splits venv/ensurepip out of python3.
"${PYTHON:-python3}" -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian package starts a system broker on 1883; streetedge starts its own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
    # Likewise RabbitMQ: tools/cluster starts its own nodes on loopback ports.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true; fi
else
    echo "not installed (needs root and apt-get): ${need[*]}" >&2
    echo "the demo will use the embedded broker; tests that need these parts will fail" >&2
fi
