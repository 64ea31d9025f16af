"""The reference-side face pipeline shared by the identity metric and the identity feature extractor.

For a reference image: detect faces (YuNet), choose one (the largest), fit the similarity transform from
its five landmarks to the ArcFace template, warp and embed. The transform found on the reference is then
applied unchanged to any image of the same size that should be compared with it (the model output, the
model input), so that all embeddings see the same face region.

Each reference's result is kept in two cache entries (see :mod:`cals_bench.cache`): the detection and
transform (kind ``face-detection``, keyed by the detector weights and settings) and the embedding (kind
``face-embedding/<backend>``, keyed by detector and recogniser weights and both preprocessings). A
reference without a face is cached as such (``n_faces = 0``), so it is not searched again. Embeddings of
model inputs are cached too (kind ``face-input-embedding/<backend>``), keyed by the reference key plus the
sha256 of the input's 8-bit pixels, since every model of a protocol sees the same inputs.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cals_bench.cache import CacheKey
from cals_bench.face.align import alignment_matrix, warp_face
from cals_bench.face.detect import YuNetDetector
from cals_bench.face.recognize import FaceRecognizer, build_recognizer

NO_FACE_REASON = "no face found in the reference (YuNet)"
_RECENT_MAX = 20000
_EMBEDDED_KEEP = 4096  # crop embeddings remembered (a few batches' outputs and inputs; ~2 KiB each)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """float ``(3, H, W)`` in [0, 1] (already on the 8-bit grid) -> uint8 RGB ``(H, W, 3)``."""
    return x.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@dataclass(frozen=True)
class ReferenceFace:
    """What the pipeline knows about one reference: the chosen face's transform and embedding, or why not.

    ``matrix`` is the 2x3 similarity (reference pixels -> 112x112 template crop); ``n_faces`` how many
    faces passed the detector's threshold; ``score`` the chosen face's detector score.
    """

    matrix: np.ndarray | None
    embedding: np.ndarray | None
    n_faces: int
    score: float
    shape: tuple[int, int]

    @property
    def found(self) -> bool:
        return self.matrix is not None

    @property
    def reason(self) -> str | None:
        return None if self.found else NO_FACE_REASON


class FacePipeline:
    """Detector + recogniser + caches. ``backend`` names the recogniser (``sface``, ``insightface``);
    ``recognizer_options`` go to it; ``detector_options`` to :class:`YuNetDetector`."""

    def __init__(
        self,
        backend: str = "sface",
        *,
        recognizer_options: dict[str, Any] | None = None,
        detector_options: dict[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.recognizer: FaceRecognizer = build_recognizer(backend, **(recognizer_options or {}))
        self.detector = YuNetDetector(**(detector_options or {}))
        self.cache: Any = None
        self._recent: OrderedDict[str, ReferenceFace] = OrderedDict()
        # embeddings of the latest aligned crops, by crop content: a metric and a GPI feature extractor that
        # share this pipeline (features.share_backbones) embed each output once per run
        self._embedded: OrderedDict[bytes, np.ndarray] = OrderedDict()

    # -- set-up -----------------------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        from cals_bench.errors import WeightsError

        try:
            self.detector.load()
        except WeightsError as exc:
            return False, f"face detector: {exc}"
        return self.recognizer.available()

    def load(self) -> FacePipeline:
        self.detector.load()
        self.recognizer.load()
        return self

    @property
    def weights_used(self) -> dict[str, str]:
        return {**self.detector.weights_used, **self.recognizer.weights_used}

    def _det_key(self, reference_key: str) -> CacheKey:
        return CacheKey.make(
            "face-detection", reference_key, self.detector.weights_identity, self.detector.preprocessing
        )

    def _emb_key(self, kind: str, reference_key: str) -> CacheKey:
        ident = {**self.detector.weights_identity, **self.recognizer.weights_identity}
        align = "align=arcface-112 umeyama bilinear"
        prep = f"{self.detector.preprocessing} | {align} | {self.recognizer.preprocessing}"
        return CacheKey.make(f"{kind}/{self.backend}", reference_key, ident, prep)

    # -- references ---------------------------------------------------------------------------------
    def cached_reference(self, reference_key: str) -> ReferenceFace | None:
        """A reference's face from memory or the disk cache, without its image (None when never seen)."""
        if not reference_key:
            return None
        self.load()
        face = self._recent.get(reference_key)
        if face is not None or self.cache is None:
            return face
        det = self.cache.get(self._det_key(reference_key))
        if det is None:
            return None
        n_faces = int(det["n_faces"])
        if n_faces == 0:
            face = ReferenceFace(None, None, 0, float("nan"), tuple(int(v) for v in det["shape"]))
        else:
            emb = self.cache.get(self._emb_key("face-embedding", reference_key))
            if emb is None:
                return None
            face = ReferenceFace(
                np.array(det["matrix"]),
                np.array(emb["embedding"]),
                n_faces,
                float(det["score"]),
                tuple(int(v) for v in det["shape"]),
            )
        self._remember(reference_key, face)
        return face

    def reference_faces(self, references: list[np.ndarray], reference_keys: list[str]) -> list[ReferenceFace]:
        """Faces of uint8 RGB ``(H, W, 3)`` references (cached by key; an empty key is never cached)."""
        self.load()
        out: list[ReferenceFace | None] = []
        for img, key in zip(references, reference_keys):
            face = self.cached_reference(key) if key else None
            if face is not None and face.shape != img.shape[:2]:
                face = None  # a reference_key reused for an image of another size: recompute
            out.append(face)
        todo = [i for i, f in enumerate(out) if f is None]
        searched = {i: self.detector.detect(references[i]) for i in todo}
        matrices = {
            i: alignment_matrix(s.chosen.landmarks) for i, s in searched.items() if s.chosen is not None
        }
        embedded = dict(
            zip(matrices, self.embed_aligned([references[i] for i in matrices], list(matrices.values())))
        )
        for i in todo:
            s, key = searched[i], reference_keys[i]
            shape = tuple(int(v) for v in references[i].shape[:2])
            if i in matrices:
                face = ReferenceFace(matrices[i], embedded[i], s.n_faces, float(s.chosen.score), shape)
            else:
                face = ReferenceFace(None, None, 0, float("nan"), shape)
            out[i] = face
            if key:
                self._store(key, face, s)
        return out  # type: ignore[return-value]

    def _store(self, key: str, face: ReferenceFace, search: Any) -> None:
        self._remember(key, face)
        if self.cache is None:
            return
        chosen = search.chosen
        self.cache.put(
            self._det_key(key),
            {
                "n_faces": np.array(face.n_faces),
                "shape": np.array(face.shape),
                "score": np.array(face.score),
                "matrix": face.matrix if face.found else np.full((2, 3), np.nan),
                "box": chosen.box if chosen is not None else np.full(4, np.nan),
                "landmarks": chosen.landmarks if chosen is not None else np.full((5, 2), np.nan),
            },
        )
        if face.found:
            self.cache.put(self._emb_key("face-embedding", key), {"embedding": face.embedding})

    def clear_memory(self) -> None:
        """Forget the references held in memory (the disk cache keeps them)."""
        self._recent.clear()

    def _remember(self, key: str, face: ReferenceFace) -> None:
        self._recent[key] = face
        self._recent.move_to_end(key)
        while len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)

    # -- other images aligned like their reference ----------------------------------------------------
    def embed_aligned(self, images: list[np.ndarray], matrices: list[np.ndarray]) -> np.ndarray:
        """Warp each uint8 RGB image by its matrix to the 112x112 template and embed: ``(N, dim)``."""
        if not images:
            return np.zeros((0, self.recognizer.dim), dtype=np.float32)
        crops = np.stack([warp_face(img, m) for img, m in zip(images, matrices)])
        digests = [hashlib.sha1(c.tobytes()).digest() + repr(c.shape).encode() for c in crops]
        out = np.zeros((len(crops), self.recognizer.dim), dtype=np.float32)
        todo = [i for i, d in enumerate(digests) if d not in self._embedded]
        if todo:
            new = self.recognizer.embed(crops[todo])
            for j, i in enumerate(todo):
                self._embedded[digests[i]] = new[j]
        for i, d in enumerate(digests):
            out[i] = self._embedded[d]
            self._embedded.move_to_end(d)
        while len(self._embedded) > _EMBEDDED_KEEP:
            self._embedded.popitem(last=False)
        return out

    def input_embeddings(
        self, inputs: list[np.ndarray], matrices: list[np.ndarray], reference_keys: list[str]
    ) -> np.ndarray:
        """Embeddings of model inputs aligned by their references' transforms, cached by input content."""
        keys = [
            self._emb_key(
                "face-input-embedding", f"{rk}|input-sha256={hashlib.sha256(img.tobytes()).hexdigest()}"
            )
            if rk and self.cache is not None
            else None
            for img, rk in zip(inputs, reference_keys)
        ]
        got = [self.cache.get(k) if k is not None else None for k in keys]
        todo = [i for i, g in enumerate(got) if g is None]
        new = self.embed_aligned([inputs[i] for i in todo], [matrices[i] for i in todo])
        out = np.zeros((len(inputs), self.recognizer.dim), dtype=np.float32)
        for i, g in enumerate(got):
            if g is not None:
                out[i] = g["embedding"]
        for j, i in enumerate(todo):
            out[i] = new[j]
            if keys[i] is not None:
                self.cache.put(keys[i], {"embedding": new[j]})
        return out
