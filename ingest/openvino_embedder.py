"""The ONNX export run by OpenVINO instead of onnxruntime (`embedding.backend=openvino`, the
`openvino` extra): OpenVINO reads the ONNX file itself, so tokenizing, windowing and pooling
are OnnxEmbedder's and only the inference differs.

int8 is a variant of the export of its own: OpenVINO's ONNX reader has no conversion for
onnxruntime's QAttention, so the fp32 export is quantized again with the MatMuls only
(weights int8 per channel, the FFN down-projections kept fp32 as for onnxruntime) and the
fused Attention left fp32. It is made on first use beside the export, whole or not at all.
Compiled models are cached by OpenVINO under the same folder, so a second load is fast.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import EmbeddingSettings
from ingest.onnx_embedder import FP32, OnnxEmbedder

if TYPE_CHECKING:
    import numpy as np

INT8_MATMUL = "model_int8_matmul.onnx"


def matmul_int8(folder: Path) -> Path:
    """`folder`'s fp32 export with its MatMuls quantized to int8, made now if missing."""
    out = folder / INT8_MATMUL
    if out.is_file():
        return out
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(folder / FP32), load_external_data=False).graph
    keep = [n.name for n in graph.node if n.op_type == "MatMul"
            and "/output/dense/" in n.name and "/attention/" not in n.name]
    tmp = folder / f".{INT8_MATMUL}.{os.getpid()}"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(folder / FP32), str(tmp), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=keep, extra_options={"DefaultTensorType": 1})
        tmp.replace(out)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    return out


class OpenVinoEmbedder(OnnxEmbedder):
    """OnnxEmbedder with OpenVINO's CPU plugin doing the inference."""

    backend = "openvino"

    def _load(self, folder: Path, settings: EmbeddingSettings) -> list[str]:
        import openvino as ov

        model = matmul_int8(folder) if settings.onnx_int8 else folder / FP32
        core = ov.Core()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY",
                                     "CACHE_DIR": str(folder / "openvino")}
        if settings.threads:
            config["INFERENCE_NUM_THREADS"] = settings.threads
        self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        return [i.get_any_name() for i in self.compiled.inputs]

    def _width(self) -> int:
        shape = self.compiled.output(0).get_partial_shape()
        last = shape[shape.rank.get_length() - 1]
        return int(last.get_length()) if last.is_static else 0

    def _infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import numpy as np

        # The request reuses its output buffer: copy before the next run.
        return np.array(self.request.infer(feed)[self.compiled.output(0)])
