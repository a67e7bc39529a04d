#!/usr/bin/env bash
# Builds the mailcow-shaped test images without a registry: a minimal Debian
# root filesystem from this machine's own apt sources (debootstrap), MariaDB
# and Redis installed into it, `docker import`, then thin service images.
# Images are tagged with a hash of this recipe, so an unchanged one is built
# once per machine (compose.yml only uses them). Prints the tag on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=$(sha256sum < "$here"/build-images.sh | cut -c1-12)
missing=0
for image in mysql redis idle dovecot phpfpm; do
  docker image inspect "cshost-test/$image:$tag" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 0 ]; then
  echo "$tag"
  exit 0
fi

# The machine's own mirror and release, read at run time.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
fi
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
[ -n "$mirror" ] || { echo "no apt mirror found in /etc/apt/sources.list(.d)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/cshost-images.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The root filesystem has a recipe (and tag) of its own: the service images
# below change more often, and rebuilding them takes seconds, not minutes.
packages="mariadb-server mariadb-client redis-server redis-tools"
base=$(echo "debootstrap minbase $suite; $packages" | sha256sum | cut -c1-12)
if ! docker image inspect "cshost-test/base:$base" >/dev/null 2>&1; then
  root="$work/rootfs"
  echo "debootstrap $suite from $mirror" >&2
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2
  # Packages must not try to start services inside the chroot.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2086
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $packages >&2
  chroot "$root" apt-get clean
  rm -f "$root/usr/sbin/policy-rc.d"
  tar -C "$root" -c . | docker import - "cshost-test/base:$base" >&2
fi

ctx="$work/ctx"
mkdir -p "$ctx"
# MariaDB as the official image runs it: the MYSQL_* environment (mailcow.conf's
# DBROOT, DBNAME, DBUSER and DBPASS) is applied once, to a new data directory.
cat > "$ctx/mysql-entry" <<'EOS'
#!/bin/sh
set -e
mkdir -p /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=root --datadir=/var/lib/mysql --auth-root-authentication-method=normal --skip-test-db >/dev/null
  cat > /tmp/init.sql <<EOF
DELETE FROM mysql.global_priv WHERE User = '';
ALTER USER 'root'@'localhost' IDENTIFIED BY '$MYSQL_ROOT_PASSWORD';
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;
CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';
FLUSH PRIVILEGES;
EOF
  set -- --init-file=/tmp/init.sql
fi
exec mariadbd --user=root --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --bind-address=0.0.0.0 \
  --skip-log-bin --innodb-buffer-pool-size=32M "$@"
EOS
cat > "$ctx/redis-entry" <<'EOS'
#!/bin/sh
exec redis-server --dir /data --dbfilename dump.rdb --requirepass "$REDISPASS" --save "" --appendonly no --bind 0.0.0.0 --protected-mode no
EOS
# Stand-ins for the other daemons. PID 1 ignores SIGTERM unless it handles
# it: a stop must not wait for the kill timeout.
cat > "$ctx/idle-entry" <<'EOS'
#!/bin/sh
trap "exit 0" TERM INT
while :; do sleep 1 & wait $!; done
EOS
# php-fpm's start-up work (init_db) logs in to MariaDB through the shared
# socket, with the DBUSER and DBPASS its container was created with.
cat > "$ctx/phpfpm-entry" <<'EOS'
#!/bin/sh
trap "exit 0" TERM INT
n=0
until MYSQL_PWD="$DBPASS" mariadb --socket=/var/run/mysqld/mysqld.sock -u "$DBUSER" -e "SELECT 1" "$DBNAME" >/dev/null 2>&1; do
  n=$((n + 1))
  if [ "$n" -ge 60 ]; then
    echo "init_db: cannot log in to MariaDB as $DBUSER"
    break
  fi
  sleep 1 & wait $!
done
[ "$n" -ge 60 ] || echo "init_db: logged in to MariaDB as $DBUSER"
while :; do sleep 1 & wait $!; done
EOS
# dovecot's doveadm appends each call to a log that outlives the container.
cat > "$ctx/doveadm" <<'EOS'
#!/bin/sh
echo "doveadm $*" >> /stand-in-logs/dovecot-exec.log
EOS
chmod +x "$ctx"/*-entry "$ctx/doveadm"
build() { # image entry [one more Dockerfile line]
  printf 'FROM cshost-test/base:%s\nCOPY %s /usr/local/bin/entry\n%s\nCMD ["/usr/local/bin/entry"]\n' \
    "$base" "$2" "${3:-}" | docker build -q -t "cshost-test/$1:$tag" -f - "$ctx" >&2
}
# The package's own data directory would seed every new mysql-vol-1.
build mysql mysql-entry 'RUN rm -rf /var/lib/mysql && mkdir /var/lib/mysql'
build redis redis-entry
build idle idle-entry
build dovecot idle-entry 'COPY doveadm /usr/local/bin/doveadm'
build phpfpm phpfpm-entry
echo "$tag"
