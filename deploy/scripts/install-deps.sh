#!/usr/bin/env bash
# Install the system packages the answers call for: Python 3.11, Nginx, certbot,
# jq, git (upgrade.sh), RabbitMQ, MySQL (MariaDB on Debian) or SQLite. Ubuntu
# 22.04 and 24.04 (Python from the deadsnakes PPA), Debian 12. Only missing
# packages are installed: with all of them there, apt is not run at all.
#
# Overridable for tests: OS_RELEASE (/etc/os-release).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

load_settings
require_root "$@"
require_service_user_reach

# The packages differ between the systems: the one answered (OS_TARGET) must be this one.
OS_RELEASE=${OS_RELEASE:-/etc/os-release}
[[ -r $OS_RELEASE ]] || die "$OS_RELEASE missing: this script supports $SUPPORTED_SYSTEMS"
running=$(
  # shellcheck source=/dev/null
  source "$OS_RELEASE"
  printf '%s-%s' "${ID:-unknown}" "${VERSION_ID:-unknown}"
)
[[ " $SUPPORTED_SYSTEMS " == *" $running "* ]] ||
  die "this system is $running; the scripts support $SUPPORTED_SYSTEMS"
[[ $running == "${OS_TARGET:-}" ]] ||
  die "this system is $running but the answer was OS_TARGET=${OS_TARGET:-}: run ./setup.sh again and answer $running (nothing was installed)"

export DEBIAN_FRONTEND=noninteractive
packages=(ca-certificates curl jq git openssl python3 sqlite3)
python=${PYTHON:-python3.11}
if [[ $running == ubuntu-* ]] && ! command -v "$python" >/dev/null; then
  # Ubuntu's own Python is 3.10 (22.04) or 3.12 (24.04); the app is built and
  # tested on 3.11, Debian 12's own.
  log "adding the deadsnakes PPA for $python"
  apt-get update -qq
  apt-get install -y -qq software-properties-common
  add-apt-repository -y ppa:deadsnakes/ppa
fi
packages+=("$python" "$python-venv")
services=()
# A web or consumer host uses the all-in-one host's Nginx, database and broker.
if runs_site; then
  packages+=(nginx certbot)
  services+=(nginx)
fi
if runs_site && [[ $MQ == rabbitmq ]]; then
  packages+=(rabbitmq-server)
  services+=(rabbitmq-server)
fi
if runs_site && [[ ${DB_ENGINE:-mysql} == mysql ]]; then
  packages+=("$(database_server)-server")
  services+=("$(database_server)")
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -qx 'install ok installed' ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
else
  log "already installed: ${packages[*]}"
fi

((${#services[@]} == 0)) || systemctl enable --now "${services[@]}"
if runs_site && [[ $MQ == rabbitmq ]]; then
  version=$(rabbitmqctl version 2>/dev/null || echo unknown)
  if [[ $version =~ ^3\.[0-9]\. ]]; then
    warn "RabbitMQ $version is older than 3.10: install Team RabbitMQ's packages (RUNBOOK.md, RabbitMQ)"
  fi
fi
log "system packages ready"
