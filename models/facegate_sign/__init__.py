"""Bundle signatures (docs/SIGNING.md): the workstation's ed25519 key signs
each bundle's manifest.toml; the signature goes next to it as manifest.sig.

What is signed is CONTEXT followed by the manifest's exact bytes. The
manifest pins the model's size and sha256, so the signature covers the model
too. src/bundle/sign.rs verifies (and its test `matches_the_python_signer`
checks the same vector as models/tests/test_sign.py).

The private key is a file of the raw 32-byte ed25519 seed, mode 0600,
outside the repository: --key PATH, else $FACEGATE_SIGNING_KEY, else
~/.config/facegate/signing-key (created on first use, with PATH.pub holding
the public key as `ed25519:<base64>`, the string facegated's
[models] trusted_keys lists).

This package is deliberately outside facegate_models: models/build's key
hashes facegate_models/*.py, and signing is an install step (like the
calibrated thresholds), so a new key or a change here never rebuilds a model.
"""
from __future__ import annotations

import base64
import os
import stat
import tomllib
from pathlib import Path

CONTEXT = b"facegate bundle manifest v1\n"
KEY_PREFIX = "ed25519:"
SIG_FILE = "manifest.sig"
REPO = Path(__file__).resolve().parents[2]


class KeyError_(Exception):
    """A key file that cannot be used (wrong size, too open, inside the repo)."""


def default_key_path() -> Path:
    env = os.environ.get("FACEGATE_SIGNING_KEY")
    if env:
        return Path(env).expanduser()
    conf = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(conf) / "facegate" / "signing-key"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _crypto():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives import serialization
    return ed25519, serialization


def public_key_string(key) -> str:
    """`ed25519:<base64>` of a private key's public half."""
    _, ser = _crypto()
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def key_from_seed(seed: bytes):
    ed25519, _ = _crypto()
    if len(seed) != 32:
        raise KeyError_(f"an ed25519 key file holds 32 bytes, not {len(seed)}")
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def load_key(path: Path, create: bool = True, repo: Path = REPO, log=print):
    """The private key in `path`; created (mode 0600, folder 0700) when
    missing and `create`. Refuses a key readable by others and a key inside
    the repository (it would end up committed)."""
    path = Path(path).expanduser()
    if _inside(path, repo):
        raise KeyError_(f"{path} is inside the repository {repo}: keep the signing key outside it")
    if not path.exists():
        if not create:
            raise KeyError_(f"{path}: no signing key there")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
        key = key_from_seed(seed)
        pub = path.with_name(path.name + ".pub")
        pub.write_text(public_key_string(key) + "\n")
        log(f"sign: made a new signing key {path} (keep it safe, outside the repository); "
            f"facegated trusts its bundles with\n  [models]\n  trusted_keys = [\"{public_key_string(key)}\"]")
        return key
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    return key_from_seed(path.read_bytes())


def signature_text(key, manifest: bytes) -> str:
    """manifest.sig's text for these manifest bytes (the same bytes as
    src/bundle/sign.rs `SignatureFile::to_text`)."""
    sig = key.sign(CONTEXT + manifest)
    return ("# ed25519 over \"facegate bundle manifest v1\\n\" + manifest.toml (docs/SIGNING.md)\n"
            f"key = \"{public_key_string(key)}\"\n"
            f"signature = \"{base64.b64encode(sig).decode()}\"\n")


def sign_bundle(bundle: Path, key) -> bool:
    """Write `bundle`/manifest.sig; True when it changed. Never writes
    through a hard link (models/out's files may be links into the cache)."""
    text = signature_text(key, (bundle / "manifest.toml").read_bytes())
    sig = bundle / SIG_FILE
    if sig.exists() and sig.read_text() == text:
        return False
    sig.unlink(missing_ok=True)
    sig.write_text(text)
    return True


def bundles(models: Path) -> list[Path]:
    """Bundle folders under `models`/bundles (real folders: symlinked ones
    belong to another models folder and are signed there)."""
    b = models / "bundles"
    return sorted(p.parent for p in b.glob("*/manifest.toml") if not p.parent.is_symlink())


def verify(bundle: Path, trusted: list[str] | None = None) -> str:
    """What `bundle`'s signature is: "unsigned", "signed by K" or "trusted K";
    raises ValueError when it does not verify (as facegated would refuse it)."""
    from cryptography.exceptions import InvalidSignature
    ed25519, _ = _crypto()
    sig = bundle / SIG_FILE
    if not sig.exists():
        return "unsigned"
    doc = tomllib.loads(sig.read_text())
    key = doc.get("key", "")
    if not key.startswith(KEY_PREFIX):
        raise ValueError(f"{sig}: key {key!r} is not ed25519:<base64>")
    pub = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(key[len(KEY_PREFIX):]))
    try:
        pub.verify(base64.b64decode(doc.get("signature", "")), CONTEXT + (bundle / "manifest.toml").read_bytes())
    except InvalidSignature:
        raise ValueError(f"{bundle}: the signature by {key} does not match manifest.toml") from None
    if trusted is not None and key in trusted:
        return f"trusted {key}"
    return f"signed by {key}"
