"""Safety rules of the review server that need no trame: loopback check, token rule, names from the
browser kept inside the reviewed folder (CardiacLandmarksLib.web.security)."""

from __future__ import annotations

import os

import pytest

from CardiacLandmarksLib.web.security import (
    OutsideRootError,
    is_loopback,
    new_token,
    resolve_inside,
    token_matches,
    token_required,
)


@pytest.mark.parametrize("host, loop", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.20", False), ("10.0.0.1", False),
    ("myserver.example.org", False),
])
def test_loopback_and_token_rule(host, loop):
    assert is_loopback(host) is loop
    assert token_required(host) is (not loop)
    assert token_required(host, require_token=True) is True


def test_tokens():
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40
    assert token_matches(a, a)
    assert not token_matches(b, a)
    assert not token_matches("", a)
    assert not token_matches(None, a)
    assert not token_matches(a[:-1], a)


def test_resolve_inside_refuses_escapes(tmp_path):
    root = tmp_path / "cohort"
    (root / "patient001").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    assert resolve_inside(root, "patient001") == (root / "patient001").resolve()
    assert resolve_inside(root, ".") == root.resolve()
    for bad in ("../secret", "patient001/../../secret", "..", "../cohort/patient001", "patient001\\..\\..\\secret"):
        with pytest.raises(OutsideRootError):
            resolve_inside(root, bad)
    for bad in (str(tmp_path / "secret"), str((root / "patient001").resolve()), "/etc/passwd", "C:\\Windows",
                "\\\\server\\share"):
        with pytest.raises(OutsideRootError, match="absolute"):
            resolve_inside(root, bad)
    with pytest.raises(OutsideRootError):
        resolve_inside(root, "patient001\x00")
    if hasattr(os, "symlink"):
        os.symlink(tmp_path / "secret", root / "link")
        with pytest.raises(OutsideRootError, match="outside"):
            resolve_inside(root, "link")
