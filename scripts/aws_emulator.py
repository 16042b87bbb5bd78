"""What moto lacks, for arq-lockdown's tests, demo and benches: the AWS behaviours our correctness
rests on, added in the process `moto-fixture.py serve` starts (moto stays the engine).

- **ListBucket's conditions** (`s3:prefix`, `s3:delimiter`, `s3:max-keys`; String*, Numeric*, Bool,
  Null, `…IfExists`, `ForAnyValue:`/`ForAllValues:`), evaluated on every ListObjects (v1 and v2)
  for the signing user's identity policies AND its permissions boundary: both must allow, an
  explicit Deny in either wins (AWS IAM User Guide, "Policy evaluation logic" and "Permissions
  boundaries for IAM entities"). A key absent from the request (no `prefix=` parameter, say)
  makes a condition false, and a negated one (`StringNotLike`…) true ("IAM JSON policy elements:
  Condition operators": "If the key that you specify in a policy condition is not present in the
  request context, the values do not match and the condition is false. If the policy condition
  requires that the key is not matched, such as StringNotLike … the condition is true."). moto
  evaluates no condition but `sts:ExternalId` and ignores boundaries. An operator this does not
  know is answered with HTTP 500 naming it, never guessed.
- **Inactive keys refused**, as AWS refuses them (moto accepts any key it knows): IAM/STS answer
  403 `InvalidClientTokenId`, S3 403 `InvalidAccessKeyId`.
- **Last use recorded AWS's way**: "When an access key is used more than once in a 15-minute
  span, only the first use is recorded" (IAM User Guide, "Getting credential reports"); moto
  records every use to the microsecond.
- **IAM's CreateUser and CreateAccessKey atomic** (moto checks, then inserts, unlocked).
- Per account, settable while it serves (`POST /arq-fixture/settings`): **a new key refused for D
  seconds** (AWS: a new key "might not be immediately usable"), **IAM throttled above R calls a
  second** (HTTP 400 `Throttling`, "Rate exceeded", as IAM answers), and **a clock** that tests
  move forward instead of waiting (`POST /arq-fixture/clock`: `advance_seconds`, or `speed`, a
  multiple of real time): moto's `utcnow` (key creation, last use) and every response's `Date`
  header follow the clock of the account the request acts in. Counts of calls by service, of
  IAM calls by key (`iam:<KEY ID>`), of throttled and refused ones (`GET /arq-fixture/stats?account=A`). Settings are per account so that a test that throttles
  or moves time does it in an account of its own, beside tests sharing the same emulator.

Test tooling only.
"""
import datetime
import email.utils
import json
import re
import threading
import time
from urllib.parse import parse_qs, urlparse

DEFAULT_ACCOUNT = "123456789012"
# AWS records the first use of a key in each 15-minute span (credential reports documentation).
LAST_USE_SPAN = datetime.timedelta(minutes=15)

_request = threading.local()
_lock = threading.Lock()
_accounts = {}


class Account:
    """One account's settings, clock and counters."""

    def __init__(self):
        self.iam_rate = None
        self.new_key_delay = 0.0
        self.tokens = 0.0
        self.refilled = time.monotonic()
        self.anchor_real = time.time()
        self.anchor_emulated = self.anchor_real
        self.speed = 1.0
        self.counts = {}

    def now(self):
        """This account's time, in Unix seconds."""
        return self.anchor_emulated + (time.time() - self.anchor_real) * self.speed

    def set_clock(self, advance=0.0, speed=None):
        now = self.now()
        self.anchor_real, self.anchor_emulated = time.time(), now + advance
        if speed is not None:
            self.speed = float(speed)

    def take_iam_token(self):
        """False when IAM must throttle this call: a token bucket of `iam_rate` a second."""
        if self.iam_rate is None:
            return True
        now = time.monotonic()
        self.tokens = min(self.iam_rate, self.tokens + (now - self.refilled) * self.iam_rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1


def account(account_id):
    with _lock:
        return _accounts.setdefault(account_id, Account())


def current_account():
    return getattr(_request, "account", DEFAULT_ACCOUNT)


def acting_in(account_id):
    """Makes this thread's moto calls (and their times) those of `account_id`."""
    _request.account = account_id


def emulated_utcnow():
    """moto's `utcnow`, on the clock of the account this request acts in (naive UTC, as moto's)."""
    seconds = account(current_account()).now()
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)


