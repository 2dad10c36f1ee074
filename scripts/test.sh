#!/usr/bin/env bash
# Install what the tests need and run all of them (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
fi
# The console's browser test drives Debian's chromium through its own
# chromedriver, so nothing is downloaded when the tests run.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
fi
python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -p no:cacheprovider "$@"
