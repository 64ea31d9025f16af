"""Five-point similarity alignment to the standard 112x112 ArcFace template.

The template (x, y in pixels of a 112x112 crop) is the one every ArcFace-family recogniser was trained on
(insightface ``arcface_src``, OpenCV ``FaceRecognizerSF::alignCrop``): the subject's right eye, left eye,
nose tip, right and left mouth corners, in that order (the first point is on the image's left for a
frontal face). A similarity transform (rotation, uniform scale, translation; no reflection, no shear) is
fitted by least squares (Umeyama 1991) from the detected landmarks to the template and applied with
bilinear interpolation and a black border, as both upstreams do.
"""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 112
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping points ``src`` (N, 2) onto ``dst`` (N, 2); returns the 2x3 matrix.

    Umeyama's closed form: SVD of the cross-covariance, with the reflection case excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (N>=2, 2) point sets of one shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all equal; no similarity transform")
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ np.diag(e) @ vt
    scale = float((sig * e).sum() / var_s)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix[:, :2].T + matrix[:, 2]


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity taking five detected landmarks (YuNet/insightface order) onto the template."""
    return similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), ARCFACE_TEMPLATE_112)


def warp_face(rgb: np.ndarray, matrix: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Warp uint8 ``(H, W, 3)`` by ``matrix`` into a ``(size, size, 3)`` crop (bilinear, black border)."""
    return cv2.warpAffine(
        np.ascontiguousarray(rgb),
        np.asarray(matrix, dtype=np.float64),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
