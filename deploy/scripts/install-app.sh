#!/usr/bin/env bash
# Create the virtualenv with Python 3.11, install the pinned requirements
# (hashes checked), install the app, apply the database migrations.
#
#   install-app.sh [--no-migrate]   --no-migrate: the packages only (upgrade.sh's
#                                   rollback: an older release never downgrades the schema)
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

migrate=1
if [[ ${1:-} == --no-migrate ]]; then
  migrate=0
  shift
fi
load_settings
require_root "$@"
require_service_user_reach
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || die "$python not found: run deploy/scripts/install-deps.sh first"

if [[ ! -x $VENV_DIR/bin/python ]]; then
  log "creating $VENV_DIR with $python"
  "$python" -m venv "$VENV_DIR"
fi
log "installing the pinned requirements"
"$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip
"$VENV_DIR/bin/python" -m pip install --quiet --require-hashes -r "$APP_DIR/requirements.txt"
"$VENV_DIR/bin/python" -m pip install --quiet --no-deps -e "$APP_DIR"

if ((!migrate)) || ! runs_site; then
  # Several hosts: the all-in-one host migrates the shared database, first.
  log "app installed (migrations not run$(runs_site || echo ': the all-in-one host runs them'))"
  exit 0
fi
log "applying database migrations"
# As the service user: it owns the SQLite file, and reads .env like the services do.
(cd "$APP_DIR" && runuser -u "$DEPLOY_USER" -- \
  "$VENV_DIR/bin/dotenv" -f "$ENV_FILE" run --no-override -- "$VENV_DIR/bin/pulseboard" db upgrade) ||
  die "migrations failed (output above); nothing was restarted (RUNBOOK.md, Upgrades)"
log "app installed"
