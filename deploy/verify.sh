#!/usr/bin/env bash
# Run the verification checklist against a live install, through Nginx.
#
#   deploy/verify.sh [--insecure | --cacert FILE] [--http-url URL] https://app.example.com
#
# Prints "PASS name" or "FAIL name: reason" per check; exits 1 when any fails.
# --http-url is where plain HTTP answers (default: the same host on port 80).
set -uo pipefail

usage() {
  sed -n '2,7s/^# \{0,1\}//p' "$0"
  exit 2
}

curl_tls=()
http_url=
url=
while (($#)); do
  case $1 in
    --insecure | -k) curl_tls=(--insecure) ;;
    --cacert)
      [[ -r ${2:-} ]] || { echo "--cacert needs a readable file" >&2; exit 2; }
      curl_tls=(--cacert "$2")
      shift
      ;;
    --http-url) http_url=${2:-}; shift ;;
    -h | --help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) url=${1%/} ;;
  esac
  shift
done
[[ $url == https://* ]] || { echo "give the site's https:// URL" >&2; usage; }
if [[ -z $http_url ]]; then
  host=${url#https://}
  http_url=http://${host%%:*}
fi
http_url=${http_url%/}

failures=0
pass() { printf 'PASS %s\n' "$1"; }
fail() {
  printf 'FAIL %s: %s\n' "$1" "$2"
  failures=$((failures + 1))
}

fetch() {  # fetch URL [curl options]: headers and body to files, status code printed
  local target=$1
  shift
  curl -sS "${curl_tls[@]}" --max-time 10 -D "$work/headers" -o "$work/body" \
    -w '%{http_code}' "$@" "$target" 2>"$work/error" || true
}

header() {  # the value of a response header from the last fetch (case-insensitive)
  tr -d '\r' <"$work/headers" | sed -n "s/^$1: *//Ip" | tail -n 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Probes ---------------------------------------------------------------------
for probe in healthz readyz; do
  status=$(fetch "$url/$probe")
  if [[ $status == 200 ]]; then pass "$probe"; else
    fail "$probe" "HTTP ${status:-none} $(head -c 300 "$work/body" "$work/error" 2>/dev/null | tr '\n' ' ')"
  fi
done

# --- HTTP to HTTPS --------------------------------------------------------------
status=$(fetch "$http_url/healthz")
location=$(header location)
if [[ $status =~ ^30[18]$ && $location == https://* ]]; then pass "http_redirects_to_https"; else
  fail "http_redirects_to_https" "$http_url/healthz answered ${status:-nothing} (Location: ${location:-none})"
fi

# --- Other host names ------------------------------------------------------------
# A request naming another host must get no answer at all (Nginx's 444), over
# HTTP and HTTPS alike: only the site's own name reaches the app.
answered=()
for target in "$url" "$http_url"; do
  status=$(fetch "$target/healthz" -H 'Host: unknown-host.invalid')
  [[ $status == 000 ]] || answered+=("${target%%://*} HTTP $status")
done
if ((${#answered[@]})); then fail "unknown_host_closed" "answered: ${answered[*]}"; else
  pass "unknown_host_closed"
fi

# --- Security headers on a page -------------------------------------------------
status=$(fetch "$url/auth/login")
[[ $status == 200 ]] || fail "login_page" "HTTP ${status:-none} from $url/auth/login"
check_header() {  # name expected-pattern
  local value
  value=$(header "$1")
  if [[ -z $value ]]; then fail "header $1" "missing"
  elif [[ ! $value =~ $2 ]]; then fail "header $1" "unexpected value '$value'"
  else pass "header $1"; fi
}
check_header Strict-Transport-Security 'max-age=[1-9][0-9]{5,}'
check_header X-Frame-Options '^(DENY|SAMEORIGIN)$'
check_header X-Content-Type-Options '^nosniff$'
check_header Referrer-Policy '^(no-referrer|same-origin|strict-origin|strict-origin-when-cross-origin)$'
check_header Content-Security-Policy "script-src 'self'"
csp=$(header Content-Security-Policy)
if [[ $csp == *unsafe-inline* && $csp =~ script-src[^\;]*unsafe-inline ]]; then
  fail "csp_no_inline_script" "script-src allows 'unsafe-inline'"
elif [[ -n $csp ]]; then pass "csp_no_inline_script"; fi

# --- Session cookie -------------------------------------------------------------
cookie=$(tr -d '\r' <"$work/headers" | sed -n 's/^set-cookie: *//Ip' | grep -i session | head -n 1)
if [[ -z $cookie ]]; then fail "session_cookie" "no session cookie set by /auth/login"; else
  missing=()
  for flag in Secure HttpOnly SameSite; do
    [[ ${cookie,,} == *"; ${flag,,}"* ]] || missing+=("$flag")
  done
  if ((${#missing[@]})); then fail "session_cookie" "missing ${missing[*]}: ${cookie%%=*}"; else
    pass "session_cookie"
  fi
fi

# --- /metrics is not public -----------------------------------------------------
status=$(fetch "$url/metrics")
if [[ $status == 200 ]]; then fail "metrics_not_public" "/metrics answered 200 through Nginx"; else
  pass "metrics_not_public"
fi

# --- Socket.IO ------------------------------------------------------------------
polling="$url/socket.io/?EIO=4&transport=polling"
status=$(fetch "$polling")
sid=$(sed -n 's/.*"sid":"\([^"]*\)".*/\1/p' "$work/body")
if [[ $status == 200 && -n $sid ]]; then pass "socketio_polling_handshake"; else
  fail "socketio_polling_handshake" "HTTP ${status:-none}: $(head -c 200 "$work/body")"
fi

# An anonymous client asks for /stream; the server must answer connect_error (44).
if [[ -n $sid ]]; then
  fetch "$polling&sid=$sid" -X POST -H 'Content-Type: text/plain;charset=UTF-8' \
    --data-binary '40/stream,' >/dev/null
  fetch "$polling&sid=$sid" >/dev/null
  if grep -q '44/stream' "$work/body"; then pass "stream_refuses_anonymous"; else
    fail "stream_refuses_anonymous" "expected 44/stream (connect_error), got: $(head -c 200 "$work/body")"
  fi
else
  fail "stream_refuses_anonymous" "no polling session to ask with"
fi

# WebSocket upgrade through Nginx: 101 Switching Protocols. curl keeps the
# upgraded connection open, so it is cut after two seconds; the status is kept.
status=$(curl -sS "${curl_tls[@]}" --http1.1 --max-time 2 -o /dev/null -w '%{http_code}' \
  -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
  -H 'Sec-WebSocket-Key: cHVsc2Vib2FyZC12ZXJpZnk=' \
  "$url/socket.io/?EIO=4&transport=websocket" 2>/dev/null)
if [[ $status == 101 ]]; then pass "websocket_upgrade"; else
  fail "websocket_upgrade" "expected 101, got ${status:-nothing}"
fi

if ((failures)); then
  printf '%d check(s) failed\n' "$failures"
  exit 1
fi
printf 'all checks passed\n'
