#!/usr/bin/env bash
# Back up the app's database, compressed, and remove the copies past retention;
# or restore one (docs/BACKUP.md).
#
#   backup.sh                  one backup into BACKUP_DIR, then retention
#                              (what <slug>-backup.service runs, from its timer)
#   backup.sh --restore FILE   put FILE's content in place of the database's, after
#                              saving the current content as a new backup beside FILE
#
# The database is the one DATABASE_URL names in the app's .env: MySQL/MariaDB
# (mysqldump --single-transaction: a consistent copy while the app writes) or
# SQLite (its online backup API). The password reaches the MySQL client in an
# option file of mode 0600 in a folder of this run's own, removed on exit: never
# on a command line (ps, the journal) or in an environment.
#
# Settings, from the environment (the unit sets them) or else deploy.conf:
#   ENV_FILE, APP_SLUG   the app's .env; the backups' file name prefix
#   BACKUP_DIR           where backups go
#   BACKUP_KEEP_DAYS     backups younger than this many days are kept
#   BACKUP_KEEP_COPIES   the newest this many are kept however old (at least 1)
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

# Backups hold password hashes and tokens: only their owner reads them.
umask 077
# NAME-20261202T031500Z.mysql.sql.gz; -N after the time when two fall in one second.
STAMP_GLOB='[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z*'

# DATABASE_URL on stdin → "sqlite PATH" or "mysql NAME"; for MySQL, the
# connection options (password included) go to the option file named by argv[1].
read -r -d '' PARSE_DATABASE_URL <<'PY' || true
import sys
import urllib.parse as u

url = sys.stdin.read().strip()
scheme = url.partition(":")[0].split("+")[0]


def option(value):
    if "\n" in value or ('"' in value and "'" in value):
        sys.exit("error: DATABASE_URL: a value with a newline, or with both quote marks, "
                 "cannot go into a MySQL option file; change the database password")
    quote = "'" if '"' in value else '"'
    return quote + value.replace("\\", "\\\\") + quote


if scheme == "sqlite":
    path = url.partition(":///")[2].partition("?")[0]
    if not path.startswith("/"):
        sys.exit("error: DATABASE_URL names a relative SQLite path; "
                 "use an absolute one (sqlite:////var/lib/<slug>/<slug>.db)")
    print("sqlite", path)
elif scheme in ("mysql", "mariadb"):
    parts = u.urlsplit(url)
    query = u.parse_qs(parts.query)
    options = {"user": u.unquote(parts.username or ""), "password": u.unquote(parts.password or "")}
    if "unix_socket" in query:
        options["socket"] = query["unix_socket"][0]
    else:  # TCP, as the app connects (PyMySQL), also for "localhost"
        options.update(host=parts.hostname or "localhost", port=str(parts.port or 3306),
                       protocol="tcp")
    with open(sys.argv[1], "w") as file:
        file.write("[client]\n" + "".join(f"{k}={option(v)}\n" for k, v in options.items()))
    print("mysql", u.unquote(parts.path.lstrip("/")))
else:
    sys.exit(f"error: DATABASE_URL: backups know MySQL/MariaDB and SQLite, not {scheme!r}")
PY

# A DROP statement for every table and view of the database.
DROP_STATEMENTS="SELECT CONCAT('DROP ', IF(table_type = 'VIEW', 'VIEW', 'TABLE'), ' \`', table_name, '\`;') FROM information_schema.tables WHERE table_schema = DATABASE()"

# sqlite3 SOURCE TARGET [--standalone]: copy page by page, consistent while the
# app writes; --standalone leaves TARGET in rollback-journal mode (no -wal file
# needed beside it), for a copy that is one self-contained file.
read -r -d '' SQLITE_COPY <<'PY' || true
import sqlite3
import sys

source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
source.backup(target)
if sys.argv[3:] == ["--standalone"]:
    target.execute("PRAGMA journal_mode=DELETE")
source.close()
target.close()
PY

read -r -d '' SQLITE_CHECK <<'PY' || true
import sqlite3
import sys

