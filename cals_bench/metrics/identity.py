"""Identity similarity: does the enhanced face still look like the same person?

Per sample (the CALS paper's S_id as written):
1. detect the face and its five landmarks on the **reference** (YuNet; several faces -> the largest box);
2. fit the similarity transform from those landmarks to the standard 112x112 ArcFace template;
3. apply that **same** transform to the reference, the model output and the model input, embed all three
   with the chosen recogniser and scale the embeddings to unit length;
4. ``id_sim = cos(embed(output), embed(reference))`` and ``id_sim_input = cos(embed(output), embed(input))``,
   both in [-1, 1], higher is more alike.
Several faces on the reference: the largest box is used (``last_face_counts`` tells how many were
found). Undefined values are NaN with a reason in ``last_reasons`` (one string per sample, None when both columns
are defined): no face in the reference (both columns), or no model input / an input of another size than
the reference (``id_sim_input`` only).

Backends (option ``backend``): ``sface`` (default; OpenCV Zoo SFace, 128-d, option ``engine`` = ``cv2``
or ``onnxruntime``) and ``insightface`` (an ArcFace model of an insightface pack through onnxruntime,
options ``pack``, ``model_path``). The backend is in ``options`` and in ``metadata()`` of every run.
Reference detections, transforms and embeddings, and input embeddings, live in the reference-feature cache.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch

from cals_bench.errors import CalsBenchError, SampleError
from cals_bench.face.pipeline import FacePipeline, to_uint8_hwc
from cals_bench.metrics.base import ColumnFormat, Metric, SampleContext, register_metric

Backend = Literal["sface", "insightface"]
_BACKEND_OPTIONS = {"sface": ("engine",), "insightface": ("pack", "model_path"), "mobilefacenet": ()}


def split_face_options(
    backend: str, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(recogniser options, detector options, unknown options) from flat ``k=v`` metric options."""
    if backend not in _BACKEND_OPTIONS:
        raise CalsBenchError(f"face backend must be one of {sorted(_BACKEND_OPTIONS)}, not {backend!r}")
    rec = {k: options.pop(k) for k in _BACKEND_OPTIONS[backend] if k in options}
    det = {}
    if "det_threshold" in options:
        det["score_threshold"] = float(options.pop("det_threshold"))
    return rec, det, options


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two unit vectors, clipped to [-1, 1] (float32 rounding can exceed 1 by ~1e-7)."""
    return float(np.clip(np.dot(a.astype(np.float64), b.astype(np.float64)), -1.0, 1.0))


@register_metric
class IdentitySimilarity(Metric):
    """``id_sim`` and ``id_sim_input`` (cosine of unit ArcFace-family embeddings; higher is better)."""

    name = "id_sim"
    summary = "identity similarity (SFace/ArcFace cosine) of output vs reference and vs input"
    columns: ClassVar[dict[str, bool | None]] = {"id_sim": True, "id_sim_input": True}
    column_formats: ClassVar[dict[str, ColumnFormat]] = {
        "id_sim": ColumnFormat("ID sim", decimals=4),
        "id_sim_input": ColumnFormat("ID sim (input)", decimals=4),
    }
    face = True

    def __init__(self, *, backend: Backend = "sface", **options: Any) -> None:
        rec, det, unknown = split_face_options(backend, dict(options))
        super().__init__(**unknown)  # refuses unknown options
        self.pipeline = FacePipeline(backend, recognizer_options=rec, detector_options=det)
        self.backend = backend
        self.options = {
            "backend": backend,
            **self.pipeline.recognizer.options,
            "det_threshold": self.pipeline.detector.score_threshold,
        }
        self.last_reasons: list[str | None] = []
        # faces found on each reference of the last batch (diagnostics: > 1 means the largest was used)
        self.last_face_counts: list[int] = []

    def available(self) -> tuple[bool, str]:
        ok, reason = self.pipeline.available()
        if ok:
            self.weights_used = self.pipeline.weights_used
        return ok, (f"id_sim ({self.backend}): {reason}" if not ok else "")

    def attach_cache(self, cache: Any) -> None:
        self.pipeline.cache = cache

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "backend": self.backend, "embedding_dim": self.pipeline.recognizer.dim}

    def score_batch(
        self, output: torch.Tensor, reference: torch.Tensor, contexts: list[SampleContext]
    ) -> list[dict[str, float]]:
        if output.shape != reference.shape:
            raise SampleError(
                f"id_sim: output {tuple(output.shape)} and reference {tuple(reference.shape)} differ"
            )
        self.pipeline.load()
        self.weights_used = self.pipeline.weights_used
        n = len(contexts)
        outs = [to_uint8_hwc(output[i]) for i in range(n)]
        refs = [to_uint8_hwc(reference[i]) for i in range(n)]
        faces = self.pipeline.reference_faces(refs, [c.reference_key for c in contexts])
        with_face = [i for i in range(n) if faces[i].found]
        out_emb = dict(
            zip(
                with_face,
                self.pipeline.embed_aligned(
                    [outs[i] for i in with_face], [faces[i].matrix for i in with_face]
                ),
            )
        )
        reasons: list[str | None] = [None if f.found else f.reason for f in faces]
        inputs, input_idx = [], []
        for i in with_face:
            low = contexts[i].low
            if low is None:
                reasons[i] = "id_sim_input: no model input given"
            elif tuple(low.shape[-2:]) != tuple(reference.shape[-2:]):
                reasons[i] = (
                    f"id_sim_input: model input {tuple(low.shape[-2:])} and reference "
                    f"{tuple(reference.shape[-2:])} differ in size: the reference's alignment does not apply"
                )
            else:
                inputs.append(to_uint8_hwc(low))
                input_idx.append(i)
        in_emb = dict(
            zip(
                input_idx,
                self.pipeline.input_embeddings(
                    inputs,
                    [faces[i].matrix for i in input_idx],
                    [contexts[i].reference_key for i in input_idx],
                ),
            )
        )
        rows = []
        for i in range(n):
            row = {"id_sim": float("nan"), "id_sim_input": float("nan")}
            if i in out_emb:
                row["id_sim"] = _cosine(out_emb[i], faces[i].embedding)
            if i in in_emb:
                row["id_sim_input"] = _cosine(out_emb[i], in_emb[i])
            rows.append(row)
        self.last_reasons = reasons
        self.last_face_counts = [f.n_faces for f in faces]
        return rows
