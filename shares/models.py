from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

WEEK = 604800

bucket_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$",
    "Bucket names are 3–63 characters: lowercase letters, digits, dots and hyphens.",
)


class Bucket(models.Model):
    """An S3 bucket registered by an admin. Credentials are never stored here:
    they come from the standard AWS chain, or the named profile."""

    class Addressing(models.TextChoices):
        AUTO = "auto", "Auto (virtual-hosted on AWS; path style for dotted names and custom endpoints)"
        VIRTUAL = "virtual", "Virtual-hosted"
        PATH = "path", "Path style"

    name = models.CharField(max_length=63, unique=True, validators=[bucket_name_validator])
    label = models.CharField(max_length=200, blank=True)
    region = models.CharField(
        max_length=32,
        blank=True,
        help_text="Learned from S3 (HeadBucket) when left blank; set it to override.",
    )
    region_learned = models.BooleanField(default=False, editable=False)
    endpoint_url = models.URLField(blank=True, help_text="For S3-compatible stores (MinIO, Ceph, R2). Blank for AWS.")
    public_endpoint_url = models.URLField(
        blank=True, help_text="The endpoint a browser reaches, if it differs. This host is the one that gets signed."
    )
    addressing_style = models.CharField(max_length=8, choices=Addressing.choices, default=Addressing.AUTO)
    aws_profile = models.CharField(max_length=128, blank=True, help_text="Named AWS profile; blank for the default chain.")
    enabled = models.BooleanField(default=True)
    default_expiry = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1), MaxValueValidator(WEEK)], help_text="Seconds."
    )
    max_expiry = models.PositiveIntegerField(
        default=WEEK, validators=[MinValueValidator(1)], help_text="Seconds. Direct links are capped at 604800 by S3."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["label", "name"]

    def __str__(self) -> str:
        return self.label or self.name

    @property
    def display_name(self) -> str:
        return self.label or self.name


class Grant(models.Model):
    """A group or a user may see (and maybe share) a bucket, or a folder of it."""

    bucket = models.ForeignKey(Bucket, on_delete=models.CASCADE, related_name="grants")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="bucket_grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="bucket_grants"
    )
    prefix = models.CharField(
        max_length=1024, blank=True, help_text='A folder such as "team-a/"; blank for the whole bucket.'
    )
    can_share = models.BooleanField(default=True)
    max_expiry = models.PositiveIntegerField(
        default=WEEK, validators=[MinValueValidator(1)], help_text="Longest link this grant may create, in seconds."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(group__isnull=False, user__isnull=True) | models.Q(group__isnull=True, user__isnull=False)),
                name="grant_has_group_or_user",
            )
        ]

    def __str__(self) -> str:
        who = f"group {self.group}" if self.group_id else f"user {self.user}"
        return f"{who} → {self.bucket.name}/{self.prefix}"


class Share(models.Model):
    class Kind(models.TextChoices):
        PORTAL = "portal", "Portal link"
        DIRECT = "direct", "Direct link"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"
        USED_UP = "used_up", "Used up"

    bucket = models.ForeignKey(Bucket, null=True, blank=True, on_delete=models.SET_NULL, related_name="shares")
    bucket_name = models.CharField(max_length=63)  # kept even for unregistered buckets (CLI) and deleted ones
    key = models.TextField()
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PORTAL)
    # Not indexed: every query by status also names the creator (the index below)
    # or the expiry (tidy_shares), and each index costs every share's INSERT.
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(  # indexed by (created_by, -created_at) below
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="shares",
        db_index=False,
    )
    created_by_name = models.CharField(max_length=150)  # snapshot: "cli" for the CLI without --as
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_in = models.PositiveIntegerField()  # requested lifetime, seconds
    requested_expires_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)  # real expiry: the earlier of requested and credential end
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(  # indexed where set (Meta): NULL in almost every row
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False,
    )
    download_count = models.PositiveIntegerField(default=0)
    max_downloads = models.PositiveIntegerField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)
    # Portal links: the token is HMAC(LINK_TOKEN_KEY, token_nonce); only its
    # SHA-256 is indexed. A copy of the database alone yields no working link.
    token_nonce = models.CharField(max_length=64, blank=True)
    # Unique through a constraint, not unique=True: on PostgreSQL that would add a
    # second (LIKE) index that no query uses.
    token_digest = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_by", "-created_at"]),
            # Only deleting a user looks shares up by revoker (SET NULL); a partial
            # index serves that lookup without an entry for every unrevoked share.
            models.Index(fields=["revoked_by"], condition=models.Q(revoked_by__isnull=False),
                         name="shares_share_revoked_by_idx"),
        ]
        constraints = [models.UniqueConstraint(fields=["token_digest"], name="shares_share_token_digest_unique")]

    def __str__(self) -> str:
        return f"{self.bucket_name}/{self.key} ({self.kind})"

    def current_status(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at:
            return self.Status.REVOKED
        if self.max_downloads is not None and self.download_count >= self.max_downloads:
            return self.Status.USED_UP
        if self.expires_at <= now:
            return self.Status.EXPIRED
        return self.Status.ACTIVE


class ApiToken(models.Model):
    """A personal API token. Shown once; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)  # first characters, to tell tokens apart on screen
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditEvent(models.Model):
    """One audited action. Append-only: the database refuses UPDATE and DELETE
    (triggers), except through the retention purge.

    actor/share are plain ids, not foreign keys with constraints: deleting a user
    or a share must not touch (SET NULL) an event row."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(  # indexed by (actor, -id) below
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40)
    bucket = models.CharField(max_length=63, blank=True)
    key = models.TextField(blank=True)
    share = models.ForeignKey(  # indexed by (share, -id) below
        Share, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
        related_name="events",
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["action", "-id"]),
            models.Index(fields=["actor", "-id"]),
            models.Index(fields=["bucket", "-id"]),
            models.Index(fields=["share", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action}"


class AuditSeal(models.Model):
    """A digest over one closed period of events, chained to the previous seal
    (like CloudTrail digest files). HMAC keyed by AUDIT_HMAC_KEY, outside the database."""

    period_start = models.DateTimeField()
    period_end = models.DateTimeField(unique=True)
    first_event_id = models.BigIntegerField(null=True)
    last_event_id = models.BigIntegerField(null=True)
    event_count = models.PositiveIntegerField()
    event_ids = models.TextField(blank=True)  # compact id list, to name removed/inserted events
    events_digest = models.CharField(max_length=64)
    previous_digest = models.CharField(max_length=64, blank=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["period_end"]


class LinkRateCounter(models.Model):
    """Portal-link visits per client IP per one-minute window, when the rate limit
    counts in the database (the embedded default; shares/ratelimit.py). One row
    per (minute, client); tidy_shares deletes finished windows.

    The primary key is the pair itself: the upsert's conflict target, and, led by
    the minute, the index that the cleanup's range delete walks."""

    pk = models.CompositePrimaryKey("minute", "client")
    minute = models.IntegerField()  # Unix time // 60
    client = models.CharField(max_length=64)  # the IP, or a digest of an over-long forwarded value
    visits = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.client} @ {self.minute}: {self.visits}"
