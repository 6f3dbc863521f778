#!/usr/bin/env bash
# Read a part's logs from journald; extra arguments go to journalctl (-f, --since …).
#
#   logs.sh [all|web|web@PORT|consumer|demo|nginx] [journalctl options]
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

part=${1:-all}
shift || true
load_settings

units=()
case $part in
  all) mapfile -t units < <(app_units) ;;
  web) mapfile -t units < <(web_units) ;;
  web@[0-9]*) units=("$APP_SLUG-$part.service") ;;
  consumer | demo) units=("$APP_SLUG-$part.service") ;;
  nginx)
    units=(nginx.service)
    log "access and error logs: /var/log/nginx/$APP_SLUG.access.log, $APP_SLUG.error.log"
    ;;
  *) die "unknown part '$part': all, web, web@PORT, consumer, demo or nginx" ;;
esac

args=()
for unit in "${units[@]}"; do args+=(-u "$unit"); done
if (($# == 0)); then set -- -n 200 --no-pager; fi
exec journalctl "${args[@]}" "$@"
