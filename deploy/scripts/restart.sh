#!/usr/bin/env bash
# Restart part of the install, or all of it; reload Nginx after `nginx -t`.
#
#   restart.sh [all|web|consumer|demo|nginx|PORT]
#
# Web instances restart one at a time, each healthy again before the next, so
# Nginx always has an instance to send clients to.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

part=${1:-all}
load_settings
require_root "$@"

restart_web_instance() {
  local port=$1 unit=$APP_SLUG-web@$1.service
  log "restarting $unit"
  systemctl restart "$unit"
  wait_healthy "$port" 60 || die "$unit is not healthy after 60 s: deploy/scripts/logs.sh web@$port"
}

restart_web() {
  local port
  runs_web || return 0
  while read -r port; do restart_web_instance "$port"; done < <(web_ports)
}

restart_unit() {
  log "restarting $1"
  systemctl restart "$1"
  sleep 2
  systemctl is-active --quiet "$1" || die "$1 did not stay up: journalctl -u $1"
}

reload_nginx() {
  nginx -t || die "nginx -t failed: Nginx keeps running its previous configuration"
  systemctl reload nginx
  log "Nginx reloaded"
}

# An instance outside the upstream would run where Nginx never sends anyone.
require_configured_port() {
  web_ports | grep -qxF "$1" ||
    die "no web instance on port $1: the instances are on $(web_ports | paste -sd ' ') (scale.sh N changes how many)"
}

case $part in
  all)
    if runs_consumer; then restart_unit "$APP_SLUG-consumer.service"; fi
    restart_web
    if runs_site && [[ ${DEMO_PRODUCER:-no} == yes ]]; then restart_unit "$APP_SLUG-demo.service"; fi
    # Its units run already; started, the target stops them all and waits for them.
    systemctl start "$APP_SLUG.target"
    if runs_site; then reload_nginx; fi
    ;;
  web) restart_web ;;
  consumer) restart_unit "$APP_SLUG-consumer.service" ;;
  demo) restart_unit "$APP_SLUG-demo.service" ;;
  nginx) reload_nginx ;;
  *[!0-9]*) die "unknown part '$part': all, web, consumer, demo, nginx or a web port" ;;
  *)
    require_configured_port "$part"
    restart_web_instance "$part"
    ;;
esac
