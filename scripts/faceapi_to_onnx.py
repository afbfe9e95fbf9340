#!/usr/bin/env python3
"""Convert face-api's age/gender network (tfjs weights) to a deterministic ONNX model.

Usage: faceapi_to_onnx.py MANIFEST_JSON OUTPUT_ONNX
  e.g. faceapi_to_onnx.py node_modules/@vladmandic/face-api/model/age_gender_model-weights_manifest.json \
       models/faceapi_age_gender.onnx

Source: npm @vladmandic/face-api 1.7.15 (MIT), model/age_gender_model-weights_manifest.json and
the .bin files its "paths" name (read from the manifest's directory). Only onnx and numpy are
needed (scripts/onnx-requirements.txt), no TensorFlow. The graph mirrors face-api's sources:
  src/xception/TinyXception.ts       TinyXception(2).forwardInput: (x - meanRgb) / 255, conv_in
                                     (3x3 stride 2) + relu, reduction_block_0 (no input relu),
                                     reduction_block_1, main_block_0..1, exit reduction_block,
                                     separable_conv + relu
  src/common/depthwiseSeparableConv.ts  separableConv2d(depthwise 3x3, pointwise 1x1) + bias
  src/ops/normalize.ts               meanRgb = [122.782, 117.001, 104.298]
  src/ageGenderNet/AgeGenderNet.ts   avgPool 7x7 stride 2 'valid', fc/age (512->1),
                                     fc/gender (512->2) + softmax; gender[:, 0] = P(male)
Input `chip` float32 [N,112,112,3]: RGB 0..255 NHWC, exactly what NetInput.toBatchTensor(112)
hands the net. Outputs `age` float32 [N,1] (years) and `gender` float32 [N,2].

Faithfulness details:
  * Weights are uint8-quantised; tfjs (io.decodeWeights) dequantises as q * scale + min in
    float64 and stores the result in a Float32Array. Done identically here.
  * TF 'same' padding puts the odd extra pixel at the bottom/right (stride-2 layers here), so
    every Conv/MaxPool gets explicit ONNX pads computed for its static input size.
  * Layouts: tfjs conv [kh,kw,in,out] and pointwise [1,1,in,out] -> ONNX [out,in,kh,kw];
    depthwise [kh,kw,in,1] -> [in,1,kh,kw] with group=in.
Determinism: fixed opset/IR version, no timestamps or paths in the model, so the same weights
always give byte-identical output (the script prints the sha256).
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17
SIZE = 112
MEAN_RGB = [122.782, 117.001, 104.298]
NUM_MAIN_BLOCKS = 2


def load_weights(manifest_path):
    """name -> float32 array in the tfjs layout, decoded like tfjs io.decodeWeights."""
    base = os.path.dirname(os.path.abspath(manifest_path))
    with open(manifest_path) as f:
        groups = json.load(f)
    weights, sources = {}, []
    for group in groups:
        data = b""
        for p in group["paths"]:
            with open(os.path.join(base, p), "rb") as f:
                chunk = f.read()
            sources.append(f"{p} sha256={hashlib.sha256(chunk).hexdigest()}")
            data += chunk
        offset = 0
        for spec in group["weights"]:
            assert spec["dtype"] == "float32", spec
            count = int(np.prod(spec["shape"], dtype=np.int64))
            q = spec.get("quantization")
            if q:
                assert q["dtype"] == "uint8", spec
                raw = np.frombuffer(data, np.uint8, count, offset)
                offset += count
                values = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            else:
                values = np.frombuffer(data, "<f4", count, offset).astype(np.float32)
                offset += 4 * count
            weights[spec["name"]] = values.reshape(spec["shape"])
        assert offset == len(data), "manifest does not cover the .bin exactly"
    return weights, sources


def same_pads(size, kernel, stride):
    """TF 'same' padding as ONNX pads [top, left, bottom, right] (square input, square kernel)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return [before, before, total - before, total - before], out


