#!/bin/sh
# Seals a new random master key for Gatehouse's encryption at rest as a systemd credential:
#   /usr/lib/gatehouse/seal-master-key [OUT]      (default /etc/credstore.encrypted/gatehouse-master)
# systemd-creds seals it to the TPM2 when the box has one, to the host key (/var/lib/systemd/credential.secret)
# otherwise; the service reads it through LoadCredentialEncrypted=, decrypted into memory for it only.
# Run on the box itself (gatehouse-credentials.service does it at first boot): a credential sealed on
# another machine does not open here. Never replaces a key: the data folder is locked with it.
set -eu
out=${1:-/etc/credstore.encrypted/gatehouse-master}
if [ -e "$out" ]; then
  echo "seal-master-key: $out exists; keeping it (the data folder is locked with it)"
  exit 0
fi
command -v systemd-creds >/dev/null 2>&1 || { echo "seal-master-key: systemd-creds not found (systemd 250 or later)" >&2; exit 1; }
umask 077
mkdir -p "$(dirname "$out")"
tmp="$out.new"
head -c 32 /dev/urandom | systemd-creds encrypt --name=gatehouse-master - "$tmp"
mv "$tmp" "$out"
echo "seal-master-key: sealed a new master key into $out"
