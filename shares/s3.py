"""All S3 access lives here. Views and tasks never import boto3.

One long-lived client per bucket configuration (a new client costs 100–450 ms),
built from a django-storages S3Storage so that the storage settings apply; every
failure becomes an S3Error with a plain message and an HTTP status to answer with.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.parsers import ResponseParserFactory
from botocore.utils import parse_timestamp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from django.conf import settings
from storages.backends.s3 import S3Storage

from shares import sigv4

log = logging.getLogger(__name__)

WEEK = 604800


class S3Error(Exception):
    """An S3 failure, worded for a person. `status` is what a view should answer."""

    def __init__(self, message: str, *, status: int = 502, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class BucketConfig:
    name: str
    region: str = ""
    endpoint_url: str = ""
    public_endpoint_url: str = ""
    addressing_style: str = "auto"
    profile: str = ""

    @classmethod
    def from_bucket(cls, bucket: Any) -> "BucketConfig":
        return cls(
            name=bucket.name,
            region=bucket.region,
            endpoint_url=bucket.endpoint_url,
            public_endpoint_url=bucket.public_endpoint_url,
            addressing_style=bucket.addressing_style,
            profile=bucket.aws_profile,
        )

    def resolved_style(self) -> str:
        if self.addressing_style in ("virtual", "path"):
            return self.addressing_style
        # Dotted names break the *.s3 wildcard certificate under virtual hosting;
        # S3-compatible stores mostly want path style.
        if "." in self.name or self.endpoint_url:
            return "path"
        return "virtual"


def aws_endpoint(region: str) -> str:
    """The regional S3 endpoint for any partition. Never the global host with a
    regional scope (boto3 #1982, #2187, #3015)."""
    if region.startswith("cn-"):
        suffix = "amazonaws.com.cn"
    elif region.startswith("us-iso-"):
        suffix = "c2s.ic.gov"
    elif region.startswith("us-isob-"):
        suffix = "sc2s.sgov.gov"
    else:
        suffix = "amazonaws.com"
    return f"https://s3.{region}.{suffix}"


@dataclass
class ObjectEntry:
    key: str
    name: str
    size: int
    last_modified: dt.datetime | None
    etag: str = ""
    storage_class: str = ""


@dataclass
class ListPage:
    prefix: str
    folders: list[str] = field(default_factory=list)  # full prefixes, ending in "/"
    files: list[ObjectEntry] = field(default_factory=list)
    next_token: str | None = None


@dataclass
class ObjectInfo:
    key: str
    size: int
    content_type: str
    etag: str
    storage_class: str
    last_modified: dt.datetime | None
    metadata: dict[str, str]


_lock = threading.Lock()
_clients: dict[tuple[BucketConfig, bool], Any] = {}


def _client_config(style: str) -> Config:
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": style},
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        retries={"max_attempts": settings.S3_MAX_ATTEMPTS, "mode": "standard"},
    )


def storage_for(config: BucketConfig, *, public: bool = False) -> S3Storage:
    """A django-storages storage for the bucket. `public` signs for the host a
    browser reaches (public_endpoint_url), which is the host that gets signed."""
    endpoint = (config.public_endpoint_url if public else "") or config.endpoint_url
    region = config.region or ("us-east-1" if endpoint else "")
    if not endpoint and region:
        endpoint = aws_endpoint(region)
    return S3Storage(
        bucket_name=config.name,
        region_name=region or None,
        endpoint_url=endpoint or None,
        addressing_style=config.resolved_style(),
        signature_version="s3v4",
        session_profile=config.profile or None,
        client_config=_client_config(config.resolved_style()),
        querystring_auth=True,
    )


def client_for(config: BucketConfig, *, public: bool = False):
    """The cached boto3 client for a configuration. boto3 clients are thread-safe,
    so one serves every thread (S3Storage alone would build one per thread)."""
    cache_key = (config, public)
    client = _clients.get(cache_key)
    if client is None:
        with _lock:
            client = _clients.get(cache_key)
            if client is None:
                try:
                    client = storage_for(config, public=public).connection.meta.client
                except ProfileNotFound:
                    raise S3Error(
                        f"The AWS profile “{config.profile}” is not configured on the portal's server.", status=502
                    ) from None
                _use_fast_timestamps(client)
                _clients[cache_key] = client
    return client


