"""Faces: YuNet detection with five landmarks, ArcFace-template alignment, recognition backends, and the
reference-side pipeline shared by the identity metric and the identity feature extractor."""

from cals_bench.face.align import (
    ALIGNED_SIZE,
    ARCFACE_TEMPLATE_112,
    alignment_matrix,
    similarity_transform,
    transform_points,
    warp_face,
)
from cals_bench.face.detect import FaceDetection, FaceSearch, YuNetDetector
from cals_bench.face.recognize import (
    RECOGNIZERS,
    FaceRecognizer,
    InsightFaceRecognizer,
    SFaceRecognizer,
    build_recognizer,
    l2_normalize,
)

__all__ = [
    "ALIGNED_SIZE",
    "ARCFACE_TEMPLATE_112",
    "RECOGNIZERS",
    "FaceDetection",
    "FaceRecognizer",
    "FaceSearch",
    "InsightFaceRecognizer",
    "SFaceRecognizer",
    "YuNetDetector",
    "alignment_matrix",
    "build_recognizer",
    "l2_normalize",
    "similarity_transform",
    "transform_points",
    "warp_face",
]
