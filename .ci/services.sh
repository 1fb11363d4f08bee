# Brings up what the tests need on this machine, installing Debian packages when missing.
# Sourced by .ci/test; exports COMNESTOR_TEST_REDIS_URL and COMNESTOR_TEST_POSTGRES_URL.
# Fails loudly: a service that cannot start stops the run.

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need_command() { # need_command COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt_install "$2"; }
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is still missing after installing $2" >&2; exit 1; }
}

start_redis() {
  need_command redis-server redis-server
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "error: Redis did not start" >&2; exit 1; }
  export COMNESTOR_TEST_REDIS_URL="redis://127.0.0.1:6379"
}

start_postgres() {
  need_command pg_ctlcluster postgresql
  local version
  version=$(ls /etc/postgresql | sort -n | tail -1)
  [ -n "$version" ] || { echo "error: no PostgreSQL cluster under /etc/postgresql" >&2; exit 1; }
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  for _ in $(seq 100); do su postgres -c "pg_isready -q -h 127.0.0.1" && break; sleep 0.1; done
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null ||
    { echo "error: PostgreSQL did not start" >&2; exit 1; }
  su postgres -c "dropdb --if-exists comnestor_test" >/dev/null
  su postgres -c "createdb comnestor_test"
  export COMNESTOR_TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:5432/comnestor_test"
}

start_mysql() {
  need_command mariadbd mariadb-server
  if ! mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    (setsid mariadbd-safe --user=mysql --bind-address=127.0.0.1 --port=3306 >/dev/null 2>&1 &)
    for _ in $(seq 100); do mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  mariadb -uroot -e "DROP DATABASE IF EXISTS comnestor_test; CREATE DATABASE comnestor_test;
    CREATE USER IF NOT EXISTS 'comnestor'@'127.0.0.1' IDENTIFIED BY 'comnestor';
    GRANT ALL ON comnestor_test.* TO 'comnestor'@'127.0.0.1';" ||
    { echo "error: MariaDB did not start" >&2; exit 1; }
  export COMNESTOR_TEST_MYSQL_URL="mysql://comnestor:comnestor@127.0.0.1:3306/comnestor_test"
}

check_tools() {
  need_command curl curl
}

check_node() {
  need_command node nodejs
  need_command npm npm
}

# Debian's Chromium for the browser lane; tools that download their own browser fail here.
check_chromium() {
  need_command chromium chromium
  export COMNESTOR_CHROMIUM
  COMNESTOR_CHROMIUM=$(command -v chromium)
}
