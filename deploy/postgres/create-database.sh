#!/bin/bash
# Create glue-bench's database and its user on a PostgreSQL server you administer, and print the storage URL
# and the ~/.pgpass line for the users who run sweeps (the password stays out of URLs, logs and job scripts).
#
#   sudo -u postgres deploy/postgres/create-database.sh [DATABASE [USER]]   # on the database host; default glue glue
# (DB_HOST: the name compute nodes reach the server by, default `hostname -f`; PGHOST/PGPORT as for psql)
#
# A managed server (RDS, Cloud SQL, Azure, a university's service): run the same two statements as its admin user:
#   CREATE ROLE glue LOGIN PASSWORD '…';
#   CREATE DATABASE glue OWNER glue;
# Then every node must reach the server: listen_addresses in postgresql.conf, a line in pg_hba.conf such as
#   host  glue  glue  10.0.0.0/8  scram-sha-256
# (your compute nodes' network), and max_connections of at least 3 per worker (deploy/postgres/README.md).
set -euo pipefail
database=${1:-glue}
user=${2:-glue}
password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')   # 36 hex digits: nothing to quote in a URL
psql -v ON_ERROR_STOP=1 -q --set=database="$database" --set=user="$user" --set=password="$password" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"user";
SQL
host=${DB_HOST:-$(hostname -f)}
port=${PGPORT:-5432}
echo "created database $database, owned by $user"
echo "storage URL (no password in it): postgresql://$user@$host:$port/$database"
echo "each sweep user's ~/.pgpass (chmod 600), which libpq reads for the password:"
echo "$host:$port:$database:$user:$password"
