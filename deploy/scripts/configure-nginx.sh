#!/usr/bin/env bash
# Install the rendered Nginx site and snippets, test them with `nginx -t`, reload.
#
# The files it replaces are copied aside first; when `nginx -t` refuses the
# new ones they are put back and Nginx is not reloaded, so the running site
# never changes to a configuration Nginx would not load.
#
# Overridable for a test Nginx: NGINX_DIR (/etc/nginx), NGINX_CMD ("nginx"),
# NGINX_RELOAD ("systemctl reload nginx"), NGINX_BACKUP_DIR.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

load_settings
require_root "$@"
runs_site || die "HOST_ROLE=$HOST_ROLE: the site's Nginx runs on the all-in-one host"

NGINX_DIR=${NGINX_DIR:-/etc/nginx}
read -ra nginx_cmd <<<"${NGINX_CMD:-nginx}"
read -ra reload_cmd <<<"${NGINX_RELOAD:-systemctl reload nginx}"
backup_dir=${NGINX_BACKUP_DIR:-/var/backups/$APP_SLUG/nginx}
rendered=$BUILD_DIR/nginx

declare -A targets=(
  ["$rendered/$APP_SLUG.conf"]="$NGINX_DIR/sites-available/$APP_SLUG.conf"
  ["$rendered/$APP_SLUG-upstream.conf"]="$NGINX_DIR/snippets/$APP_SLUG-upstream.conf"
  ["$rendered/$APP_SLUG-security-headers.conf"]="$NGINX_DIR/snippets/$APP_SLUG-security-headers.conf"
  ["$rendered/$APP_SLUG-proxy-headers.conf"]="$NGINX_DIR/snippets/$APP_SLUG-proxy-headers.conf"
)
enabled_link=$NGINX_DIR/sites-enabled/$APP_SLUG.conf
# The site's own catch-all servers close requests for any other host; the
# distribution's welcome site claims the same default_server on port 80.
distro_default=$NGINX_DIR/sites-enabled/default

for source_file in "${!targets[@]}"; do
  [[ -f $source_file ]] || die "$source_file is missing: run ./setup.sh (or deploy/render.py) first"
done
command -v "${nginx_cmd[0]}" >/dev/null || die "${nginx_cmd[0]} not found: run deploy/scripts/install-deps.sh"

# Keep what is there now: the rollback below, and the previous config for later.
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
created=()
for target in "${targets[@]}" "$enabled_link" "$distro_default"; do
  if [[ -e $target || -L $target ]]; then
    mkdir -p "$staging$(dirname "$target")"
    cp -P "$target" "$staging$target"
  else
    created+=("$target")
  fi
done

restore() {
  local target
  for target in "${targets[@]}" "$enabled_link" "$distro_default"; do
    if [[ -e $staging$target || -L $staging$target ]]; then
      cp -P "$staging$target" "$target"
    fi
  done
  for target in "${created[@]}"; do rm -f "$target"; done
}

log "installing the $APP_SLUG site into $NGINX_DIR"
mkdir -p "$NGINX_DIR/sites-available" "$NGINX_DIR/sites-enabled" "$NGINX_DIR/snippets"
for source_file in "${!targets[@]}"; do
  install -m 0644 "$source_file" "${targets[$source_file]}"
done
ln -sfn "$NGINX_DIR/sites-available/$APP_SLUG.conf" "$enabled_link"
if [[ -e $distro_default || -L $distro_default ]]; then
  log "disabling the default site $distro_default: $APP_SLUG answers unknown hosts itself"
  rm -f "$distro_default"
fi
acme_root=$(sed -n 's/^ *root \(.*\);$/\1/p' "$rendered/$APP_SLUG.conf" | head -n 1)
[[ -z $acme_root ]] || mkdir -p "$acme_root"
# Nginx would create a missing log readable by everyone (0644), and the logs hold
# client addresses and request lines: they are made first, for root and adm only
# (as Debian's logrotate makes the rotated ones), and an existing one is closed.
mapfile -t log_files < <(sed -n -E 's/^ *(access|error)_log ([^ ;]+).*;$/\2/p' \
  "$rendered/$APP_SLUG.conf" | grep -vx off | sort -u)
for log_file in "${log_files[@]}"; do
  mkdir -p "$(dirname "$log_file")"
  [[ -e $log_file ]] || install -m 0640 /dev/null "$log_file"
  chmod o-rwx "$log_file"
  if getent group adm >/dev/null; then chgrp adm "$log_file"; fi
done

if ! output=$("${nginx_cmd[@]}" -t 2>&1); then
  restore
  printf '%s\n' "$output" >&2
  if [[ $output == *"duplicate default server"* ]]; then
    warn "another site claims default_server on these ports: drop it there ($APP_SLUG closes unknown hosts itself)"
  fi
  die "nginx -t refused the new configuration: the previous one is back in place, Nginx was not reloaded"
fi
log "nginx -t: configuration is valid; reloading"
if ! "${reload_cmd[@]}"; then
  die "reloading Nginx failed (the configuration passed nginx -t): see journalctl -u nginx"
fi

# The configuration that ran before this one, for a manual rollback (see RUNBOOK.md).
rm -rf "$backup_dir"
mkdir -p "$backup_dir"
cp -a "$staging/." "$backup_dir/"
log "site $APP_SLUG installed; the previous configuration is kept in $backup_dir"
