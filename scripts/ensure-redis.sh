#!/usr/bin/env bash
# The scale tests start their own redis-server on a loopback port; install
# Debian's package when it is missing (needs root and apt-get).
set -euo pipefail
command -v redis-server >/dev/null && exit 0
apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
