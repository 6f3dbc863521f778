#!/usr/bin/env bash
# Upgrade the install to another release of the checkout, one web instance at a
# time, so that Nginx always has a healthy instance and no page sees a 502.
#
#   upgrade.sh REF         a tag, branch or commit already in the checkout (git fetch first)
#   upgrade.sh --rollback  back to the release that ran before the last upgrade
#
# 1. The checkout moves to REF (refused while tracked files have local changes);
#    the pinned requirements and the app go into the virtualenv and the
#    migrations run. If any of that fails, the checkout and the virtualenv go
#    back and nothing has been restarted.
# 2. Units and the Nginx site are rendered again with the same answers and
#    installed (checked by systemd-analyze and nginx -t).
# 3. The consumer restarts; it acknowledges nothing it has not stored.
# 4. Each web instance in turn leaves Nginx's upstream, restarts, must answer
#    /readyz within UPGRADE_HEALTH_TIMEOUT seconds (default 60), and comes back.
#    Its clients reconnect through Nginx to the others and replay what they missed.
# When an instance fails that check, every restarted part goes back to the
# previous release the same way and the script exits 1. Migrations are never
# undone: a release's migrations must leave a schema the release before it runs on.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

target_ref=${1:-}
[[ -n $target_ref ]] || die "usage: $(basename "$0") REF | --rollback"
load_settings
require_root "$@"
health_timeout=${UPGRADE_HEALTH_TIMEOUT:-60}
scripts=$DEPLOY_DIR/scripts
release_file=$BUILD_DIR/release
previous_file=$BUILD_DIR/release.previous

git_() { git -C "$APP_DIR" -c safe.directory="$APP_DIR" "$@"; }

[[ -d $APP_DIR/.git ]] || die "$APP_DIR is not a git checkout: upgrades move it from one commit to another"
if [[ $target_ref == --rollback ]]; then
  [[ -s $previous_file ]] || die "no earlier release recorded in $previous_file: nothing to roll back to"
  target_ref=$(<"$previous_file")
fi
git_ diff --quiet HEAD -- ||
  die "$APP_DIR has local changes to tracked files (git status): commit or drop them first; nothing changed"
current=$(git_ rev-parse HEAD)
target=$(git_ rev-parse --verify --quiet "$target_ref^{commit}") ||
  die "no commit '$target_ref' in $APP_DIR: git fetch first; nothing changed"
if [[ $target == "$current" ]]; then
  log "already at $target_ref ($(git_ log -1 --format='%h %s')); nothing to do"
  exit 0
fi

# The site with PORT out of the upstream (none: every instance in it).
# configure-nginx.sh checks it with nginx -t before reloading.
route_site() {
  # A web-only host has no Nginx of its own: the all-in-one host's passes a
  # refused connection on to another instance (proxy_next_upstream).
  runs_site || return 0
  python3 "$DEPLOY_DIR/render.py" --conf "$DEPLOY_CONF" --env-file "$ENV_FILE" --out "$BUILD_DIR" \
    --set "WEB_DRAINED=${1:-}" >/dev/null || return 1
  "$scripts/configure-nginx.sh" >/dev/null || return 1
  # Nginx's old workers finish what they hold; new requests already go by the new upstream.
  sleep 1
}

wait_ready() {  # PORT SECONDS: /readyz answers 200 (database and broker reachable)
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 2 "http://$(web_address):$1/readyz" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# Move the checkout and the virtualenv to a commit (migrating only when going
# forward), then install the units as that release renders them.
install_release() {  # COMMIT [--no-migrate]
  git_ checkout --quiet --detach "$1" &&
    "$scripts/install-app.sh" "${@:2}" &&
    python3 "$DEPLOY_DIR/render.py" --conf "$DEPLOY_CONF" --env-file "$ENV_FILE" \
      --out "$BUILD_DIR" >/dev/null &&
    "$scripts/configure-systemd.sh" >/dev/null
}

restart_side_units() {
  local unit
  for unit in $(app_units | grep -v -- '-web@'); do
    log "restarting $unit"
    systemctl restart "$unit"
  done
}

# Restart web instances one at a time, each out of the upstream until ready.
# The ones done go into `moved`; the first that is not ready is `stuck` (return 1).
moved=()
stuck=""
roll_web() {  # PORT...
  local port
  for port in "$@"; do
    log "web@$port: out of the upstream, restarting"
    route_site "$port" || die "Nginx refused the site with web@$port drained: nothing restarted on it"
    systemctl restart "$APP_SLUG-web@$port.service" || true
    if ! wait_ready "$port" "$health_timeout"; then
      stuck=$port
      return 1
    fi
    log "web@$port: ready, back in the upstream"
    moved+=("$port")
  done
  route_site "" || die "Nginx refused the site with every instance in it: see the output above"
}

short() { git_ log -1 --format='%h (%s)' "$1"; }

log "upgrading $APP_DIR from $(short "$current") to $(short "$target")"
if ! install_release "$target"; then
  warn "installing $target_ref failed: back to $(short "$current"); nothing was restarted"
  install_release "$current" --no-migrate || die "the previous release did not install again: see the output above"
  exit 1
fi
restart_side_units
mapfile -t ports < <(web_ports)
if roll_web "${ports[@]}"; then
  printf '%s\n' "$current" >"$previous_file"
  printf '%s\n' "$target" >"$release_file"
  log "upgraded to $(short HEAD); deploy/scripts/upgrade.sh --rollback goes back"
  exit 0
fi

failed=$stuck
warn "web@$failed did not answer /readyz within $health_timeout s on $(short HEAD): rolling back"
journalctl -u "$APP_SLUG-web@$failed.service" -n 20 --no-pager -o cat >&2 || true
install_release "$current" --no-migrate || die "the previous release did not install again: see the output above"
restart_side_units
# The failed instance first (still out of the upstream), then the ones already moved.
again=("$failed" "${moved[@]}")
moved=()
stuck=""
if roll_web "${again[@]}"; then
  die "upgrade to $target_ref failed on web@$failed; rolled back to $(short HEAD), every instance ready"
fi
die "upgrade to $target_ref failed on web@$failed, and web@$stuck is not ready on $(short HEAD) either: it stays out of the upstream (deploy/scripts/logs.sh web@$stuck)"
