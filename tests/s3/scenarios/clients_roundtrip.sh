#!/usr/bin/env bash
# clients_roundtrip: every real client uploads and downloads objects of 0 B, 1 B, 4 KiB and
# 5 MiB + 1; aws cli (s3 cp) and boto3 also 100 MiB (multipart, 8 MiB parts). Each download is
# compared by sha256 with the source, each object's length and ETag are checked through a
# different client (aws s3api head-object), and each client's 4 KiB object is read back by boto3.
# CAIRN_S3_BIG_ALL=1 makes every client do the 100 MiB round trip.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
lib="$here/../lib"
: "${AWS_ENDPOINT_URL:?run through tests/s3/run}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
: "${CAIRN_S3_WORK:?run through tests/s3/run}"
region=${AWS_DEFAULT_REGION:-us-east-1}
# A CA bundle from the environment breaks rclone's plain-HTTP transport (LoadCustomCABundleError).
unset AWS_CA_BUNDLE
py=${CAIRN_S3_PY:-python3}
work="$CAIRN_S3_WORK/clients_roundtrip"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

hostport=${AWS_ENDPOINT_URL#*://}
hostport=${hostport%%/*}
bucket="cairn-rt-$(date +%s)-$((RANDOM % 100000))"
checks=0
t_start=$EPOCHREALTIME

fail() { echo "CHECK FAILED in clients_roundtrip: $*"; echo "== clients_roundtrip: FAIL after $checks checks"; exit 1; }
check_eq() { # actual expected what
  checks=$((checks + 1))
  [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
md5() { md5sum "$1" | cut -d' ' -f1; }

awsc() { aws --endpoint-url "$AWS_ENDPOINT_URL" --region "$region" "$@"; }

# ---- client configuration ---------------------------------------------------------------
# rclone: a remote named "cairn" defined only by environment variables, no config file.
export RCLONE_CONFIG="$work/no-rclone.conf"
export RCLONE_CONFIG_CAIRN_TYPE=s3
export RCLONE_CONFIG_CAIRN_PROVIDER=Other
export RCLONE_CONFIG_CAIRN_ENV_AUTH=false
export RCLONE_CONFIG_CAIRN_ENDPOINT="$AWS_ENDPOINT_URL"
export RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
export RCLONE_CONFIG_CAIRN_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
export RCLONE_CONFIG_CAIRN_REGION="$region"
export RCLONE_CONFIG_CAIRN_FORCE_PATH_STYLE=true
rclonec() { rclone -q --retries 1 --low-level-retries 2 --s3-no-check-bucket "$@"; }

# s3cmd: a throwaway config, path-style against host:port, SigV4, plain HTTP.
s3cfg="$work/s3cfg"
cat >"$s3cfg" <<EOF
[default]
access_key = $AWS_ACCESS_KEY_ID
secret_key = $AWS_SECRET_ACCESS_KEY
host_base = $hostport
host_bucket = $hostport
bucket_location = $region
use_https = False
check_ssl_certificate = False
signature_v2 = False
EOF
s3cmdc() { s3cmd -c "$s3cfg" --no-progress "$@"; }

have_rclone=1
if ! command -v rclone >/dev/null 2>&1; then
  [[ ${CI:-} == true ]] && fail "rclone is not installed (tests/s3/setup installs it)"
  echo "SKIP rclone: not installed"
  have_rclone=0
fi

# ---- per-client upload / download -------------------------------------------------------
up() { # client src key
  case $1 in
    awscli-cp) awsc s3 cp --only-show-errors "$2" "s3://$bucket/$3" ;;
    awscli-api) awsc s3api put-object --bucket "$bucket" --key "$3" --body "$2" >/dev/null ;;
    boto3) "$py" "$lib/boto3_xfer.py" upload "$bucket" "$3" "$2" ;;
    rclone) rclonec copyto "$2" "cairn:$bucket/$3" ;;
    s3cmd) s3cmdc put "$2" "s3://$bucket/$3" >/dev/null ;;
  esac
}
down() { # client key dst
  case $1 in
    awscli-cp) awsc s3api get-object --bucket "$bucket" --key "$2" "$3" >/dev/null ;;
    awscli-api) awsc s3 cp --only-show-errors "s3://$bucket/$2" "$3" ;;
    boto3) "$py" "$lib/boto3_xfer.py" download "$bucket" "$2" "$3" ;;
    rclone) rclonec copyto "cairn:$bucket/$2" "$3" ;;
    s3cmd) s3cmdc get --force "s3://$bucket/$2" "$3" >/dev/null ;;
  esac
}

# ---- source files (generated once) ------------------------------------------------------
declare -A size_of=([0B]=0 [1B]=1 [4KiB]=4096 [5MiB+1]=5242881 [100MiB]=104857600)
small=(0B 1B 4KiB 5MiB+1)
declare -A src_sha src_md5
t0=$EPOCHREALTIME
for name in "${small[@]}" 100MiB; do
  head -c "${size_of[$name]}" /dev/urandom >"$work/src-$name"
  src_sha[$name]=$(sha "$work/src-$name")
  src_md5[$name]=$(md5 "$work/src-$name")
done
echo "  time generate source files: $(since "$t0") s"

echo "== clients_roundtrip: endpoint $AWS_ENDPOINT_URL, bucket $bucket"
t0=$EPOCHREALTIME
awsc s3api create-bucket --bucket "$bucket" >/dev/null || fail "aws s3api create-bucket $bucket failed"
echo "  time create bucket: $(since "$t0") s"

roundtrip() { # client size-name
  local client=$1 name=$2 key="$1/obj-$2" dst="$work/dst"
  local src="$work/src-$name" t_up t_down len etag
  rm -f "$dst"
  t0=$EPOCHREALTIME
  up "$client" "$src" "$key" || fail "$client: upload of $name failed"
  t_up=$(since "$t0")
  # Length and ETag as another client (aws s3api) sees them.
  len=$(awsc s3api head-object --bucket "$bucket" --key "$key" --query ContentLength --output text) ||
    fail "$client: head-object $key failed"
  check_eq "$len" "${size_of[$name]}" "$client $name: ContentLength"
  etag=$(awsc s3api head-object --bucket "$bucket" --key "$key" --query ETag --output text) ||
    fail "$client: head-object $key failed"
  etag=${etag//\"/}
  if [[ $etag == *-* ]]; then
    checks=$((checks + 1))
    [[ $etag =~ ^[0-9a-f]{32}-[0-9]+$ ]] || fail "$client $name: multipart ETag '$etag' is not md5-N"
  else
    check_eq "$etag" "${src_md5[$name]}" "$client $name: single-PUT ETag (md5)"
  fi
  t0=$EPOCHREALTIME
  down "$client" "$key" "$dst" || fail "$client: download of $name failed"
  t_down=$(since "$t0")
  [[ -f $dst ]] || fail "$client $name: download produced no file"
  check_eq "$(sha "$dst")" "${src_sha[$name]}" "$client $name: sha256 after round trip"
  rm -f "$dst"
  printf '  ok  %-10s %-8s up %7s s  down %7s s  etag %s\n' "$client" "$name" "$t_up" "$t_down" "$etag"
}

clients=(awscli-cp awscli-api boto3 s3cmd)
[[ $have_rclone == 1 ]] && clients+=(rclone)
big_clients=(awscli-cp boto3)
[[ ${CAIRN_S3_BIG_ALL:-0} == 1 ]] && big_clients=("${clients[@]}")

for client in "${clients[@]}"; do
  for name in "${small[@]}"; do
    roundtrip "$client" "$name"
  done
done
for client in "${big_clients[@]}"; do
  roundtrip "$client" 100MiB
done

# Cross-client: boto3 reads every client's 4 KiB object with a plain GetObject.
for client in "${clients[@]}"; do
  "$py" "$lib/boto3_xfer.py" get "$bucket" "$client/obj-4KiB" "$work/cross" ||
    fail "boto3 GetObject of $client/obj-4KiB failed"
  check_eq "$(sha "$work/cross")" "${src_sha[4KiB]}" "boto3 read of the 4 KiB object written by $client"
done

# Every object is listed once, by rclone's and s3cmd's listings too.
want=$(( ${#clients[@]} * ${#small[@]} + ${#big_clients[@]} ))
listing=$(awsc s3 ls --recursive "s3://$bucket/") || fail "aws s3 ls --recursive failed"
check_eq "$(grep -c . <<<"$listing")" "$want" "aws s3 ls --recursive count"
listing=$(s3cmdc ls --recursive "s3://$bucket/") || fail "s3cmd ls --recursive failed"
check_eq "$(grep -c . <<<"$listing")" "$want" "s3cmd ls --recursive count"
if [[ $have_rclone == 1 ]]; then
  listing=$(rclonec lsf -R --files-only "cairn:$bucket") || fail "rclone lsf failed"
  check_eq "$(grep -c . <<<"$listing")" "$want" "rclone lsf -R count"
fi

# Deletes through two clients, then the bucket empties.
awsc s3 rm --only-show-errors --recursive "s3://$bucket/awscli-cp/" || fail "aws s3 rm --recursive failed"
s3cmdc del --recursive --force "s3://$bucket/s3cmd/" >/dev/null || fail "s3cmd del --recursive failed"
# shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
count_query='length(Contents || `[]`)'
gone=$(awsc s3api list-objects-v2 --bucket "$bucket" --prefix awscli-cp/ --query "$count_query" --output text) ||
  fail "aws s3api list-objects-v2 failed"
check_eq "$gone" "0" "objects left under awscli-cp/ after aws s3 rm"
gone=$(awsc s3api list-objects-v2 --bucket "$bucket" --prefix s3cmd/ --query "$count_query" --output text) ||
  fail "aws s3api list-objects-v2 failed"
check_eq "$gone" "0" "objects left under s3cmd/ after s3cmd del"
awsc s3 rb --force "s3://$bucket" >/dev/null || echo "  (cleanup: aws s3 rb --force failed)"

echo "== clients_roundtrip: ok, $checks checks, $(since "$t_start") s"
