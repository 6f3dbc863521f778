#!/usr/bin/env bash
# Install the rendered units, check them, reload systemd, enable this install's units.
#
# Overridable for tests: SYSTEMD_DIR (/etc/systemd/system).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

load_settings
require_root "$@"

SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
rendered=$BUILD_DIR/systemd
[[ -d $rendered ]] || die "$rendered is missing: run ./setup.sh first"
[[ -x $VENV_DIR/bin/gunicorn ]] || die "$VENV_DIR/bin/gunicorn not found: run deploy/scripts/install-app.sh first"

# systemd-analyze checks a template through one of its instances.
check_dir=$(mktemp -d)
trap 'rm -rf "$check_dir"' EXIT
cp "$rendered"/* "$check_dir/"
if runs_web; then
  mv "$check_dir/$APP_SLUG-web@.service" "$check_dir/$APP_SLUG-web@$BASE_PORT.service"
fi
checked=("$check_dir"/*.service "$check_dir"/*.target)
if runs_site; then checked+=("$check_dir"/*.timer); fi
if ! systemd-analyze verify "${checked[@]}"; then
  die "systemd-analyze verify refused the rendered units; nothing was installed"
fi

log "installing units into $SYSTEMD_DIR"
install -m 0644 "$rendered"/* "$SYSTEMD_DIR/"
systemctl daemon-reload
systemctl enable "$APP_SLUG.target"
mapfile -t units < <(app_units)
timers=()
if runs_site; then timers=("$APP_SLUG-session-cleanup.timer" "$APP_SLUG-backup.timer"); fi
systemctl enable "${units[@]}" "${timers[@]}"
# Instances from an earlier, larger answer: out of the upstream, so stopped too.
while read -r unit; do
  if [[ " ${units[*]} " != *" $unit "* ]]; then
    log "disabling $unit (no longer one of the $WEB_INSTANCES web instances)"
    systemctl disable --now "$unit"
  fi
done < <(systemctl list-units --all --plain --no-legend "$APP_SLUG-web@*.service" | awk '{print $1}')
if runs_site && [[ ${DEMO_PRODUCER:-no} != yes ]]; then
  systemctl disable --now "$APP_SLUG-demo.service" 2>/dev/null || true
fi
log "enabled: ${units[*]} (start them with deploy/scripts/restart.sh)"