# --- Policy evaluation (identity policies and the permissions boundary) ----------------------

class UnsupportedCondition(Exception):
    pass


NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals"}


def _wildcard(pattern, text, ignore_case=False):
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _matches(base, wanted, actual):
    """Whether one policy value matches one request value under the positive form of `base`."""
    positive = {
        "StringEquals": lambda: wanted == actual,
        "StringEqualsIgnoreCase": lambda: wanted.lower() == actual.lower(),
        "StringLike": lambda: _wildcard(wanted, actual),
        "Bool": lambda: wanted.lower() == actual.lower(),
    }
    if base in NEGATED:
        base = base.replace("Not", "", 1)
    if base in positive:
        return positive[base]()
    numeric = {
        "NumericEquals": lambda a, b: a == b,
        "NumericLessThan": lambda a, b: a < b,
        "NumericLessThanEquals": lambda a, b: a <= b,
        "NumericGreaterThan": lambda a, b: a > b,
        "NumericGreaterThanEquals": lambda a, b: a >= b,
    }
    if base in numeric:
        a, b = _number(actual), _number(wanted)
        return a is not None and b is not None and numeric[base](a, b)
    raise UnsupportedCondition(base)


def _operator_holds(operator, key, wanted, context):
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base[: -len("IfExists")] if if_exists else base
    wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
    present = key.lower() in context
    if base == "Null":
        return (not present) == (wanted[0].lower() == "true")
    known = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "Bool", "NumericEquals", "NumericLessThan",
             "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals"} | NEGATED
    if base not in known or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedCondition(operator)
    if not present:
        # IAM docs: absent keys do not match (a negated operator then holds); IfExists holds.
        return if_exists or qualifier == "ForAllValues" or (qualifier != "ForAnyValue" and base in NEGATED)
    actual = context[key.lower()]
    actuals = actual if isinstance(actual, list) else [actual]

    def one(value):
        hit = any(_matches(base, w, value) for w in wanted)
        return not hit if base in NEGATED else hit

    if qualifier == "ForAllValues":
        return all(one(a) for a in actuals)
    return any(one(a) for a in actuals)


def _conditions_hold(block, context):
    return all(
        _operator_holds(operator, key, wanted, context)
        for operator, keys in (block or {}).items()
        for key, wanted in keys.items()
    )


def _listed(value):
    return value if isinstance(value, list) else [value]


def _statement_applies(statement, action, resource, context):
    if "NotAction" in statement:
        if any(_wildcard(a, action, ignore_case=True) for a in _listed(statement["NotAction"])):
            return False
    elif not any(_wildcard(a, action, ignore_case=True) for a in _listed(statement.get("Action", []))):
        return False
    if "NotResource" in statement:
        if any(_wildcard(r, resource) for r in _listed(statement["NotResource"])):
            return False
    elif not any(_wildcard(r, resource) for r in _listed(statement.get("Resource", []))):
        return False
    return _conditions_hold(statement.get("Condition"), context)


def _effects(document, action, resource, context):
    """The effects ("Allow", "Deny") of the statements of `document` that apply."""
    return {
        s.get("Effect")
        for s in _listed(document.get("Statement", []))
        if _statement_applies(s, action, resource, context)
    }


def evaluate(identity, boundary, action, resource, context):
    """'Allowed', 'ImplicitlyDenied' or 'ExplicitlyDenied' (as the tests' independent evaluator
    answers) for identity policies `identity` (documents) within permissions boundary `boundary`
    (a document, or None for no boundary)."""
    context = {k.lower(): v for k, v in context.items()}
    identity_effects = set().union(*(_effects(d, action, resource, context) for d in identity))
    boundary_effects = _effects(boundary, action, resource, context) if boundary is not None else {"Allow"}
    if "Deny" in identity_effects | boundary_effects:
        return "ExplicitlyDenied"
    if "Allow" in identity_effects and "Allow" in boundary_effects:
        return "Allowed"
    return "ImplicitlyDenied"


