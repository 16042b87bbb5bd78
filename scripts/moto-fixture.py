"""The local AWS for the tests and the demo: moto in server mode, and the data a run needs.

  moto-fixture.py serve
      Starts moto on 127.0.0.1 on a free port, prints "http://127.0.0.1:PORT" on stdout once it
      answers, and stops when its stdin closes (so a test binary that exits takes it along).
  moto-fixture.py seed ENDPOINT BUCKET UUID [UUID ...] [--user=NAME=POLICY_FILE ...]
                    [--boundary=POLICY_FILE]
      With IAM enforcement off: creates an admin user (the fleet's "main keys"), the bucket with an
      Arq-shaped folder for every UUID (including its S3-Glacier folder), one IAM user per --user
      with that inline policy, and the managed policy arq-lockdown-boundary (the permissions
      boundary of scoped users) from --boundary; then switches IAM enforcement on and prints the
      keys as JSON:
      {"admin": {"id": …, "secret": …}, "users": {NAME: {"id": …, "secret": …}}}.

      The result also holds "foreign_admin": an all-powerful user of a second AWS account
      (111111111111), the attacker's own account in the tests.

      moto runs behind scripts/aws_emulator.py: what AWS does and moto does not (ListBucket's
      conditions and permissions boundaries, inactive keys refused, last use recorded once per
      15 minutes, atomic CreateUser), and per account a new-key delay, IAM throttling and a clock.

      While it serves, POST /arq-fixture/seed-fleet (JSON, see seed_fleet) seeds computers straight
      into moto's backends, bypassing IAM enforcement and HTTP (thousands in seconds); GET
      /arq-fixture/state?bucket=B[&account=A] dumps every scoped user and B's object keys (see
      state); POST /arq-fixture/settings {"account", "iam_calls_per_second", "new_key_delay_seconds"}
      and POST /arq-fixture/clock {"account", "advance_seconds" | "speed"} set an account's AWS
      behaviour and clock (GET /arq-fixture/clock?account=A reads it), GET
      /arq-fixture/stats?account=A counts its calls by service, throttled and refused.
  moto-fixture.py make-user ENDPOINT PATH NAME
      Creates user NAME under PATH with one access key, in the account of the keys in
      AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and prints the key as JSON {"id", "secret"}.
  moto-fixture.py inspect ENDPOINT USER
      Prints what IAM holds for USER as JSON: {"exists": …, "arn": …, "user_id": …, "keys": […],
      "key_status": {ID: "Active" | "Inactive"}, "policies": {NAME: DOCUMENT}, "tags": {…}}. Admin keys come from AWS_ACCESS_KEY_ID and
      AWS_SECRET_ACCESS_KEY.
  moto-fixture.py list-objects ENDPOINT BUCKET
      Prints every object key in BUCKET as a JSON list (admin keys as for inspect).
  moto-fixture.py add-key ENDPOINT USER
      Creates one more access key for USER (as a run that died after CreateAccessKey leaves one).
  moto-fixture.py grant ENDPOINT USER POLICY_FILE
      Adds POLICY_FILE as a second inline policy "extra" to USER (admin keys as for inspect).

Test and demo tooling only: the secrets it prints are the emulator's.
"""
import json
import os
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aws_emulator  # noqa: E402  (beside this script)

FOREIGN_ACCOUNT = "111111111111"


def serve():
    import logging
    import socket

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def stop_when_parent_goes():
        sys.stdin.read()
        os._exit(0)

    def announce_when_ready():
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as response:
                    if response.status == 200:
                        print(url, flush=True)
                        return
            except OSError:
                threading.Event().wait(0.05)
        os._exit(1)

    threading.Thread(target=stop_when_parent_goes, daemon=True).start()
    threading.Thread(target=announce_when_ready, daemon=True).start()
    # moto's own server (as moto_main runs it), with what AWS does and moto does not
    # (scripts/aws_emulator.py) and the fixture's paths in front of it.
    aws_emulator.install()
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ["MOTO_PORT"] = str(port)
    moto_app = aws_emulator.front(DomainDispatcherApplication(create_backend_app))

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/arq-fixture/"):
            return moto_app(environ, start_response)
        try:
            if path == "/arq-fixture/seed-fleet":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                answer = seed_fleet(json.loads(environ["wsgi.input"].read(length)))
            elif path == "/arq-fixture/state":
                from urllib.parse import parse_qs

                query = parse_qs(environ.get("QUERY_STRING", ""))
                answer = state(query["bucket"][0], query.get("account", ["123456789012"])[0])
            else:
                answer = aws_emulator.fixture_endpoint(path, environ)
                if answer is None:
                    raise KeyError(path)
            status, body = "200 OK", json.dumps(answer).encode()
        except Exception as error:  # the test sees the reason
            status, body = "500 Internal Server Error", repr(error).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    run_simple("127.0.0.1", port, app, threaded=True, request_handler=aws_emulator.request_handler())


