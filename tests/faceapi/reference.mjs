#!/usr/bin/env node
// Reference age/gender predictions from @vladmandic/face-api itself, for the ONNX parity test
// of scripts/faceapi_to_onnx.py.
//
//   npm ci                                     # once, in tests/faceapi (works offline after)
//   node reference.mjs MODEL_DIR CHIPS_FILE    # FACEAPI_BACKEND=cpu (default) | wasm
//
// MODEL_DIR: face-api's model/ directory (age_gender_model-weights_manifest.json + .bin).
// CHIPS_FILE: raw uint8 RGB, N consecutive 112x112x3 chips (row-major, HWC).
// Prints {"backend", "tfjs", "results": [{"age", "male"}, ...]} with male = P(male).
//
// Uses face-api's node-wasm build (plain @tensorflow/tfjs + tfjs-backend-wasm, no tfjs-node,
// which would download a native library). Default backend is tfjs's pure-JS 'cpu' (plain
// float32 JS loops, no SIMD/threads, so the result does not depend on the host CPU).
// The chips go through face-api's own path: AgeGenderNet.loadFromDisk, then
// predictAgeAndGender on an array of Tensor3D chips -> NetInput.toBatchTensor(112) (already
// 112x112, so no resize) -> TinyXception -> one batched forward pass. (A batched Tensor4D with
// N > 1 is rejected by face-api's toNetInput, and forwardInput(Tensor4D) would treat the
// tensor as bottleneck features, so an array of Tensor3D is the supported batch input.)
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

const SIZE = 112;
const [modelDir, chipsFile] = process.argv.slice(2);
if (!modelDir || !chipsFile) {
  console.error('usage: node reference.mjs MODEL_DIR CHIPS_FILE');
  process.exit(2);
}

const backend = process.env.FACEAPI_BACKEND || 'cpu';
if (!(await tf.setBackend(backend))) throw new Error(`tfjs backend ${backend} failed to start`);
await tf.ready();

const net = new faceapi.AgeGenderNet();
await net.loadFromDisk(modelDir);

const bytes = fs.readFileSync(chipsFile);
const chipBytes = SIZE * SIZE * 3;
if (bytes.length === 0 || bytes.length % chipBytes !== 0) {
  throw new Error(`${chipsFile}: ${bytes.length} bytes is not a multiple of ${chipBytes}`);
}
const chips = [];
for (let off = 0; off < bytes.length; off += chipBytes) {
  // int32, like tf.browser.fromPixels; toBatchTensor casts to float32.
  chips.push(tf.tensor3d(Int32Array.from(bytes.subarray(off, off + chipBytes)), [SIZE, SIZE, 3], 'int32'));
}

// Always an array, so a single chip also comes back as an array.
const predictions = await net.predictAgeAndGender(chips);
const results = predictions.map((p) => ({
  age: p.age,
  // predictAgeAndGender reports max(P(male), 1 - P(male)); recover P(male) = gender[:, 0].
  male: p.gender === faceapi.Gender.MALE ? p.genderProbability : 1 - p.genderProbability,
}));
chips.forEach((t) => t.dispose());

console.log(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, results }));
