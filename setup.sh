#!/usr/bin/env bash
# Pulseboard setup: ask the setup questions, write .env and the deploy assets,
# then install and start everything on this Ubuntu 22.04/24.04 or Debian 12 server.
#
#   sudo ./setup.sh                       ask each question (Enter takes the default)
#   sudo ./setup.sh --defaults            no questions: defaults, or the previous answers
#   sudo ./setup.sh --answers FILE        KEY=value answers (see RUNBOOK.md)
#   ./setup.sh --render-only [--output DIR] [--env-file FILE] ...
#                                         only write .env and render the assets;
#                                         the system is left alone (no root needed)
#   --skip-verify                         do not run deploy/verify.sh at the end
#   sudo ./setup.sh --upgrade REF         move a running install to another release of
#                                         this checkout (git fetch first), instance by
#                                         instance, rolled back if one fails its check
#                                         (deploy/scripts/upgrade.sh; RUNBOOK.md, Upgrades)
#
# Answers may also be piped on stdin, one line per question; an invalid one
# stops the run, writing nothing (as with --answers). Running it again
# keeps SECRET_KEY and the generated passwords and changes only what the
# answers change. Steps after the questions: deploy/scripts/*.sh, in order.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

render_only=0
skip_verify=0
output=$here/deploy/build
wizard_args=()
while (($#)); do
  case $1 in
    --render-only) render_only=1 ;;
    --skip-verify) skip_verify=1 ;;
    --output)
      output=${2:?--output needs a directory}
      shift
      ;;
    --env-file | --answers | --app-dir | --venv)
      wizard_args+=("$1" "${2:?$1 needs a value}")
      shift
      ;;
    --defaults) wizard_args+=("$1") ;;
    --upgrade)
      # The answers stay as they are: only the code, its packages and schema move.
      exec "$here/deploy/scripts/upgrade.sh" "${2:?--upgrade needs a tag, branch or commit}"
      ;;
    -h | --help)
      sed -n '2,21s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "setup.sh: unknown option $1 (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done

if ((!render_only)) && [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh installs system packages and services: run it as root (sudo ./setup.sh)," >&2
  echo "or with --render-only to write .env and the deploy assets only." >&2
  exit 1
fi
command -v python3 >/dev/null || {
  echo "setup.sh needs python3 (apt-get install python3)" >&2
  exit 1
}

python3 "$here/deploy/wizard.py" --output "$output" "${wizard_args[@]}"

if ((render_only)); then
  echo "rendered into $output; nothing installed (--render-only)"
  exit 0
fi

export DEPLOY_CONF=$output/deploy.conf
scripts=$here/deploy/scripts
"$scripts/install-deps.sh"
"$scripts/provision.sh"
"$scripts/install-app.sh"
"$scripts/configure-systemd.sh"
# shellcheck source=/dev/null
source "$DEPLOY_CONF"
if [[ ${HOST_ROLE:-all} != all ]]; then
  # A web or consumer host: its units, each checked by restart.sh; the site is the other host's.
  "$scripts/restart.sh" all
  echo "done: this host runs the $HOST_ROLE part (RUNBOOK.md, Several hosts)"
  exit 0
fi
"$scripts/tls-certificate.sh" --bootstrap
"$scripts/configure-nginx.sh"
# Let's Encrypt fails until DNS points here, likely on a first install: the site
# starts on the certificate it has (the self-signed one), and says what to do.
certificate_failed=0
"$scripts/tls-certificate.sh" || certificate_failed=1
"$scripts/restart.sh" all

if ((!skip_verify)); then
  verify_args=()
  if [[ $TLS_MODE == selfsigned ]] || ((certificate_failed)); then
    verify_args=(--cacert "/etc/ssl/$APP_SLUG/fullchain.pem")
  fi
  "$here/deploy/verify.sh" "${verify_args[@]}" "https://$APP_DOMAIN" ||
    echo "some checks failed: see RUNBOOK.md, 'When a check fails'" >&2
fi
if ((certificate_failed)); then
  echo "not done: https://$APP_DOMAIN runs, but on its previous certificate (self-signed on a" >&2
  echo "first install), which browsers refuse. Once DNS for $APP_DOMAIN points here and port 80" >&2
  echo "is open, run: sudo deploy/scripts/tls-certificate.sh" >&2
  exit 1
fi
echo "done: https://$APP_DOMAIN (first admin account: RUNBOOK.md, 'First steps')"