ADMIN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def backends(account):
    from moto.backends import get_backend

    return get_backend("iam")[account]["global"], get_backend("s3")[account]["global"]


def seed_fleet(spec):
    """Seeds, in moto's backends directly (no HTTP, no enforcement):
    {"bucket": B, "region": R ("us-east-1", default), "account": "123456789012" (default),
     "managed_policies": {NAME: DOCUMENT}  -- managed policies (a permissions boundary, say),
     "admins": [NAME or {"name", "policy", "boundary": ARN}, …]  -- users (all-powerful unless a
                   policy is given), one key each (returned),
     "computers": [{"uuid": U,
                    "computerinfo": TEXT or null (no object),  "data": bool (U/objects/0001),
                    "glacier": bool (glacier/U/objects/0001),
                    "user": null or {"tags": {K: V}, "policies": {NAME: DOCUMENT},
                                     "keys": [{"active": bool, "created_days_ago": N,
                                               "last_used_days_ago": N or null}]}}]}
    and answers {"admins": {NAME: {"id", "secret"}}, "keys": {U: [key id, …]}}."""
    from datetime import timedelta

    from moto.core.utils import utcnow
    from moto.iam.models import AccessKeyLastUsed

    account = spec.get("account", "123456789012")
    aws_emulator.seeding(account)
    iam, s3 = backends(account)
    bucket = spec["bucket"]
    if bucket not in s3.buckets:
        s3.create_bucket(bucket, spec.get("region", "us-east-1"))
    now = utcnow()
    result = {"admins": {}, "keys": {}}
    for name, document in spec.get("managed_policies", {}).items():
        iam.create_policy("", "/", document, name, [])
    for admin in spec.get("admins", []):
        admin = {"name": admin} if isinstance(admin, str) else admin
        name = admin["name"]
        user = iam.create_user("us-east-1", name)
        if admin.get("boundary"):
            user.permissions_boundary_arn = admin["boundary"]
        iam.put_user_policy(name, "policy", admin.get("policy", ADMIN_POLICY))
        key = iam.create_access_key(name)
        result["admins"][name] = {"id": key.access_key_id, "secret": key.secret_access_key}
    for computer in spec.get("computers", []):
        uuid = computer["uuid"]
        if computer.get("computerinfo") is not None:
            s3.put_object(bucket, f"{uuid}/computerinfo", computer["computerinfo"].encode())
        if computer.get("data"):
            s3.put_object(bucket, f"{uuid}/objects/0001", b"data")
        if computer.get("glacier"):
            s3.put_object(bucket, f"glacier/{uuid}/objects/0001", b"glacier data")
        user = computer.get("user")
        if not user:
            continue
        name = f"arq-{uuid}"
        tags = [{"Key": k, "Value": v} for k, v in user.get("tags", {}).items()]
        iam.create_user("us-east-1", name, "/arq-lockdown/", tags)
        for policy_name, document in user.get("policies", {}).items():
            iam.put_user_policy(name, policy_name, document)
        ids = []
        for spec_key in user.get("keys", []):
            key = iam.create_access_key(name, status="Active" if spec_key.get("active", True) else "Inactive")
            key.create_date = now - timedelta(days=spec_key.get("created_days_ago", 0))
            if spec_key.get("last_used_days_ago") is not None:
                key.last_used = AccessKeyLastUsed(
                    now - timedelta(days=spec_key["last_used_days_ago"]), "s3", "us-east-1"
                )
            ids.append(key.access_key_id)
        result["keys"][uuid] = ids
    return result


def state(bucket, account="123456789012"):
    """Every user under /arq-lockdown/ (tags, inline policies, attached policies, groups, keys with
    status) and every object key in `bucket`: what a test compares before and after a run."""
    iam, s3 = backends(account)
    users = {}
    for user in list(iam.users.values()):
        if user.path != "/arq-lockdown/":
            continue
        users[user.name] = {
            "tags": {t["Key"]: t["Value"] for t in iam.tagger.list_tags_for_resource(user.arn)["Tags"]},
            "policies": {name: json.loads(doc) for name, doc in user.policies.items()},
            "attached": sorted(user.managed_policies),
            "groups": sorted(g.name for g in iam.groups.values() if user in g.users),
            "keys": {k.access_key_id: k.status for k in user.access_keys},
        }
    objects = sorted(s3.buckets[bucket].keys.keys()) if bucket in s3.buckets else []
    return {"users": users, "objects": objects}


