#!/bin/sh
# Container entrypoint: for every environment variable NAME_FILE=<path> (a Compose or Docker
# secret mounted as a file), export NAME=<contents of path> without its trailing newlines and
# drop NAME_FILE; then run the command. Secrets so never sit in compose files or `docker inspect`.
# Settings whose own name ends in _FILE (a path the services open themselves) are left alone.
set -eu

keep=" CERTIBLOC_NATS_TLS_CA_FILE CERTIBLOC_STORE_KEY_FILE REGISTRY_CERTIFIER_KEY_FILE "

for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)_FILE=.*$/\1/p'); do
    case "$keep" in
        *" ${name}_FILE "*) continue ;;
    esac
    case "$name" in
        *_STORE_KEY) continue ;; # <SERVICE>_STORE_KEY_FILE: the service reads the key file
    esac
    eval "path=\${${name}_FILE}"
    if [ ! -r "$path" ]; then
        echo "certibloc-entrypoint: ${name}_FILE=$path is not a readable file" >&2
        exit 1
    fi
    value=$(cat "$path")
    export "$name=$value"
    unset "${name}_FILE"
done

exec "$@"
