#!/usr/bin/env bash
# Shared by the deploy scripts (sourced, never run): messages, checks, settings.
#
# Settings come from deploy.conf, written by setup.sh: DEPLOY_CONF names it,
# by default deploy/build/deploy.conf in this checkout.

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY_CONF=${DEPLOY_CONF:-$DEPLOY_DIR/build/deploy.conf}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "$(basename "$0") changes the system: run it as root (sudo $0 $*)"
}

# Load deploy.conf and check that the app's .env exists; stop before touching anything otherwise.
load_settings() {
  [[ -r $DEPLOY_CONF ]] || die "$DEPLOY_CONF not found: run ./setup.sh first (or set DEPLOY_CONF)"
  # shellcheck source=/dev/null
  source "$DEPLOY_CONF"
  local name
  for name in APP_SLUG APP_DIR VENV_DIR ENV_FILE DEPLOY_USER BASE_PORT WEB_INSTANCES MQ; do
    [[ -n ${!name:-} ]] || die "$DEPLOY_CONF has no $name: run ./setup.sh again"
  done
  [[ -f $ENV_FILE ]] || die "$ENV_FILE is missing: run ./setup.sh to write it (it holds SECRET_KEY)"
  BUILD_DIR=$(dirname "$DEPLOY_CONF")
  # all: everything on this host; web or consumer: that part only (RUNBOOK.md, Several hosts).
  HOST_ROLE=${HOST_ROLE:-all}
  [[ $HOST_ROLE =~ ^(all|web|consumer)$ ]] || die "$DEPLOY_CONF: HOST_ROLE must be all, web or consumer, not $HOST_ROLE"
  export APP_SLUG APP_DIR VENV_DIR ENV_FILE DEPLOY_USER BASE_PORT WEB_INSTANCES MQ BUILD_DIR HOST_ROLE
}

runs_web() { [[ $HOST_ROLE == all || $HOST_ROLE == web ]]; }
runs_consumer() { [[ ($HOST_ROLE == all || $HOST_ROLE == consumer) && $MQ == rabbitmq ]]; }
# Nginx, TLS, the database and broker servers, backups: on the all-in-one host only.
runs_site() { [[ $HOST_ROLE == all ]]; }

# The ports of the web instances: BASE_PORT, BASE_PORT+1, ...
web_ports() {
  local i
  for ((i = 0; i < WEB_INSTANCES; i++)); do
    printf '%s\n' $((BASE_PORT + i))
  done
}

web_units() {
  local port
  runs_web || return 0
  while read -r port; do
    printf '%s-web@%s.service\n' "$APP_SLUG" "$port"
  done < <(web_ports)
}

# Every unit this install runs, web instances first.
app_units() {
  web_units
  if runs_consumer; then printf '%s-consumer.service\n' "$APP_SLUG"; fi
  if runs_site && [[ ${DEMO_PRODUCER:-no} == yes ]]; then printf '%s-demo.service\n' "$APP_SLUG"; fi
}

# A value from the app's .env (quotes removed); empty when unset.
env_value() {
  sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1 | sed -e "s/^'\(.*\)'\$/\1/" -e 's/^"\(.*\)"$/\1/'
}

# The address the web instances listen on: loopback, or WEB_BIND_ADDRESS on a web-only host.
web_address() {
  local address
  address=$(env_value WEB_BIND_ADDRESS)
  address=${address:-127.0.0.1}
  if [[ $address == *:* ]]; then printf '[%s]\n' "$address"; else printf '%s\n' "$address"; fi
}

# Wait until http://ADDRESS:PORT/healthz answers, at most SECONDS seconds.
# A refused connection is expected while the instance starts: only the last
# failure is shown, when it never came up.
wait_healthy() {
  local port=$1 deadline=$((SECONDS + ${2:-30})) failure address
  address=$(web_address)
  until failure=$(curl -fsS -o /dev/null --max-time 2 "http://$address:$port/healthz" 2>&1); do
    if ((SECONDS >= deadline)); then
      printf '%s\n' "$failure" >&2
      return 1
    fi
    sleep 1
  done
}

# The systems the install scripts know, as OS_TARGET names them.
# shellcheck disable=SC2034 # read by the scripts that source this file
SUPPORTED_SYSTEMS="ubuntu-22.04 ubuntu-24.04 debian-12"

# The MySQL-compatible server of OS_TARGET: its package is NAME-server, its unit NAME.
database_server() {
  if [[ ${OS_TARGET:-} == debian-* ]]; then echo mariadb; else echo mysql; fi
}

# The services run as DEPLOY_USER and read the checkout, the virtualenv and .env:
# every folder above them must let that user through (a home folder is often 0750).
require_service_user_reach() {
  local path part parts folder
  for path in "$APP_DIR" "$VENV_DIR" "$(dirname "$ENV_FILE")"; do
    # From / down, so that the folder named is the one that shuts the user out.
    folder=""
    IFS=/ read -ra parts <<<"${path#/}"
    for part in "${parts[@]}"; do
      folder+=/$part
      if [[ -d $folder ]] && ! service_user_may_enter "$folder"; then
        die "the service user $DEPLOY_USER may not enter $folder (mode $(stat -c %a "$folder")), so it cannot reach $path: move the checkout (for example to /opt/$APP_SLUG) or let others through with chmod o+x $folder"
      fi
    done
  done
}

service_user_may_enter() {
  if id -u "$DEPLOY_USER" >/dev/null 2>&1; then
    runuser -u "$DEPLOY_USER" -- test -x "$1"
  else
    # Not created yet: a new system user is in nobody's group, so "others" decides.
    [[ $(stat -c %A "$1") == *[xt] ]]
  fi
}
