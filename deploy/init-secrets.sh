#!/bin/sh
# Create the secrets a deployment needs, once, in DIR (default: deploy/secrets, next to this
# script). Existing files are kept, so it is safe to run again. Needs the project's Python
# (PYTHON, default .venv/bin/python: run it from the repository root after `make install`).
# Compose mounts DIR as secrets; for Kubernetes, turn it into Secrets with
# `kubectl create secret generic ... --from-file` (deploy/README.md).
#
#   DIR/postgres-password        the certibloc database user's password
#   DIR/download-token-secret    64 hex characters shared by attestations and notifications
#   DIR/smtp-password            placeholder: put your SMTP relay's password in it
#   DIR/attestations-keys/       Ed25519 signing key (<kid>.jwk, "active") and the PDF signing
#                                identity (pdf/pdf-signer.pem, self-signed; replace with a
#                                certificate from your CA if you have one)
#   DIR/nats/                    the bus's NKeys: <user>.nk seeds (registry, attestations,
#                                notifications: one per service, each mounted by its service
#                                only; provisioner: mounted by the provisioning job only, Compose
#                                nats-provision / Kubernetes Job nats-provision; operator: for
#                                your tools, never mounted) and nkeys.env, their PUBLIC keys
#                                (CERTIBLOC_NKEY_<USER>=U...) for the NATS servers
#   DIR/store-keys/<service>.key  each service's event-store encryption key (AES-256, base64)
#   DIR/nats/store-key.env       CERTIBLOC_NATS_STORE_KEY=..., JetStream's encryption key, for
#                                the NATS servers' environment only
#   DIR/nats-tls/                NATS TLS: a private CA (ca.crt, ca.key) and the servers'
#                                certificate (tls.crt, tls.key); replace with your PKI's files
#                                under the same names if you have one
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-"$here/secrets"}
python=${PYTHON:-.venv/bin/python}
umask 077
mkdir -p "$dir"

# Values without a trailing newline: `kubectl create secret --from-file` keeps file bytes as is.
random_hex() {
    "$python" -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])), end="")' "$1"
}

[ -s "$dir/postgres-password" ] || random_hex 24 > "$dir/postgres-password"
[ -s "$dir/download-token-secret" ] || random_hex 32 > "$dir/download-token-secret"
[ -e "$dir/smtp-password" ] || printf 'REPLACE_ME' > "$dir/smtp-password"

keys="$dir/attestations-keys"
if [ ! -s "$keys/active" ]; then
    ATTESTATIONS_KEYS_DIR="$keys" "$python" -m services.attestations rotate-key
fi
if [ ! -s "$keys/pdf/pdf-signer.pem" ]; then
    "$python" -c 'import sys
from pathlib import Path
from services.attestations.pdf import PdfSigner
PdfSigner.load_or_create(Path(sys.argv[1]), common_name="certibloc attestations")' "$keys/pdf"
fi

# Encryption at rest (deploy/README.md): keys are created once and never replaced here, as a
# new key would make the existing store unreadable.
mkdir -p "$dir/store-keys" "$dir/nats"
for service in registry attestations notifications; do
    [ -s "$dir/store-keys/$service.key" ] || "$python" -c 'import base64, secrets
print(base64.b64encode(secrets.token_bytes(32)).decode(), end="")' > "$dir/store-keys/$service.key"
done
[ -s "$dir/nats/store-key.env" ] || "$python" -c 'import secrets
print("CERTIBLOC_NATS_STORE_KEY=" + secrets.token_urlsafe(32))' > "$dir/nats/store-key.env"

# Seeds are kept (a missing one, e.g. provisioner.nk after an upgrade, is created); nkeys.env
# is written again from them. Each seed goes to one consumer only (deploy/README.md, "Secrets").
"$python" -m services.runtime.natsauth credentials "$dir/nats" > /dev/null
# Host names the services and the routes dial (the Kubernetes Service names are added).
"$python" -m tools.nats_tls "$dir/nats-tls" --hosts "${NATS_TLS_HOSTS:-nats-1,nats-2,nats-3}" > /dev/null

echo "secrets in $dir; the containers run as uid 10001, which must be able to read them:"
echo "  sudo chown -R 10001:10001 $dir"
