"""The 3-2-1 evaluation of one snapshot's copies (``placement.evaluate``), rule by rule, and the
record rules of ``locations`` that need no CLI (credentials, names of one place)."""

from __future__ import annotations

import pytest

from amber.repo import locations, placement
from amber.util import errors


def _site(name: str, medium: str, offsite: bool = False) -> placement.Site:
    return placement.Site(name, f"/{name}", medium, offsite, opened=False, registered=True)


@pytest.mark.parametrize(("holders", "broken", "reasons"), [
    ([], ["copies", "media", "offsite"], ["0 copies, needs 3", "0 media, needs 2",
                                          "no off-site copy"]),
    ([_site("a", "disk")], ["copies", "media", "offsite"],
     ["1 copy, needs 3", "1 medium (disk), needs 2", "no off-site copy"]),
    ([_site("a", "disk"), _site("b", "disk"), _site("c", "disk", offsite=True)], ["media"],
     ["1 medium (disk), needs 2"]),
    ([_site("a", "disk"), _site("b", "object"), _site("c", "object")], ["offsite"],
     ["no off-site copy"]),
    ([_site("a", "disk"), _site("b", "object", offsite=True)], ["copies"],
     ["2 copies, needs 3"]),
    ([_site("a", "disk"), _site("b", "object"), _site("c", "other", offsite=True)], [], []),
])
def test_each_rule_is_named_with_its_reason(holders: list[placement.Site], broken: list[str],
                                           reasons: list[str]) -> None:
    got = placement.evaluate("ab" * 32, holders)
    assert [str(r) for r in got.broken] == broken
    assert got.reasons == reasons
    assert got.copies == len(holders) and got.sites == [s.name for s in holders]


@pytest.mark.parametrize(("url", "why"), [
    ("s3://user:secret@bucket/p", "user or password"),
    ("s3://bucket/p?endpoint=https://u:pw@minio:9000", "in its endpoint option"),
    ("s3://bucket/p?aws_secret_access_key=abc", "secret-looking option"),
    ("s3://bucket/p?X-Amz-Signature=abc&X-Amz-Credential=AKIA", "secret-looking option"),
    ("file://me:pw@localhost/backups", "user or password"),
])
def test_credentials_are_refused_without_repeating_them(url: str, why: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        locations.refuse_credentials("nas", url)
    message = str(caught.value)
    assert why in message and "'nas'" in message
    assert "secret@" not in message and "pw" not in message and "abc" not in message


def test_urls_without_credentials_pass_and_one_place_has_one_spelling() -> None:
    url = "s3://bucket/p?endpoint=https://minio:9000&region=eu&addressing=path"
    locations.refuse_credentials("nas", url)
    locations.refuse_credentials("usb", "/mnt/usb@home/backups")  # a path may hold an @
    # names a Kubernetes Secret, holds none
    locations.refuse_credentials("offsite", "s3://bucket/p?secret=backup/s3-creds&profile=b")
    assert locations.place(url) == locations.place(
        "s3://bucket/p/?addressing=virtual&endpoint=https://minio:9000")
    assert locations.place("/mnt/a/../b") == locations.place("file:///mnt/b")
    assert locations.default_medium(url) == "object"
    assert locations.default_medium("/mnt/usb") == "disk"
