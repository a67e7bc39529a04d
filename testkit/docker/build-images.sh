#!/usr/bin/env bash
# Builds the mailcow-shaped test images without a registry: a minimal Debian
# root filesystem from this machine's own apt sources (debootstrap), MariaDB
# and Redis installed into it, `docker import`, then thin service images.
# Images are tagged with a hash of this directory, so an unchanged recipe is
# built once per machine. Prints the tag on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=$(cat "$here"/build-images.sh "$here"/compose.yml | sha256sum | cut -c1-12)
if docker image inspect "cshost-test/mysql:$tag" >/dev/null 2>&1; then
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
root="$work/rootfs"
echo "debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2
# Packages must not try to start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  mariadb-server mariadb-client redis-server redis-tools >&2
chroot "$root" apt-get clean
rm -f "$root/usr/sbin/policy-rc.d"
tar -C "$root" -c . | docker import - "cshost-test/base:$tag" >&2

ctx="$work/ctx"
mkdir -p "$ctx"
cat > "$ctx/mysql-entry" <<'EOS'
#!/bin/sh
set -e
mkdir -p /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=root --datadir=/var/lib/mysql --auth-root-authentication-method=normal --skip-test-db >/dev/null
fi
printf "ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';\n" "$DBROOT" > /run/mysqld/init.sql
exec mariadbd --user=root --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --bind-address=0.0.0.0 \
  --skip-log-bin --innodb-buffer-pool-size=32M --init-file=/run/mysqld/init.sql
EOS
cat > "$ctx/redis-entry" <<'EOS'
#!/bin/sh
exec redis-server --dir /data --dbfilename dump.rdb --requirepass "$REDISPASS" --save "" --appendonly no --bind 0.0.0.0 --protected-mode no
EOS
chmod +x "$ctx"/*-entry
build() { # name entry
  printf 'FROM cshost-test/base:%s\nCOPY %s /usr/local/bin/entry\nCMD ["/usr/local/bin/entry"]\n' "$tag" "$2" \
    | docker build -q -t "cshost-test/$1:$tag" -f - "$ctx" >&2
}
# PID 1 ignores SIGTERM unless it handles it; stop must not wait for the kill timeout.
printf '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 1 & wait $!; done\n' > "$ctx/idle-entry"
chmod +x "$ctx/idle-entry"
build mysql mysql-entry
build redis redis-entry
build idle idle-entry
echo "$tag"
