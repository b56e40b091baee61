"""QR codes: segno SVGs, and no 500 for a link too long to encode."""
from shares import qr


def test_it_encodes_a_link_as_svg():
    svg = qr.qr_svg("http://127.0.0.1:8000/s/" + "a" * 43)
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"<title>QR code of the share link</title>" in svg
    assert qr.qr_data_uri("http://x/s/abc").startswith("data:image/svg+xml")


def test_it_encodes_a_long_direct_link_at_a_lower_level():
    # A direct link signed with a session token: about 2.5 KB.
    assert qr.qr_data_uri("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=" + "A" * 2500) is not None


def test_it_gives_up_on_a_link_too_long_for_any_qr_code():
    assert qr.qr_svg("x" * 5000) is None
    assert qr.qr_data_uri("x" * 5000) is None