def _fast_timestamp(value: Any) -> dt.datetime:
    """S3's ISO-8601 timestamps ("2026-12-03T16:00:00.000Z") through
    datetime.fromisoformat; anything else (RFC 822 headers, epochs) through
    botocore's own parser. botocore's default goes through dateutil, ~60 µs a
    timestamp: a third of the CPU of a 100-key listing."""
    if isinstance(value, str) and len(value) >= 20 and value[10:11] == "T":
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    return parse_timestamp(value)


def _use_fast_timestamps(client: Any) -> None:
    """Give this one client a response parser factory with _fast_timestamp. The
    endpoint builds a parser from it per request; the attribute is private, so
    a botocore without it just keeps the default parser."""
    endpoint = getattr(client, "_endpoint", None)
    if endpoint is None or not hasattr(endpoint, "_response_parser_factory"):
        return
    factory = ResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=_fast_timestamp)
    endpoint._response_parser_factory = factory  # noqa: SLF001


def clear_clients() -> None:
    with _lock:
        _clients.clear()
        _presigners.clear()
    sigv4.clear_signing_keys()
    with _chain_lock:
        _chain_credentials.clear()


def _translate(exc: Exception, config: BucketConfig, what: str) -> S3Error:
    """Turn a botocore failure into a message a person can act on. Logged without
    URLs or credentials."""
    bucket = config.name
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        log.warning("S3 %s failed for bucket %s: %s (HTTP %s)", what, bucket, code, status)
        if code in ("NoSuchBucket",) or (code == "404" and what == "head bucket"):
            return S3Error(f"The bucket “{bucket}” does not exist. Check its name in the bucket registry.", status=404, code=code)
        if code in ("NoSuchKey", "404", "NotFound"):
            return S3Error("That object does not exist (it may have been deleted or renamed).", status=404, code=code)
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return S3Error(
                f"S3 denied access to “{bucket}”. Check the portal's AWS credentials and the bucket policy.",
                status=403 if code in ("AccessDenied", "403", "Forbidden") else 502,
                code=code,
            )
        if code in ("AuthorizationHeaderMalformed", "PermanentRedirect", "301", "IllegalLocationConstraintException"):
            return S3Error(
                f"The bucket “{bucket}” is in another region than the one configured. Clear its region in the registry so the portal can learn it.",
                status=502,
                code=code,
            )
        if code in ("InvalidArgument", "InvalidObjectName", "KeyTooLongError", "InvalidToken", "400"):
            # A stale or tampered continuation token, or a key this store refuses.
            return S3Error(
                f"S3 refused the request for “{bucket}” as invalid ({code}). If you followed an old link, start again from the folder.",
                status=400,
                code=code,
            )
        if code in ("ExpiredToken", "TokenRefreshRequired", "RequestTimeTooSkewed"):
            return S3Error("The portal's AWS credentials have expired or its clock is off. Ask an operator to check.", status=502, code=code)
        return S3Error(f"S3 answered an error ({code or status}) for “{bucket}”.", status=502, code=code)
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        log.warning("S3 %s timed out for bucket %s", what, bucket)
        return S3Error("The S3 endpoint did not answer in time. Try again, or ask an operator to check the endpoint.", status=504, code="Timeout")
    if isinstance(exc, EndpointConnectionError):
        log.warning("S3 %s: endpoint unreachable for bucket %s", what, bucket)
        return S3Error("The S3 endpoint cannot be reached. Check the endpoint URL and that the server is running.", status=502, code="EndpointUnreachable")
    if isinstance(exc, NoCredentialsError):
        log.warning("S3 %s: no credentials for bucket %s", what, bucket)
        return S3Error("The portal has no AWS credentials. Configure them on the server (environment, profile or instance role).", status=502, code="NoCredentials")
    log.warning("S3 %s failed for bucket %s: %s", what, bucket, type(exc).__name__)
    return S3Error(f"S3 could not be reached for “{bucket}” ({type(exc).__name__}).", status=502, code=type(exc).__name__)


def detect_region(config: BucketConfig) -> str:
    """The bucket's own region, from HeadBucket's x-amz-bucket-region header
    (present on 200, 301 and 403 answers alike)."""
    probe = BucketConfig(name=config.name, region=config.region or "us-east-1", endpoint_url=config.endpoint_url,
                         addressing_style=config.addressing_style, profile=config.profile)
    client = client_for(probe)
    try:
        response = client.head_bucket(Bucket=config.name)
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except ClientError as exc:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if not headers.get("x-amz-bucket-region"):
            raise _translate(exc, config, "head bucket") from None
    except BotoCoreError as exc:
        raise _translate(exc, config, "head bucket") from None
    return headers.get("x-amz-bucket-region") or probe.region


