#!/usr/bin/env bash
# Install the system packages the answers call for: Python 3.11 (deadsnakes),
# Nginx, certbot, RabbitMQ, MySQL or SQLite. Ubuntu 22.04 and 24.04.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

load_settings
require_root "$@"
[[ -r /etc/os-release ]] || die "/etc/os-release missing: this script supports Ubuntu 22.04 and 24.04"
# shellcheck source=/dev/null
source /etc/os-release
if [[ ${ID:-} != ubuntu || ! ${VERSION_ID:-} =~ ^(22|24)\.04$ ]]; then
  warn "this is ${PRETTY_NAME:-an unknown system}; the scripts are made for Ubuntu 22.04 and 24.04"
fi

export DEBIAN_FRONTEND=noninteractive
packages=(ca-certificates curl openssl nginx certbot python3 sqlite3)
python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then
  # Ubuntu's own Python is 3.10 (22.04) or 3.12 (24.04); the app is built and tested on 3.11.
  log "adding the deadsnakes PPA for $python"
  apt-get update -qq
  apt-get install -y -qq software-properties-common
  add-apt-repository -y ppa:deadsnakes/ppa
fi
packages+=("$python" "$python-venv")
if [[ $MQ == rabbitmq ]]; then packages+=(rabbitmq-server); fi
if [[ ${DB_ENGINE:-mysql} == mysql ]]; then packages+=(mysql-server); fi

log "installing ${packages[*]}"
apt-get update -qq
apt-get install -y -qq "${packages[@]}"

services=(nginx)
if [[ $MQ == rabbitmq ]]; then services+=(rabbitmq-server); fi
if [[ ${DB_ENGINE:-mysql} == mysql ]]; then services+=(mysql); fi
systemctl enable --now "${services[@]}"
if [[ $MQ == rabbitmq ]]; then
  version=$(rabbitmqctl version 2>/dev/null || echo unknown)
  if [[ $version =~ ^3\.[0-9]\. ]]; then
    warn "RabbitMQ $version is older than 3.10: install Team RabbitMQ's packages (RUNBOOK.md, RabbitMQ)"
  fi
fi
log "system packages ready"