def set_enforcement(endpoint, on):
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0" if on else b"inf",
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    urllib.request.urlopen(request).read()


def seed(endpoint, bucket, uuids, users, boundary):
    import boto3

    def client(service, key=None):
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if key:
            credentials = {"aws_access_key_id": key["id"], "aws_secret_access_key": key["secret"]}
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", **credentials)

    set_enforcement(endpoint, False)
    iam = client("iam")

    def user_with_policy(name, policy):
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    admin_policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    result = {"admin": user_with_policy("fleet-admin", admin_policy), "users": {}}
    foreign = client("iam")
    foreign.meta.events.register(
        "before-sign.*.*", lambda request, **_: request.headers.__setitem__("x-moto-account-id", FOREIGN_ACCOUNT)
    )
    foreign.create_user(UserName="attacker")
    foreign.put_user_policy(UserName="attacker", PolicyName="policy", PolicyDocument=admin_policy)
    key = foreign.create_access_key(UserName="attacker")["AccessKey"]
    result["foreign_admin"] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    for name, policy_file in users:
        with open(policy_file) as f:
            compact = json.dumps(json.load(f), separators=(",", ":"))
        result["users"][name] = user_with_policy(name, compact)

    if boundary:
        with open(boundary) as f:
            compact = json.dumps(json.load(f), separators=(",", ":"))
        iam.create_policy(PolicyName="arq-lockdown-boundary", PolicyDocument=compact)

    s3 = client("s3")
    s3.create_bucket(Bucket=bucket)
    for uuid in uuids:
        for key in ["computerinfo", "encryptionv3.dat", "buckets/0C4B5A3E-1F2A-4C3B-9D8E-7F6A5B4C3D2E",
                    "objects/6e0b1c1d7c9f0a5c0e1f2a3b4c5d6e7f8a9b0c1d", "packsets/Default-trees/0001.pack"]:
            s3.put_object(Bucket=bucket, Key=f"{uuid}/{key}", Body=f"{uuid} {key}".encode())
        s3.put_object(Bucket=bucket, Key=f"glacier/{uuid}/objects/0001", Body=b"glacier data")
    set_enforcement(endpoint, True)
    json.dump(result, sys.stdout)
    print()


def admin_iam(endpoint):
    import boto3

    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")


def inspect(endpoint, user):
    iam = admin_iam(endpoint)
    try:
        found = iam.get_user(UserName=user)["User"]
        tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
    except iam.exceptions.NoSuchEntityException:
        json.dump({"exists": False, "keys": [], "policies": {}, "tags": {}}, sys.stdout)
        return
    listed = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    keys = [k["AccessKeyId"] for k in listed]
    policies = {
        name: iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]
        for name in iam.list_user_policies(UserName=user)["PolicyNames"]
    }
    json.dump(
        {"exists": True, "arn": found["Arn"], "user_id": found["UserId"], "keys": keys,
         "key_status": {k["AccessKeyId"]: k["Status"] for k in listed}, "policies": policies, "tags": tags},
        sys.stdout,
    )


def grant(endpoint, user, policy_file):
    with open(policy_file) as f:
        compact = json.dumps(json.load(f), separators=(",", ":"))
    admin_iam(endpoint).put_user_policy(UserName=user, PolicyName="extra", PolicyDocument=compact)


def add_key(endpoint, user):
    admin_iam(endpoint).create_access_key(UserName=user)


def list_objects(endpoint, bucket):
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = []
    for page in s3.get_paginator("list_objects").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    json.dump(keys, sys.stdout)


def make_user(endpoint, path, name):
    iam = admin_iam(endpoint)
    iam.create_user(UserName=name, Path=path)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    json.dump({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}, sys.stdout)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve()
    elif command == "inspect":
        inspect(*args)
    elif command == "add-key":
        add_key(*args)
    elif command == "list-objects":
        list_objects(*args)
    elif command == "make-user":
        make_user(*args)
    elif command == "grant":
        grant(*args)
    elif command == "seed":
        positional = [a for a in args if not a.startswith("--")]
        users = [tuple(a.split("=", 1)[1].split("=", 1)) for a in args if a.startswith("--user=")]
        boundary = next((a.split("=", 1)[1] for a in args if a.startswith("--boundary=")), None)
        seed(positional[0], positional[1], positional[2:], users, boundary)
    else:
        sys.exit(f"usage: {sys.argv[0]} serve | seed … | inspect … | grant … (see the docstring)")