def head_bucket(config: BucketConfig) -> None:
    try:
        client_for(config).head_bucket(Bucket=config.name)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, config, "head bucket") from None


def list_page(
    config: BucketConfig, *, prefix: str = "", token: str | None = None, page_size: int = 100, name_prefix: str = ""
) -> ListPage:
    """One ListObjectsV2 call: one page of one folder. `name_prefix` narrows by
    the start of the name, server-side (S3 Prefix)."""
    params: dict[str, Any] = {
        "Bucket": config.name,
        "Prefix": prefix + name_prefix,
        "Delimiter": "/",
        "MaxKeys": max(1, min(page_size, 1000)),
    }
    if token:
        params["ContinuationToken"] = token
    try:
        response = client_for(config).list_objects_v2(**params)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, config, "list") from None
    page = ListPage(prefix=prefix)
    page.folders = [p["Prefix"] for p in response.get("CommonPrefixes", [])]
    for item in response.get("Contents", []):
        key = item["Key"]
        page.files.append(
            ObjectEntry(
                key=key,
                name=key[len(prefix):],
                size=item.get("Size", 0),
                last_modified=item.get("LastModified"),
                etag=str(item.get("ETag", "")).strip('"'),
                storage_class=item.get("StorageClass", ""),
            )
        )
    if response.get("IsTruncated"):
        page.next_token = response.get("NextContinuationToken")
    return page


def head_object(config: BucketConfig, key: str) -> ObjectInfo:
    try:
        response = client_for(config).head_object(Bucket=config.name, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, config, "head object") from None
    return ObjectInfo(
        key=key,
        size=response.get("ContentLength", 0),
        content_type=response.get("ContentType", ""),
        etag=str(response.get("ETag", "")).strip('"'),
        storage_class=response.get("StorageClass", "STANDARD"),
        last_modified=response.get("LastModified"),
        metadata=dict(response.get("Metadata", {})),
    )


def content_disposition(key: str) -> str:
    """attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded (RFC 6266/5987)."""
    name = key.rsplit("/", 1)[-1] or "download"
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name) or "download"
    encoded = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def presign_get(config: BucketConfig, key: str, *, expires_in: int, attachment: bool = True) -> str:
    """A SigV4 presigned GET URL for the very key given (never normalised).

    Signed locally by shares/sigv4.py when this client's template is verified
    (the same URL botocore makes, at a fraction of the cost), else by botocore."""
    if not 1 <= expires_in <= WEEK:
        raise S3Error("A presigned URL lives 1 to 604800 seconds.", status=400, code="InvalidExpiry")
    disposition = content_disposition(key) if attachment else None
    try:
        client = client_for(config, public=True)
        url = _fast_presign(config, client, key, expires_in, disposition)
        if url is None:
            url = _botocore_presign(client, config.name, key, expires_in, disposition)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, config, "presign") from None
    return url


def _botocore_presign(client: Any, bucket: str, key: str, expires_in: int, disposition: str | None) -> str:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if disposition is not None:
        params["ResponseContentDisposition"] = disposition
    return _aws_cli_order(client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))


# config -> (the public client it was learned from, its verified template or
# None: botocore signs for it). Cleared with the clients.
_presigners: dict[BucketConfig, tuple[Any, sigv4.Template | None]] = {}


def _client_credentials(client: Any) -> Any:
    return getattr(getattr(client, "_request_signer", None), "_credentials", None)  # noqa: SLF001 – botocore keeps it here


def _fast_presign(config: BucketConfig, client: Any, key: str, expires_in: int, disposition: str | None) -> str | None:
    """The local signer's URL, or None when botocore must sign (no credentials,
    a template that did not reproduce botocore's URL, unusual input)."""
    if type(key) is not str or not key or type(expires_in) is not int:
        return None  # botocore validates (empty key) or formats these itself
    entry = _presigners.get(config)
    if entry is None or entry[0] is not client:
        template = _learn_template(config, client)
        if template is _UNSURE:
            return None
        entry = (client, template)
        if _clients.get((config, True)) is client:  # not cleared meanwhile
            _presigners[config] = entry
    template = entry[1]
    if template is None:
        return None
    # The client's own credentials object, every call: refreshable ones refresh.
    credentials = sigv4.frozen_credentials(_client_credentials(client))
    if credentials is None:
        return None
    access_key, secret_key, token = credentials
    try:
        return template.presign(key, expires_in=expires_in, disposition=disposition, access_key=access_key,
                                secret_key=secret_key, token=token, timestamp=sigv4.amz_date())
    except UnicodeEncodeError:
        return None  # a lone surrogate: botocore raises its own error for it


