"""Demo data for `make run`: the demo admin, and the bucket `portal-demo` on the
local S3 server with sample files generated in code (no binary files in git).

Only scripts/run.py calls this module; nothing in the portal depends on it."""
from __future__ import annotations

import os
import secrets
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEMO_BUCKET = "portal-demo"
DEMO_LABEL = "Demo bucket"
STAFF_GROUP = "Staff"
MANY_FOLDER = "many-files/"
MANY_COUNT = 1500
SEED_MARKER = "demo-seeded-v1"  # in the data folder: seed once, not on every run


def demo_password(data_dir: Path) -> str:
    """PORTAL_DEMO_PASSWORD, or one generated on the first run and kept in the
    data folder, so that every later run prints the same password."""
    from_env = os.environ.get("PORTAL_DEMO_PASSWORD", "")
    if from_env:
        return from_env
    path = Path(data_dir) / "demo_admin_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def png_bytes(width: int = 96, height: int = 64) -> bytes:
    """A small valid PNG (an RGB gradient), built by hand: no imaging library needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def pdf_bytes(title: str = "S3 Share Portal demo") -> bytes:
    """A one-page valid PDF with a correct cross-reference table."""
    text = f"BT /F1 24 Tf 72 720 Td ({title}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def demo_objects() -> list[tuple[str, bytes, str]]:
    """(key, body, content type) for every sample object."""
    text = "text/plain; charset=utf-8"
    png = png_bytes()
    objects = [
        ("README.txt", "Sample files for the S3 Share Portal demo.\n".encode(), text),
        ("documents/Quarterly report 2026.pdf", pdf_bytes("Quarterly report 2026"), "application/pdf"),
        ("documents/notes/meeting notes.txt", "Agenda: share links, not attachments.\n".encode(), text),
        ("documents/notes/2026/January/kick-off.txt", "Deeply nested folder.\n".encode(), text),
        ("images/logo.png", png, "image/png"),
        ("images/Übersicht – 東京 café.png", png, "image/png"),
        ("team-a/plan.txt", "Team A's plan.\n".encode(), text),
        ("team-a/drafts/draft 1 (final).txt", "A name with spaces and brackets.\n".encode(), text),
        ("team-b/budget.txt", "Team B only.\n".encode(), text),
        ("names with spaces/résumé – José.txt", "Non-ASCII file name.\n".encode(), text),
        # Not "+" or "%": nanio 0.1.7 refuses keys with them (real S3 takes them).
        ("names with spaces/q=1 & r=2 [copy] #3.txt", "Characters that need escaping in a URL.\n".encode(), text),
    ]
    objects += [
        (f"{MANY_FOLDER}object-{number:05d}.txt", f"object {number}\n".encode(), text)
        for number in range(1, MANY_COUNT + 1)
    ]
    return objects


def seed_bucket(client, bucket: str, *, workers: int = 32) -> int:
    """Create the bucket if need be and upload every sample object. Idempotent
    (a PUT overwrites); threads because nanio answers each PUT in a few ms."""
    try:
        client.head_bucket(Bucket=bucket)
    except Exception:
        client.create_bucket(Bucket=bucket)
    objects = demo_objects()

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, content_type = item
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, objects))
    return len(objects)


def bucket_exists(client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
        return True
    except Exception:
        return False


def ensure_admin(password: str, *, reset_password: bool = True) -> tuple[str, bool]:
    """The demo admin `admin`. Returns (username, created). Its password is set to
    the demo password on every run, so that the printed one always works."""
    from django.contrib.auth.models import User

    user, created = User.objects.get_or_create(
        username="admin", defaults={"email": "admin@example.com", "is_staff": True, "is_superuser": True}
    )
    if created or reset_password:
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
    return user.username, created


def register_demo_bucket(endpoint_url: str, region: str, password: str):
    """The Bucket row for portal-demo (endpoint updated: nanio's port may change
    between runs), a "Staff" group with a full grant on it, and a demo staff user."""
    from django.contrib.auth.models import Group, User

    from shares.models import Bucket, Grant

    bucket, _ = Bucket.objects.update_or_create(
        name=DEMO_BUCKET,
        defaults={"label": DEMO_LABEL, "region": region, "endpoint_url": endpoint_url,
                  "addressing_style": Bucket.Addressing.PATH, "enabled": True},
    )
    staff, _ = Group.objects.get_or_create(name=STAFF_GROUP)
    if not Grant.objects.filter(bucket=bucket, group=staff).exists():
        Grant.objects.create(bucket=bucket, group=staff, prefix="", can_share=True)
    user, _ = User.objects.get_or_create(username="staff", defaults={"email": "staff@example.com"})
    user.set_password(password)  # same as the admin's, so the printed password works for both
    user.save()
    user.groups.add(staff)
    return bucket
