#!/usr/bin/env bash
# What the test suite needs on this machine, set up when it is missing: Debian's
# chromium, nginx, shellcheck, openssl, systemd-analyze, promtool, debootstrap
# and systemd-nspawn, RabbitMQ on 127.0.0.1:5672 (guest/guest) and MariaDB/MySQL
# on 127.0.0.1:3306 (root, no password), installed when absent and started when
# down.  `make test` runs it first; it changes nothing when all is there.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    log "needs root: $*"
    log "run it yourself (or make test as root), then make test again"
    exit 1
  fi
}

wait_for_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    if ((SECONDS > deadline)); then
      log "nothing listens on $1:$2 after $3 s"
      return 1
    fi
    sleep 1
  done
}

ensure_system_packages() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v promtool >/dev/null || missing+=(prometheus)
  # The install test boots a Debian 12 root of its own (tests/container.py).
  command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v rabbitmq-server >/dev/null || [[ -x /usr/sbin/rabbitmq-server ]] ||
    missing+=(rabbitmq-server)
  [[ -x /usr/sbin/mariadbd || -x /usr/sbin/mysqld ]] || missing+=(mariadb-server)
  command -v mysqladmin >/dev/null || missing+=(mariadb-client)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian's prometheus package starts a server on :9090 where systemd runs; the
  # tests need only its promtool, so the server it brought goes again.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now prometheus.service
  fi
}

ensure_rabbitmq() {
  if ! as_root rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
  fi
  wait_for_port 127.0.0.1 5672 120
  as_root rabbitmq-diagnostics -q check_running
}

ensure_mariadb() {
  if ! mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
    log "starting MariaDB"
    local server=/usr/sbin/mariadbd
    [[ -x $server ]] || server=/usr/sbin/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec "$server"
  fi
  wait_for_port 127.0.0.1 3306 60
  for _ in $(seq 30); do
    if mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
      mysql -uroot -h127.0.0.1 -e "SELECT 1" >/dev/null 2>&1 && return 0
      log "MariaDB answers but refuses root over TCP without a password;"
      log "the tests sign in as root@127.0.0.1 with an empty password"
      return 1
    fi
    sleep 1
  done
  log "MariaDB does not answer"
  return 1
}

ensure_system_packages
ensure_rabbitmq
ensure_mariadb