class Graph:
    def __init__(self, weights):
        self.w = weights
        self.nodes, self.inits, self.used = [], [], set()

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, name, perm=None):
        self.used.add(name)
        a = self.w[name]
        return self.const(name, a if perm is None else a.transpose(perm))

    def op(self, op_type, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def relu(self, x):
        return self.op("Relu", [x], x + "/relu")

    def conv(self, x, size, prefix, stride):
        """conv2d(x, filters, stride, 'same') + bias; filters [kh,kw,in,out]."""
        k = self.w[prefix + "/filters"].shape[0]
        pads, out = same_pads(size, k, stride)
        y = self.op("Conv", [x, self.weight(prefix + "/filters", (3, 2, 0, 1)),
                             self.weight(prefix + "/bias")], prefix,
                    kernel_shape=[k, k], strides=[stride, stride], pads=pads)
        return y, out

    def separable(self, x, size, prefix):
        """separableConv2d(x, depthwise, pointwise, [1,1], 'same') + bias."""
        channels = self.w[prefix + "/depthwise_filter"].shape[2]
        pads, _ = same_pads(size, 3, 1)
        dw = self.op("Conv", [x, self.weight(prefix + "/depthwise_filter", (2, 3, 0, 1))],
                     prefix + "/depthwise", kernel_shape=[3, 3], strides=[1, 1], pads=pads,
                     group=channels)
        return self.op("Conv", [dw, self.weight(prefix + "/pointwise_filter", (3, 2, 0, 1)),
                                self.weight(prefix + "/bias")], prefix,
                       kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0])

    def reduction_block(self, x, size, prefix, activate_input=True):
        out = self.relu(x) if activate_input else x
        out = self.separable(out, size, prefix + "/separable_conv0")
        out = self.separable(self.relu(out), size, prefix + "/separable_conv1")
        pads, half = same_pads(size, 3, 2)
        out = self.op("MaxPool", [out], prefix + "/max_pool",
                      kernel_shape=[3, 3], strides=[2, 2], pads=pads)
        expansion, _ = self.conv(x, size, prefix + "/expansion_conv", 2)
        return self.op("Add", [out, expansion], prefix + "/add"), half

    def main_block(self, x, size, prefix):
        out = self.separable(self.relu(x), size, prefix + "/separable_conv0")
        out = self.separable(self.relu(out), size, prefix + "/separable_conv1")
        out = self.separable(self.relu(out), size, prefix + "/separable_conv2")
        return self.op("Add", [out, x], prefix + "/add")

    def fc(self, x, prefix):
        """matMul(x, weights [512,k]) + bias."""
        return self.op("Gemm", [x, self.weight(prefix + "/weights"),
                                self.weight(prefix + "/bias")], prefix)


def build(weights, sources):
    g = Graph(weights)
    mean = g.const("mean_rgb", np.array(MEAN_RGB, np.float32).reshape(1, 1, 1, 3))
    x = g.op("Sub", ["chip", mean], "normalize/sub")
    x = g.op("Div", [x, g.const("255", np.array(255, np.float32))], "normalize/div")
    x = g.op("Transpose", [x], "nhwc_to_nchw", perm=[0, 3, 1, 2])

    x, size = g.conv(x, SIZE, "entry_flow/conv_in", 2)
    x = g.relu(x)
    x, size = g.reduction_block(x, size, "entry_flow/reduction_block_0", activate_input=False)
    x, size = g.reduction_block(x, size, "entry_flow/reduction_block_1")
    for i in range(NUM_MAIN_BLOCKS):
        x = g.main_block(x, size, f"middle_flow/main_block_{i}")
    x, size = g.reduction_block(x, size, "exit_flow/reduction_block")
    x = g.relu(g.separable(x, size, "exit_flow/separable_conv"))
    assert size == 7, size

    x = g.op("AveragePool", [x], "avg_pool", kernel_shape=[7, 7], strides=[2, 2])
    x = g.op("Flatten", [x], "flatten", axis=1)  # [N,512,1,1] -> [N,512]
    age = g.fc(x, "fc/age")
    logits = g.fc(x, "fc/gender")
    g.nodes.append(helper.make_node("Identity", [age], ["age"], name="age"))
    g.nodes.append(helper.make_node("Softmax", [logits], ["gender"], name="gender", axis=1))

    unused = sorted(set(weights) - g.used)
    assert not unused, f"weights not used by the graph: {unused}"

    graph = helper.make_graph(
        g.nodes, "faceapi_age_gender",
        [helper.make_tensor_value_info("chip", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("gender", TensorProto.FLOAT, ["N", 2])],
        g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="vcw scripts/faceapi_to_onnx.py", producer_version="1",
        doc_string="@vladmandic/face-api 1.7.15 (MIT) AgeGenderNet, age_gender_model. "
                   "chip: RGB 0..255 NHWC 112x112; age: years; gender: softmax [male, female].")
    helper.set_model_props(model, {"source": "npm @vladmandic/face-api@1.7.15 (MIT)",
                                   "weights": "; ".join(sources)})
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    weights, sources = load_weights(sys.argv[1])
    data = build(weights, sources).SerializeToString(deterministic=True)
    with open(sys.argv[2], "wb") as f:
        f.write(data)
    print(f"{sys.argv[2]}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
