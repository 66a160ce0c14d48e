"""Bundle signing (models/sign; docs/SIGNING.md). Run: the models venv's
python -m unittest discover -s models/tests."""
import base64
import os
import stat
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import facegate_sign as fs  # noqa: E402
from facegate_sign.__main__ import main as sign_main  # noqa: E402
from facegate_train import bundle as train_bundle  # noqa: E402

MANIFEST = b'schema = 1\nname = "t"\n[model]\nsha256 = "00"\n'

# The same vector as src/bundle/sign.rs `matches_the_python_signer`: the
# Rust verifier accepts exactly these bytes.
VECTOR_SEED = bytes(range(32))
VECTOR_TEXT = (
    '# ed25519 over "facegate bundle manifest v1\\n" + manifest.toml (docs/SIGNING.md)\n'
    'key = "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="\n'
    'signature = "lonau/FaHMbnUSRaRIOUulFGzoNg11j23D969CLXBjN4SD5KyylYdIWzZFBskI2RjR8Y3M+KO0NICfezqINUBA=="\n'
)


def quiet(*_a, **_k):
    pass


class SignTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.bundle = self.dir / "models" / "bundles" / "b"
        self.bundle.mkdir(parents=True)
        (self.bundle / "manifest.toml").write_bytes(MANIFEST)
        (self.bundle / "model.onnx").write_bytes(b"model")

    def tearDown(self):
        self.tmp.cleanup()

    def test_matches_the_rust_vector(self):
        key = fs.key_from_seed(VECTOR_SEED)
        self.assertEqual(fs.signature_text(key, b"schema = 1\n"), VECTOR_TEXT)

    def test_a_key_is_made_on_first_use_private_and_reused(self):
        path = self.dir / "conf" / "facegate" / "signing-key"
        k1 = fs.load_key(path, log=quiet)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)
        self.assertEqual(len(path.read_bytes()), 32)
        pub = fs.public_key_string(k1)
        self.assertTrue(pub.startswith("ed25519:"))
        self.assertEqual(len(base64.b64decode(pub[len("ed25519:"):])), 32)
        self.assertEqual(path.with_name("signing-key.pub").read_text().strip(), pub)
        self.assertEqual(fs.public_key_string(fs.load_key(path, log=quiet)), pub)

    def test_unusable_keys_are_refused(self):
        path = self.dir / "k"
        fs.load_key(path, log=quiet)
        os.chmod(path, 0o644)
        with self.assertRaisesRegex(fs.KeyError_, "readable by others"):
            fs.load_key(path)
        os.chmod(path, 0o600)
        path.write_bytes(b"short")
        with self.assertRaisesRegex(fs.KeyError_, "32 bytes"):
            fs.load_key(path)
        with self.assertRaisesRegex(fs.KeyError_, "inside the repository"):
            fs.load_key(self.dir / "repo" / "key", repo=self.dir / "repo")
        with self.assertRaisesRegex(fs.KeyError_, "no signing key"):
            fs.load_key(self.dir / "absent", create=False)

    def test_sign_and_verify_each_failure(self):
        key = fs.load_key(self.dir / "k", log=quiet)
        other = fs.load_key(self.dir / "k2", log=quiet)
        pub = fs.public_key_string(key)
        self.assertEqual(fs.verify(self.bundle), "unsigned")
        self.assertTrue(fs.sign_bundle(self.bundle, key))
        self.assertFalse(fs.sign_bundle(self.bundle, key), "deterministic: a re-run writes nothing")
        self.assertEqual(fs.verify(self.bundle, [pub]), f"trusted {pub}")
        self.assertEqual(fs.verify(self.bundle, [fs.public_key_string(other)]), f"signed by {pub}")
        # Tampered manifest.
        (self.bundle / "manifest.toml").write_bytes(MANIFEST + b"# changed\n")
        with self.assertRaisesRegex(ValueError, "does not match"):
            fs.verify(self.bundle, [pub])
        # Another key re-signs: verifies, but as that key.
        self.assertTrue(fs.sign_bundle(self.bundle, other))
        self.assertEqual(fs.verify(self.bundle, [pub]), f"signed by {fs.public_key_string(other)}")

    def test_signing_never_writes_through_a_hard_link(self):
        key = fs.load_key(self.dir / "k", log=quiet)
        cache = self.dir / "cache.sig"
        cache.write_text("cached\n")
        os.link(cache, self.bundle / fs.SIG_FILE)
        fs.sign_bundle(self.bundle, key)
        self.assertEqual(cache.read_text(), "cached\n")

    def test_cli_signs_a_models_dir_and_skips_symlinked_bundles(self):
        linked = self.dir / "models" / "bundles" / "linked"
        other = self.dir / "elsewhere"
        other.mkdir()
        (other / "manifest.toml").write_bytes(MANIFEST)
        linked.symlink_to(other, target_is_directory=True)
        key_path = self.dir / "k"
        self.assertEqual(sign_main(["--key", str(key_path), "models-dir", str(self.dir / "models")]), 0)
        self.assertTrue((self.bundle / fs.SIG_FILE).exists())
        self.assertFalse((other / fs.SIG_FILE).exists())
        self.assertEqual(sign_main(["verify", str(self.bundle)]), 0)
        pub = fs.public_key_string(fs.load_key(key_path))
        self.assertEqual(sign_main(["verify", "--trusted-key", pub, str(self.bundle)]), 0)
        self.assertEqual(sign_main(["verify", "--trusted-key", "ed25519:other", str(self.bundle)]), 1)
        (self.bundle / "manifest.toml").write_bytes(MANIFEST + b"\n")
        self.assertEqual(sign_main(["verify", str(self.bundle)]), 1)
        self.assertEqual(sign_main(["--key", str(key_path), "models-dir", str(self.dir / "nothing")]), 1)

    def test_trained_bundles_are_signed_when_a_key_is_given(self):
        key = fs.load_key(self.dir / "k", log=quiet)

        class Backbone:
            name = "bb"
            sha256 = "0" * 64
            manifest = {"schema": 1, "name": "bb", "kind": "embedder", "version": "1",
                        "provenance": {"package": "x"}}

        model = self.dir / "m.onnx"
        model.write_bytes(b"onnx")
        d = train_bundle.write(self.dir / "trained", "t", Backbone(), model, "fp32",
                               {"method": "eum", "split": "f1-5"}, key=key)
        self.assertEqual(fs.verify(d, [fs.public_key_string(key)]), f"trusted {fs.public_key_string(key)}")
        d2 = train_bundle.write(self.dir / "trained", "u", Backbone(), model, "fp32",
                                {"method": "eum", "split": "f1-5"})
        self.assertEqual(fs.verify(d2), "unsigned")


if __name__ == "__main__":
    unittest.main()
