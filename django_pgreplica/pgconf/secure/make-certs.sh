#!/usr/bin/env bash
# django-pgreplica: TLS files for the servers of a secure cluster (security.conf), made with
# the openssl CLI. compose.yaml's one-shot "certs" service runs it before any server starts,
# and so does `python -m django_pgreplica.testing.cluster up --secure`.
#
#   make-certs.sh [--ca DIR] [--public DIR] [--owner USER] OUT_ROOT NAME...
#
#   --ca DIR      the private CA: DIR/ca.crt and DIR/ca.key, made once (default OUT_ROOT/ca)
#   --public DIR  gets a copy of ca.crt: what clients verify servers with (sslrootcert)
#   --owner USER  owner of each server's key (PostgreSQL reads it as that user)
#   OUT_ROOT/NAME/server.crt, server.key (mode 0600), ca.crt for each NAME; the certificate
#                 names NAME, localhost, 127.0.0.1 and ::1 (sslmode=verify-full checks it)
#
# Files already there are kept (a later start, or certificates you mounted), after checking
# that each certificate is signed by the ca.crt beside it, names NAME and matches its key.
# The CA is needed only to sign a missing certificate.
set -Eeuo pipefail

die() { printf 'make-certs: %s\n' "$*" >&2; exit 1; }
log() { printf 'make-certs: %s\n' "$*" >&2; }

ca_dir="" public_dir="" owner=""
while (($#)); do
    case "$1" in
        --ca) ca_dir="${2:?--ca needs a directory}"; shift ;;
        --public) public_dir="${2:?--public needs a directory}"; shift ;;
        --owner) owner="${2:?--owner needs a user}"; shift ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
    shift
done
(($# >= 2)) || die "usage: make-certs.sh [--ca DIR] [--public DIR] [--owner USER] OUT_ROOT NAME..."
command -v openssl >/dev/null || die "the openssl command is missing (Debian: apt-get install openssl)"
out_root="$1"
shift
ca_dir="${ca_dir:-$out_root/ca}"
umask 022

new_key() { (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"); }

ensure_ca() {
    [[ -s "$ca_dir/ca.crt" ]] && [[ -s "$ca_dir/ca.key" ]] && return
    [[ -s "$ca_dir/ca.crt" ]] && die "$ca_dir/ca.crt has no ca.key beside it to sign with"
    log "making a private CA in $ca_dir"
    mkdir -p "$ca_dir"
    chmod 0700 "$ca_dir"
    new_key "$ca_dir/ca.key.tmp"
    openssl req -x509 -new -key "$ca_dir/ca.key.tmp" -sha256 -days 3650 \
        -subj "/CN=django-pgreplica CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$ca_dir/ca.crt.tmp"
    mv "$ca_dir/ca.key.tmp" "$ca_dir/ca.key"
    mv "$ca_dir/ca.crt.tmp" "$ca_dir/ca.crt"
}

issue() {  # issue NAME DIR: a key and a certificate signed by the CA
    local name="$1" dir="$2"
    ensure_ca
    log "making a certificate for $name in $dir"
    new_key "$dir/server.key.tmp"
    openssl req -new -key "$dir/server.key.tmp" -subj "/CN=$name" -out "$dir/server.csr"
    printf '%s\n' \
        "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1" \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
        -extfile "$dir/server.ext" -out "$dir/server.crt.tmp" 2>/dev/null
    rm -f "$dir/server.csr" "$dir/server.ext"
    cp "$ca_dir/ca.crt" "$dir/ca.crt.tmp"
    mv "$dir/ca.crt.tmp" "$dir/ca.crt"
    mv "$dir/server.key.tmp" "$dir/server.key"
    mv "$dir/server.crt.tmp" "$dir/server.crt"
}

check() {  # check NAME DIR: what is there is usable for NAME
    local name="$1" dir="$2"
    [[ -s "$dir/ca.crt" ]] || die "$dir has server.crt but no ca.crt to check it with"
    openssl verify -CAfile "$dir/ca.crt" -verify_hostname "$name" "$dir/server.crt" >/dev/null \
        || die "$dir/server.crt is not signed by $dir/ca.crt for the name $name"
    [[ "$(openssl x509 -noout -pubkey -in "$dir/server.crt")" == \
       "$(openssl pkey -pubout -in "$dir/server.key")" ]] \
        || die "$dir/server.key does not belong to $dir/server.crt"
}

for name in "$@"; do
    dir="$out_root/$name"
    mkdir -p "$dir"
    if [[ -s "$dir/server.crt" && -s "$dir/server.key" ]]; then
        check "$name" "$dir"
    else
        issue "$name" "$dir"
    fi
    if [[ -n "$owner" && -w "$dir/server.key" ]]; then
        chown "$owner:" "$dir/server.key"
        chmod 0600 "$dir/server.key"
    fi
done

if [[ -n "$public_dir" ]]; then
    mkdir -p "$public_dir"
    if [[ ! -s "$public_dir/ca.crt" ]]; then
        [[ -s "$ca_dir/ca.crt" ]] || die "no CA certificate to copy into $public_dir"
        cp "$ca_dir/ca.crt" "$public_dir/ca.crt"
    fi
fi