result = sqlite3.connect(sys.argv[1]).execute("PRAGMA quick_check").fetchone()[0]
sys.exit(0 if result == "ok" else f"error: {sys.argv[1]}: {result}")
PY

# The MariaDB name of a client when installed (newer MariaDB warns on the old
# one), else MySQL's: mysql_client mariadb-dump mysqldump.
mysql_client() {
  command -v "$1" || command -v "$2" ||
    die "neither $1 nor $2 is installed: apt-get install mariadb-client (or mysql-client)"
}

# Read DATABASE_URL: sets kind (mysql|sqlite) and target (database name or file).
read_database() {
  local url database
  url=$(env_value DATABASE_URL)
  [[ -n $url ]] || die "$ENV_FILE has no DATABASE_URL"
  database=$(printf '%s' "$url" | python3 -c "$PARSE_DATABASE_URL" "$options")
  kind=${database%% *}
  target=${database#* }
  if [[ $kind == mysql ]]; then
    dump_tool=$(mysql_client mariadb-dump mysqldump)
    shell_tool=$(mysql_client mariadb mysql)
  elif [[ ! -f $target ]]; then
    die "$target (DATABASE_URL) does not exist: install the app first (setup.sh creates it)"
  fi
}

# One compressed copy of the database into FOLDER; its path in $made.
take_backup() {
  local folder=$1 suffix name n=1
  if [[ $kind == mysql ]]; then suffix=mysql.sql.gz; else suffix=sqlite.gz; fi
  mkdir -p "$folder" || die "cannot create $folder"
  partial=$(mktemp "$folder/.$APP_SLUG-XXXXXX.partial")
  if [[ $kind == mysql ]]; then
    "$dump_tool" --defaults-extra-file="$options" --single-transaction --quick \
      --no-tablespaces --hex-blob --default-character-set=utf8mb4 "$target" |
      gzip >"$partial" || die "$dump_tool failed; the copies in $folder are as they were"
  else
    python3 -c "$SQLITE_COPY" "$target" "$work/copy.db" --standalone ||
      die "copying $target failed; the copies in $folder are as they were"
    gzip -c "$work/copy.db" >"$partial"
    rm -f "$work/copy.db"
  fi
  check_backup "$partial" "$suffix"
  name=$folder/$APP_SLUG-$(date -u +%Y%m%dT%H%M%SZ)
  if [[ -e $name.$suffix ]]; then
    while [[ -e $name-$n.$suffix ]]; do n=$((n + 1)); done
    name=$name-$n
  fi
  mv "$partial" "$name.$suffix"
  partial=
  made=$name.$suffix
  log "backup: $made ($(du -h "$made" | cut -f1))"
}

# A backup is whole before anything trusts it: the gzip stream complete, a
# dump that mysqldump finished, an SQLite file that passes its quick check
# (left uncompressed in $checked).
check_backup() {
  local file=$1 suffix=$2 last
  if [[ $suffix == mysql.sql.gz ]]; then
    last=$(gzip -dc "$file" | tail -n 1) || die "$file is damaged (gzip)"
    [[ $last == "-- Dump completed"* ]] || die "$file is cut short: the dump never finished"
  else
    checked=$(mktemp "$work/checked-XXXXXX.db")
    gzip -dc "$file" >"$checked" || die "$file is damaged (gzip)"
    python3 -c "$SQLITE_CHECK" "$checked" || die "$file holds a damaged SQLite database"
  fi
}

# Keep the newest BACKUP_KEEP_COPIES, and every backup younger than
# BACKUP_KEEP_DAYS; remove the rest (only files named as this script names them).
prune_backups() {
  local cutoff rank=0 mtime file
  cutoff=$(($(date +%s) - BACKUP_KEEP_DAYS * 86400))
  while read -r mtime file; do
    rank=$((rank + 1))
    if ((rank > BACKUP_KEEP_COPIES && mtime < cutoff)); then
      rm -f -- "$file"
      log "removed $file (older than $BACKUP_KEEP_DAYS days; the newest $BACKUP_KEEP_COPIES are kept)"
    fi
  done < <(find "$BACKUP_DIR" -maxdepth 1 -type f -name "$APP_SLUG-$STAMP_GLOB.gz" -printf '%Ts %p\n' |
    sort -k1,1nr -k2,2r)
}

# The app's units that write to the database, when systemd knows of any running.
running_units() {
  command -v systemctl >/dev/null || return 0
  systemctl list-units --plain --no-legend --state=active,activating,reloading \
    "$APP_SLUG-web@*.service" "$APP_SLUG-consumer.service" "$APP_SLUG-demo.service" \
    "$APP_SLUG-session-cleanup.service" 2>/dev/null | awk '{print $1}' || true
}

restore_backup() {
  local file=$1 suffix before running copy
  [[ -f $file && -r $file ]] || die "$file: no such backup, or $(id -un) may not read it"
  case $file in
    *.mysql.sql.gz) suffix=mysql.sql.gz ;;
    *.sqlite.gz) suffix=sqlite.gz ;;
    *) die "$file is not a backup this script made (NAME-TIME.mysql.sql.gz or NAME-TIME.sqlite.gz)" ;;
  esac
  [[ $suffix == "$kind"* ]] || die "$file is a ${suffix%%.*} backup, but DATABASE_URL names a $kind database"
  running=$(running_units)
  [[ -z $running ]] || die "the app still runs ($(echo "$running" | xargs)): systemctl stop $APP_SLUG.target first"
  check_backup "$file" "$suffix"
  copy=${checked:-}
  log "saving the current database first"
  take_backup "$(dirname "$file")"
  before=$made
  if [[ $kind == mysql ]]; then
    # The dump recreates its tables; tables it does not know (from a newer
    # release) go too, so the schema is exactly the backup's.
    if ! {
      echo "SET FOREIGN_KEY_CHECKS=0;"
      "$shell_tool" --defaults-extra-file="$options" --batch --skip-column-names "$target" \
        -e "$DROP_STATEMENTS"
      gzip -dc "$file"
    } | "$shell_tool" --defaults-extra-file="$options" "$target"; then
      die "the restore stopped part way: restore $before to go back to where it was"
    fi
  else
    python3 -c "$SQLITE_COPY" "$copy" "$target" ||
      die "the restore failed: restore $before to go back to where it was"
  fi
  log "restored $file into the database; what it held before is in $before"
  log "next: the migrations (a backup from an older release), then start the app (docs/BACKUP.md)"
}

