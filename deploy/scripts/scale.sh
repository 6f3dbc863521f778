#!/usr/bin/env bash
# Run N web instances: start the new ones, point Nginx's upstream at exactly
# N (after `nginx -t`), then stop the ones no longer in it.
#
#   scale.sh N      (0 on a host whose Nginx serves other hosts' instances only: WEB_UPSTREAMS)
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

wanted=${1:-}
if [[ ! $wanted =~ ^[0-9]+$ ]] || ((wanted > 16)); then
  die "usage: $(basename "$0") N (the number of web instances, 0 to 16)"
fi
load_settings
require_root "$@"
runs_web || die "HOST_ROLE=$HOST_ROLE: this host runs no web instances"
if ((wanted == 0)) && [[ -z ${WEB_UPSTREAMS:-} ]]; then
  die "0 web instances leaves Nginx nothing to serve: name other hosts' instances in WEB_UPSTREAMS first (RUNBOOK.md, Several hosts)"
fi
if ((wanted == 0)) && ! runs_site; then
  die "a web host runs at least one web instance (scale.sh 1 to 16)"
fi
if [[ $MQ == memory && $wanted != 1 ]]; then
  die "the embedded bus (MQ=memory) serves one web instance; move to RabbitMQ first"
fi

mapfile -t old_units < <(web_units)
conf_backup=$(mktemp)
trap 'rm -f "$conf_backup"' EXIT
cp "$DEPLOY_CONF" "$conf_backup"

rerender() {
  python3 "$DEPLOY_DIR/render.py" --conf "$DEPLOY_CONF" --env-file "$ENV_FILE" --out "$BUILD_DIR" >/dev/null
}

sed -i "s/^WEB_INSTANCES=.*/WEB_INSTANCES=$wanted/" "$DEPLOY_CONF"
export WEB_INSTANCES=$wanted
rerender || { cp "$conf_backup" "$DEPLOY_CONF"; die "rendering failed; nothing changed"; }
mapfile -t new_units < <(web_units)

for unit in "${new_units[@]}"; do
  port=${unit#"$APP_SLUG"-web@}
  port=${port%.service}
  if ! systemctl is-active --quiet "$unit"; then
    log "starting $unit"
    systemctl enable --now "$unit"
    wait_healthy "$port" 60 || warn "$unit is not healthy yet: deploy/scripts/logs.sh web@$port"
  fi
done

if ! runs_site; then
  log "this host's Nginx is on the all-in-one host: set its WEB_UPSTREAMS to $(web_ports | sed "s/^/$(web_address):/" | paste -sd,)"
elif ! "$(dirname "$0")/configure-nginx.sh"; then
  cp "$conf_backup" "$DEPLOY_CONF"
  rerender
  die "Nginx kept its previous upstream; the new instances are running but get no traffic"
fi

for unit in "${old_units[@]}"; do
  if [[ " ${new_units[*]} " != *" $unit "* ]]; then
    log "stopping $unit (no longer in the upstream)"
    systemctl disable --now "$unit"
  fi
done
log "$wanted web instance(s): ${new_units[*]}"