def listing_context(path):
    """The request context of a ListObjects (v1 or v2) call: each of its parameters that IAM turns
    into a condition key, present only when the request has it (even empty)."""
    query = parse_qs(urlparse(path).query, keep_blank_values=True)
    names = {"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"}
    return {key: query[name][0] for name, key in names.items() if name in query}


def _document(policy):
    """A policy moto holds (inline dict, managed policy object or text), as JSON data."""
    from moto.iam.models import Policy

    if isinstance(policy, Policy):
        text = next(v.document for v in policy.versions if v.is_default)
    elif isinstance(policy, str):
        text = policy
    else:
        text = policy["policy_document"]
    return json.loads(text) if isinstance(text, str) else text


# --- Patching moto -------------------------------------------------------------------------

def install():
    """Patches moto; call before anything imports moto's models."""
    import moto.core.utils

    moto.core.utils.utcnow = emulated_utcnow
    from moto.iam import models
    from moto.iam.access_control import IAMUserAccessKey, S3IAMRequest

    models.utcnow = emulated_utcnow
    _atomic(models.IAMBackend, "create_user")
    _atomic(models.IAMBackend, "create_access_key")
    _record_real_creation(models.User)
    models.mark_account_as_visited = _mark_used_as_aws_records(models)
    _keep_permissions_boundary()
    listing = S3IAMRequest.check_action_permitted

    def check_action_permitted(self, resource):
        if self._action != "s3:ListBucket" or not isinstance(self._access_key, IAMUserAccessKey):
            return listing(self, resource)
        backend = self._access_key.backend
        user = backend.get_user(self._access_key._owner_user_name)
        identity = [_document(p) for p in self._access_key.collect_policies()]
        boundary = None
        if getattr(user, "permissions_boundary_arn", None):
            boundary = _document(backend.get_policy(user.permissions_boundary_arn))
        try:
            decision = evaluate(identity, boundary, self._action, resource, listing_context(self._path))
        except UnsupportedCondition as error:  # never guessed: the caller sees which
            from werkzeug.exceptions import HTTPException

            unsupported = HTTPException(description=f"the emulator does not evaluate the condition operator {error}")
            unsupported.code = 500
            raise unsupported
        if decision != "Allowed":
            self._raise_access_denied()

    S3IAMRequest.check_action_permitted = check_action_permitted


