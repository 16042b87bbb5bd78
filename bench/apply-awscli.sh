#!/usr/bin/env bash
# The same steps as `arq-lockdown apply`, done with the aws CLI the way an admin would script them:
# identify the key, create the scoped user, its policy and a key, check it with Arq's calls and the
# isolation probes, write "Arq S3". For bench/apply.py only (admin keys in AWS_ACCESS_KEY_ID/…).
#   apply-awscli.sh BUCKET COMPUTER_UUID OTHER_UUID STORE_FILE     (the CLI is $AWS)
set -euo pipefail
bucket=$1 uuid=$2 other=$3 store=$4
aws=${AWS:-aws}
export AWS_DEFAULT_REGION=${AWS_REGION:-us-east-1}   # the v1 CLI reads only this one
user=arq-$uuid
policy=$("$(dirname "$0")/../target/release/arq-lockdown" policy --compact --bucket "$bucket" --computer-uuid "$uuid")

"$aws" sts get-caller-identity >/dev/null
"$aws" iam get-user --user-name "$user" >/dev/null 2>&1 || "$aws" iam create-user --user-name "$user" --path /arq-lockdown/ >/dev/null
"$aws" iam put-user-policy --user-name "$user" --policy-name arq-lockdown --policy-document "$policy"
key=$("$aws" iam create-access-key --user-name "$user" --query 'AccessKey.[AccessKeyId,SecretAccessKey]' --output text)
export AWS_ACCESS_KEY_ID=${key%%$'\t'*} AWS_SECRET_ACCESS_KEY=${key##*$'\t'}

"$aws" sts get-caller-identity >/dev/null
"$aws" s3api list-buckets >/dev/null
"$aws" s3api get-bucket-location --bucket "$bucket" >/dev/null
"$aws" s3api get-bucket-versioning --bucket "$bucket" >/dev/null
probe=arq-lockdown-probe-$RANDOM
for folder in "$uuid/" "glacier/$uuid/"; do
  "$aws" s3api list-objects --bucket "$bucket" --prefix "$folder" --delimiter / >/dev/null
  "$aws" s3api put-object --bucket "$bucket" --key "$folder$probe" >/dev/null
  "$aws" s3api head-object --bucket "$bucket" --key "$folder$probe" >/dev/null
  "$aws" s3api get-object --bucket "$bucket" --key "$folder$probe" /dev/null >/dev/null
  "$aws" s3api delete-object --bucket "$bucket" --key "$folder$probe" >/dev/null
done
"$aws" s3api list-objects --bucket "$bucket" --delimiter / >/dev/null || true
"$aws" s3api list-objects --bucket "$bucket" --prefix "$other/" --delimiter / >/dev/null || true
"$aws" s3api get-object --bucket "$bucket" --key "$other/computerinfo" /dev/null >/dev/null 2>&1 && exit 1
for folder in "$other/" "glacier/$other/"; do
  "$aws" s3api put-object --bucket "$bucket" --key "$folder$probe" >/dev/null 2>&1 && exit 1
  "$aws" s3api delete-object --bucket "$bucket" --key "$folder$probe" >/dev/null 2>&1 && exit 1
done
python3 -c 'import json, os, sys; json.dump({"Arq S3": {"account": os.environ["AWS_ACCESS_KEY_ID"], "password": os.environ["AWS_SECRET_ACCESS_KEY"]}}, open(sys.argv[1], "w"))' "$store"
