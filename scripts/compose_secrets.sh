#!/usr/bin/env bash
# The keys every Airflow component of docker-compose.yaml must share, generated once into DIR (the
# `airflow-secrets` volume). airflow-init runs this before any other Airflow service starts; the
# services read each file through Airflow's `<option>_CMD` variables (`cat DIR/<name>`), so no key
# is ever written in docker-compose.yaml or passed on a command line.
#
# An existing non-empty file is kept: recreated containers must sign and check tokens with the
# same key, and the fernet key decrypts the connections already stored in the metadata database.
# Files are written without a trailing newline (Airflow uses a _CMD's output as it is).
#
# Usage: compose_secrets.sh DIR [UID]   (UID: owner of the files, group 0, as the services run)
#        PYTHON=... to pick the interpreter (default: python, the image's).
set -euo pipefail
dir=${1:?usage: compose_secrets.sh DIR [UID]}
owner=${2:-}
python=${PYTHON:-python}

umask 077
mkdir -p "$dir"
generate() {
  local name=$1 code=$2
  if [ -s "$dir/$name" ]; then
    echo "kept $name"
    return
  fi
  "$python" -c "$code" >"$dir/$name.tmp"
  mv "$dir/$name.tmp" "$dir/$name"  # a crash mid-write never leaves a short key behind
  echo "generated $name"
}
generate jwt_secret 'import secrets; print(secrets.token_urlsafe(64), end="")'
generate api_secret_key 'import secrets; print(secrets.token_urlsafe(64), end="")'
generate fernet_key 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode(), end="")'

# Readable by the owner and group 0 (the services run as UID:0), by no one else.
chmod 0750 "$dir"
chmod 0440 "$dir"/jwt_secret "$dir"/api_secret_key "$dir"/fernet_key
if [ -n "$owner" ]; then
  chown -R "$owner:0" "$dir"
fi
