#!/bin/sh
# Make a private CA and the broker's server certificate (and optionally client ones).
#   deploy/mosquitto/make-certs.sh OUT_DIR BROKER_HOSTNAME [BROKER_IP]
# Writes OUT_DIR/ca.crt ca.key server.crt server.key. Keep ca.key offline; copy ca.crt to
# every gateway and central worker (their config's CA file).
set -eu
out=${1:?usage: make-certs.sh OUT_DIR BROKER_HOSTNAME [BROKER_IP]}
host=${2:?usage: make-certs.sh OUT_DIR BROKER_HOSTNAME [BROKER_IP]}
ip=${3:-}
days=${DAYS:-825}
mkdir -p "$out"
cd "$out"
umask 077
openssl req -x509 -newkey "rsa:${CA_BITS:-3072}" -nodes -sha256 -days 3650 \
    -subj "/CN=airtrace broker CA" -keyout ca.key -out ca.crt 2>/dev/null
san="DNS:$host"
[ -n "$ip" ] && san="$san,IP:$ip"
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$host" \
    -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 644 ca.crt server.crt
chmod 640 server.key
echo "made $out/ca.crt and $out/server.crt for $san"