def _atomic(cls, name):
    """AWS's check-then-insert is atomic; moto's is not under a threaded server (two CreateUser
    of one name both succeeded in 1 of 10 rounds of two service instances racing)."""
    lock = threading.Lock()
    original = getattr(cls, name)

    def atomic(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    setattr(cls, name, atomic)


def _keep_permissions_boundary():
    """moto's CreateUser drops `PermissionsBoundary`; AWS keeps it, and it caps the user."""
    from moto.iam.responses import IamResponse

    create_user = IamResponse.create_user

    def create_user_with_boundary(self):
        result = create_user(self)
        boundary = self._get_param("PermissionsBoundary")
        if boundary:
            self.backend.get_user(self._get_param("UserName")).permissions_boundary_arn = boundary
        return result

    IamResponse.create_user = create_user_with_boundary


def _record_real_creation(user_cls):
    """Remembers when (in real time) each key was made, for the new-key delay; keys the fixture
    seeds are old keys."""
    original = user_cls.create_access_key

    def create_access_key(self, *args, **kwargs):
        key = original(self, *args, **kwargs)
        key.real_created = 0.0 if getattr(_request, "seeding", False) else time.monotonic()
        return key

    user_cls.create_access_key = create_access_key


def _mark_used_as_aws_records(models):
    def mark_account_as_visited(account_id, access_key, service, region):
        from moto.utilities.utils import get_partition

        keys = models.iam_backends[account_id][get_partition(region)].access_keys
        key = keys.get(access_key)
        if key is None:
            return
        now = emulated_utcnow()
        last = key.last_used
        if last is not None and now - last.timestamp < LAST_USE_SPAN:
            return
        key.last_used = models.AccessKeyLastUsed(timestamp=now, service=service, region=region)

    return mark_account_as_visited


# --- The WSGI layer in front of moto -------------------------------------------------------

def _signer(environ):
    """The access key id, service and account of a signed request (None where unsigned)."""
    match = re.search(r"Credential=([A-Z0-9]+)/[^/]*/[^/]*/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return None, None, environ.get("HTTP_X_MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT)
    key_id, service = match.groups()
    from moto.iam.models import get_account_id_from

    account_id = environ.get("HTTP_X_MOTO_ACCOUNT_ID") or get_account_id_from(key_id)
    return key_id, service, account_id


def _enforcing():
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _error(start_response, status, service, code, message):
    if service == "s3":
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>arq-fixture</RequestId></ErrorResponse>")
    body = body.encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def refusal(key_id, service, account_id):
    """Why AWS would refuse this key now (inactive, or too new), or None."""
    from moto.iam.models import iam_backends

    key = iam_backends[account_id]["global"].access_keys.get(key_id)
    if key is None:
        return None
    if key.status != "Active":
        return "inactive"
    delay = account(account_id).new_key_delay
    if delay and time.monotonic() - getattr(key, "real_created", 0.0) < delay:
        return "new"
    return None


def front(moto_app):
    """moto's WSGI app behind what AWS does first: the request's account and clock, throttling,
    inactive and too-new keys refused."""

    def app(environ, start_response):
        key_id, service, account_id = _signer(environ)
        acting_in(account_id)
        settings = account(account_id)
        if service:
            with _lock:
                settings.count(service)
        if service == "iam":
            with _lock:
                allowed = settings.take_iam_token()
                if not allowed:
                    settings.count("throttled")
            if not allowed:
                return _error(start_response, "400 Bad Request", service, "Throttling", "Rate exceeded")
            with _lock:
                settings.count(f"iam:{key_id}")
        if key_id and _enforcing():
            why = refusal(key_id, service, account_id)
            if why:
                with _lock:
                    settings.count(f"refused-{why}")
                if service == "s3":
                    return _error(start_response, "403 Forbidden", service, "InvalidAccessKeyId",
                                  "The AWS Access Key Id you provided does not exist in our records.")
                return _error(start_response, "403 Forbidden", service, "InvalidClientTokenId",
                              "The security token included in the request is invalid.")
        return moto_app(environ, start_response)

    return app


def request_handler():
    """moto's request handler with the `Date` header on the clock of the request's account."""
    from moto.server import MotoRequestHandler

    class Handler(MotoRequestHandler):
        def date_time_string(self, timestamp=None):
            return email.utils.formatdate(account(current_account()).now(), usegmt=True)

    return Handler


def fixture_endpoint(path, environ):
    """The fixture's own endpoints for these settings; None for a path that is not one."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        settings = account(body.get("account", DEFAULT_ACCOUNT))
    else:
        body, settings = {}, account(query.get("account", [DEFAULT_ACCOUNT])[0])
    with _lock:
        if path == "/arq-fixture/settings":
            if "iam_calls_per_second" in body:
                rate = body["iam_calls_per_second"]
                settings.iam_rate, settings.tokens = (None, 0.0) if rate is None else (float(rate), float(rate))
            if "new_key_delay_seconds" in body:
                settings.new_key_delay = float(body["new_key_delay_seconds"])
            return {"iam_calls_per_second": settings.iam_rate, "new_key_delay_seconds": settings.new_key_delay}
        if path == "/arq-fixture/clock":
            if body:
                settings.set_clock(float(body.get("advance_seconds", 0)), body.get("speed"))
            return {"now": email.utils.formatdate(settings.now(), usegmt=True), "unix": settings.now()}
        if path == "/arq-fixture/stats":
            return dict(settings.counts)
    return None


def seeding(account_id):
    """For the fixture's seeding: this thread acts in `account_id`, and keys it makes are old."""
    acting_in(account_id)
    _request.seeding = True