restore=
case ${1:-} in
  "") ;;
  --restore) restore=${2:?--restore needs the backup file} ;;
  -h | --help)
    sed -n '2,20s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *) die "unknown option $1 (see --help)" ;;
esac

if [[ -z ${ENV_FILE:-} || -z ${APP_SLUG:-} ]]; then
  load_settings
fi
[[ -r $ENV_FILE ]] || die "$(id -un) may not read $ENV_FILE: run this as the service user"
work=$(mktemp -d)
partial=
trap 'rm -rf "$work"; [[ -z $partial ]] || rm -f "$partial"' EXIT
options=$work/client.cnf
: >"$options"
read_database

if [[ -n $restore ]]; then
  restore_backup "$restore"
  exit 0
fi
for name in BACKUP_DIR BACKUP_KEEP_DAYS BACKUP_KEEP_COPIES; do
  [[ -n ${!name:-} ]] || die "$name is not set: systemctl start $APP_SLUG-backup.service sets it"
done
[[ $BACKUP_KEEP_DAYS =~ ^[0-9]+$ ]] || die "BACKUP_KEEP_DAYS must be a number of days, not '$BACKUP_KEEP_DAYS'"
[[ $BACKUP_KEEP_COPIES =~ ^[1-9][0-9]*$ ]] ||
  die "BACKUP_KEEP_COPIES must be 1 or more (the backup just made is always kept), not '$BACKUP_KEEP_COPIES'"
take_backup "$BACKUP_DIR"
prune_backups
