#!/usr/bin/env bash
# Create what the services need, idempotently: the deploy user, its state
# directory, the MySQL database and user, the RabbitMQ vhost and user. The
# passwords are the ones in .env (written by setup.sh).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

load_settings
require_root "$@"

# URL parts: url_part URL user|password|host|path (percent-decoded). The URL
# goes on stdin: a command line is visible to every user (ps) and kept by journald.
url_part() {
  printf '%s\n' "$1" | python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.stdin.readline().strip())
v = {"user": p.username, "password": p.password, "host": p.hostname, "path": p.path.lstrip("/")}
print(u.unquote(v[sys.argv[1]] or ""))' "$2"
}

# The web and consumer hosts of PRIVATE_NETWORK reach this host's database: the
# server listens beyond loopback and the user may connect from that network only.
open_database_to_network() {  # NAME USER PASSWORD
  local from conf
  from=$(python3 -c 'import ipaddress, sys
n = ipaddress.ip_network(sys.argv[1])
print(f"{n.network_address}/{n.netmask}" if n.version == 4 else sys.exit("IPv4 only"))' "$PRIVATE_NETWORK") ||
    die "PRIVATE_NETWORK=$PRIVATE_NETWORK: MySQL user hosts are IPv4 networks"
  log "MySQL: user $2 may connect from $PRIVATE_NETWORK"
  mysql --user=root <<SQL
CREATE USER IF NOT EXISTS '$2'@'$from' IDENTIFIED BY '$3';
ALTER USER '$2'@'$from' IDENTIFIED BY '$3';
GRANT ALL PRIVILEGES ON \`$1\`.* TO '$2'@'$from';
SQL
  conf=${MYSQL_CONF_DIR:-/etc/mysql/$(database_server).conf.d}/60-$APP_SLUG-network.cnf
  if [[ ! -f $conf ]]; then
    log "MySQL: listening on every address ($conf); keep port 3306 closed to other networks"
    mkdir -p "$(dirname "$conf")"
    printf '# Written by %s provision.sh: hosts of PRIVATE_NETWORK connect.\n[mysqld]\nbind-address = 0.0.0.0\n' \
      "$APP_SLUG" >"$conf"
    systemctl restart "$(database_server)"
  fi
}

if ! id -u "$DEPLOY_USER" >/dev/null 2>&1; then
  log "creating system user $DEPLOY_USER"
  useradd --system --home-dir "/var/lib/$APP_SLUG" --no-create-home --shell /usr/sbin/nologin "$DEPLOY_USER"
fi
install -d -m 0750 -o "$DEPLOY_USER" -g "$DEPLOY_USER" "/var/lib/$APP_SLUG"
# Only root and the service user read the secrets.
chown "$DEPLOY_USER:$DEPLOY_USER" "$ENV_FILE"
chmod 0600 "$ENV_FILE"

database_url=$(env_value DATABASE_URL)
if [[ $database_url == mysql* ]]; then
  host=$(url_part "$database_url" host)
  if [[ $host == 127.0.0.1 || $host == localhost ]]; then
    user=$(url_part "$database_url" user)
    password=$(url_part "$database_url" password)
    name=$(url_part "$database_url" path)
    [[ $name =~ ^[A-Za-z0-9_]+$ && $user =~ ^[A-Za-z0-9_]+$ && $password =~ ^[A-Za-z0-9_-]*$ ]] ||
      die "DATABASE_URL: the database, user and password must be plain [A-Za-z0-9_-] to be created here"
    log "MySQL: database $name, user $user"
    mysql --user=root <<SQL
CREATE DATABASE IF NOT EXISTS \`$name\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password';
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$password';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$password';
ALTER USER '$user'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`$name\`.* TO '$user'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`$name\`.* TO '$user'@'localhost';
SQL
    if [[ -n ${PRIVATE_NETWORK:-} ]]; then
      open_database_to_network "$name" "$user" "$password"
    fi
  elif ! runs_site; then
    log "MySQL on $host: provisioned by the all-in-one host"
  else
    log "MySQL on $host: create the database and user there yourself (RUNBOOK.md, MySQL)"
  fi
fi

# A cluster's BROKER_URL names each node, separated by ";": users, vhosts and
# permissions are the whole cluster's, so the first node's URL says it all.
broker_url=$(env_value BROKER_URL)
broker_url=${broker_url%%;*}
if [[ $broker_url == amqp* ]]; then
  host=$(url_part "$broker_url" host)
  if [[ $host == 127.0.0.1 || $host == localhost ]]; then
    user=$(url_part "$broker_url" user)
    password=$(url_part "$broker_url" password)
    vhost=$(url_part "$broker_url" path)
    vhost=${vhost:-/}
    log "RabbitMQ: vhost $vhost, user $user"
    version=$(rabbitmqctl version 2>/dev/null || echo unknown)
    [[ ! $version =~ ^3\.[0-9]\. ]] ||
      die "RabbitMQ $version is older than 3.10: install Team RabbitMQ's packages (RUNBOOK.md, RabbitMQ)"
    rabbitmqctl list_vhosts --quiet | grep -qxF "$vhost" || rabbitmqctl add_vhost "$vhost"
    # Without the password argument rabbitmqctl (3.10+) reads it from stdin, which
    # keeps it out of the command line; MySQL's passwords above go on stdin too.
    if rabbitmqctl list_users --quiet | cut -f1 | grep -qxF "$user"; then
      printf '%s\n' "$password" | rabbitmqctl change_password "$user" >/dev/null
    else
      printf '%s\n' "$password" | rabbitmqctl add_user "$user" >/dev/null
    fi
    rabbitmqctl set_permissions -p "$vhost" "$user" '.*' '.*' '.*'
  elif ! runs_site; then
    log "RabbitMQ on $host: provisioned by the all-in-one host"
  else
    log "RabbitMQ on $host: create the vhost and user there yourself (RUNBOOK.md, RabbitMQ)"
  fi
fi
log "provisioned"
