"""models/sign: sign model bundles, print the public key, check signatures.

  models/sign [--key PATH] models-dir [DIR ...]   sign every bundle under DIR/bundles/
  models/sign [--key PATH] bundle BUNDLE ...      sign bundle folders
  models/sign [--key PATH] pubkey                 print the public key (ed25519:<base64>)
  models/sign verify [--trusted-key K ...] BUNDLE ...
                                                  (with --trusted-key: fails unless signed by K)

The key: --key PATH, else $FACEGATE_SIGNING_KEY, else
~/.config/facegate/signing-key, created on first use (docs/SIGNING.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import KeyError_, bundles, default_key_path, load_key, public_key_string, sign_bundle, verify


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="models/sign", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--key", type=Path, default=None,
                    help="private key file (raw 32-byte ed25519 seed, mode 0600; default "
                         "$FACEGATE_SIGNING_KEY or ~/.config/facegate/signing-key, made on first use)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("models-dir", help="sign every bundle under DIR/bundles/")
    p.add_argument("dirs", type=Path, nargs="+")
    p = sub.add_parser("bundle", help="sign bundle folders")
    p.add_argument("dirs", type=Path, nargs="+")
    sub.add_parser("pubkey", help="print the public key")
    p = sub.add_parser("verify", help="check bundle signatures")
    p.add_argument("--trusted-key", action="append", default=None)
    p.add_argument("dirs", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "verify":
        bad = 0
        for d in a.dirs:
            try:
                st = verify(d, a.trusted_key)
            except ValueError as e:
                print(f"{d}: INVALID: {e}")
                bad += 1
                continue
            # With --trusted-key, as facegated with allow_unsigned = false.
            refused = a.trusted_key is not None and not st.startswith("trusted")
            print(f"{d}: {st}" + (" (REFUSED: not a trusted key)" if refused else ""))
            bad += refused
        return 1 if bad else 0
    path = a.key or default_key_path()
    try:
        key = load_key(path, log=lambda m: print(m, file=sys.stderr))
    except KeyError_ as e:
        print(f"sign: {e}", file=sys.stderr)
        return 2
    if a.cmd == "pubkey":
        print(public_key_string(key))
        return 0
    dirs = [b for d in a.dirs for b in bundles(d)] if a.cmd == "models-dir" else a.dirs
    if a.cmd == "models-dir" and not dirs:
        print(f"sign: no bundles under {', '.join(str(d) for d in a.dirs)}", file=sys.stderr)
        return 1
    changed = sum(sign_bundle(d, key) for d in dirs)
    print(f"sign: {len(dirs)} bundle(s) signed by {public_key_string(key)} ({path}); "
          f"{changed} signature(s) written, {len(dirs) - changed} already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