_UNSURE: Any = object()  # could not decide this time (credentials changed meanwhile, a botocore error)


def _learn_template(config: BucketConfig, client: Any) -> sigv4.Template | None:
    """Learn the template from URLs botocore signs for a probe key, with and
    without a disposition, and keep it only if it re-signs both byte for byte
    (same instant, same credentials). None: botocore signs for this client."""
    if _client_credentials(client) is None:
        return None  # fixed at client creation: botocore's NoCredentialsError, every time
    template = None
    for disposition in (content_disposition(sigv4.PROBE_KEY), None):
        try:
            expected = _botocore_presign(client, config.name, sigv4.PROBE_KEY, 3600, disposition)
            credentials = sigv4.frozen_credentials(_client_credentials(client))
        except (ClientError, BotoCoreError):
            return _UNSURE
        try:
            if template is None:
                template = sigv4.Template.from_url(expected, sigv4.PROBE_KEY)
        except sigv4.TemplateError as exc:
            log.warning("S3 presign for bucket %s: botocore's URL has an unexpected shape (%s); "
                        "botocore keeps signing", config.name, exc)
            return None
        query = dict(segment.partition("=")[::2] for segment in expected.partition("?")[2].split("&"))
        if credentials is None:
            return None
        access_key, secret_key, token = credentials
        signed_by = urllib.parse.unquote(query["X-Amz-Credential"]).rsplit("/", 4)[0]
        signed_token = urllib.parse.unquote(query.get("X-Amz-Security-Token", "")) or None
        if (signed_by, signed_token) != (access_key, token):
            return _UNSURE  # refreshed between botocore's signature and ours
        mine = template.presign(sigv4.PROBE_KEY, expires_in=3600, disposition=disposition, access_key=access_key,
                                secret_key=secret_key, token=token, timestamp=query["X-Amz-Date"])
        if mine != expected:
            log.warning("S3 presign for bucket %s: the local signer does not reproduce botocore's URL; "
                        "botocore keeps signing", config.name)
            return None
    return template


def _aws_cli_order(url: str) -> str:
    """Put the query in the order `aws s3 presign` prints (X-Amz-Algorithm first,
    the signature last), so links read like the ones people know. SigV4 signs
    the *sorted* query, so the order is free; segments are moved, never re-encoded."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    segments = query.split("&")

    def rank(segment: str) -> int:
        name = segment.split("=", 1)[0]
        if name == "X-Amz-Signature":
            return 3
        if name == "X-Amz-Security-Token":
            return 2
        return 0 if name.startswith("X-Amz-") else 1

    return base + "?" + "&".join(sorted(segments, key=rank))  # sorted() is stable


_chain_lock = threading.Lock()
_chain_credentials: dict[str, Any] = {}


def _standard_chain_credentials(profile: str):
    """The credentials the standard AWS chain resolves (environment, profile,
    SSO, role, instance metadata), cached per profile. Refreshable ones keep
    their own expiry and refresh themselves."""
    with _chain_lock:
        if profile not in _chain_credentials:
            import botocore.session

            session = botocore.session.Session(profile=profile or None)
            try:
                _chain_credentials[profile] = session.get_credentials()
            except (BotoCoreError, ProfileNotFound):
                _chain_credentials[profile] = None
        return _chain_credentials[profile]


def credential_expiry(config: BucketConfig) -> tuple[bool, dt.datetime | None]:
    """(temporary?, when the signing credentials end, if known). A presigned URL
    dies with the credentials that signed it (aws-cli #5076)."""
    credentials = _client_credentials(client_for(config, public=True))
    if credentials is None:
        return False, None
    expiry = getattr(credentials, "_expiry_time", None)
    frozen = credentials.get_frozen_credentials() if hasattr(credentials, "get_frozen_credentials") else credentials
    temporary = bool(getattr(frozen, "token", None)) or expiry is not None
    if temporary and expiry is None:
        # django-storages hands botocore the environment's keys as explicit
        # credentials, which drops AWS_CREDENTIAL_EXPIRATION (and any refresh
        # metadata). Ask the standard chain for the same key's expiry.
        chain = _standard_chain_credentials(config.profile)
        chain_expiry = getattr(chain, "_expiry_time", None) if chain is not None else None
        if chain_expiry is not None and chain.get_frozen_credentials().access_key == frozen.access_key:
            expiry = chain_expiry
    if expiry is not None and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.timezone.utc)
    return temporary, expiry
