#!/usr/bin/env bash
# The TLS certificate Nginx serves, at /etc/ssl/<slug>/{fullchain,privkey}.pem.
#
#   tls-certificate.sh --bootstrap   a self-signed certificate if there is none yet
#                                    (Nginx needs one to start; TLS_MODE=selfsigned keeps it)
#   tls-certificate.sh               TLS_MODE=letsencrypt: obtain the certificate with
#                                    certbot (HTTP-01 through the running site), link it
#                                    in place, `nginx -t`, reload; renewals reload Nginx
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

load_settings
require_root "$@"
cert_dir=/etc/ssl/$APP_SLUG
acme_root=/var/www/$APP_SLUG-acme

if [[ ${1:-} == --bootstrap ]]; then
  if [[ ! -e $cert_dir/fullchain.pem ]]; then
    log "self-signed certificate for $APP_DOMAIN in $cert_dir"
    install -d -m 0755 "$cert_dir"
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 825 \
      -keyout "$cert_dir/privkey.pem" -out "$cert_dir/fullchain.pem" \
      -subj "/CN=$APP_DOMAIN" -addext "subjectAltName=DNS:$APP_DOMAIN" 2>/dev/null)
    chmod 0644 "$cert_dir/fullchain.pem"
  fi
  exit 0
fi

if [[ ${TLS_MODE:-selfsigned} != letsencrypt ]]; then
  log "TLS_MODE=${TLS_MODE:-selfsigned}: keeping the certificate in $cert_dir"
  exit 0
fi

account=(--register-unsafely-without-email)
if [[ -n ${LETSENCRYPT_EMAIL:-} ]]; then account=(--email "$LETSENCRYPT_EMAIL"); fi
mkdir -p "$acme_root"
log "requesting a Let's Encrypt certificate for $APP_DOMAIN"
certbot certonly --webroot -w "$acme_root" -d "$APP_DOMAIN" --non-interactive --agree-tos \
  --keep-until-expiring "${account[@]}" --deploy-hook "systemctl reload nginx" ||
  die "certbot failed (DNS for $APP_DOMAIN must point here, port 80 open): Nginx keeps serving the current certificate (self-signed on a first install); run sudo deploy/scripts/tls-certificate.sh again once DNS is right"

live=/etc/letsencrypt/live/$APP_DOMAIN
previous=$(mktemp -d)
trap 'rm -rf "$previous"' EXIT
cp -P "$cert_dir"/*.pem "$previous/"
ln -sfn "$live/fullchain.pem" "$cert_dir/fullchain.pem"
ln -sfn "$live/privkey.pem" "$cert_dir/privkey.pem"
if ! nginx -t; then
  cp -P "$previous"/*.pem "$cert_dir/"
  die "nginx -t refused the Let's Encrypt certificate: the previous one is back in place"
fi
systemctl reload nginx
log "serving the Let's Encrypt certificate; certbot's timer renews it and reloads Nginx"
