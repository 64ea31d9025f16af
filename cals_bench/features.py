"""Per-image feature vectors for the fairness audit (group-wise distribution comparisons such as GPI).

A :class:`FeatureExtractor` maps a batch of float RGB ``(B, 3, H, W)`` images in [0, 1] to a float32
``(B, dim)`` array; a row of NaN means "undefined for this sample" (e.g. no face), with the reason in
``last_reasons``. ``extract(..., role="reference")`` results are cached in the run's
:class:`~cals_bench.cache.FeatureCache` (keyed like the metrics' reference features); outputs never are.

Built-in extractors (``build_extractor(name)``):
- ``identity-sface`` / ``identity-insightface``: unit face embeddings (128-d SFace / 512-d ArcFace) of
  the face found on the reference and aligned to the ArcFace template (:mod:`cals_bench.face.pipeline`).
  For ``role="output"`` the output is warped with its reference's transform (looked up by
  ``reference_key``, so call the reference role first, as the engine does); an output whose reference was
  never seen is aligned on its own detection instead. ``face = True``: the engine feeds face samples only.
- ``alexnet-pooled``: the LPIPS AlexNet backbone's five channel-normalised activations (exactly what
  LPIPS compares), each averaged over space and concatenated: 64 + 192 + 384 + 256 + 256 = 1152-d. For
  references it reuses the LPIPS metric's cached feature maps when present, and with
  :func:`share_backbones` (the engine links it to the run's LPIPS metric) it pools the features LPIPS
  computed on the same batch: one backbone pass per image per run.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from cals_bench.cache import CacheKey
from cals_bench.errors import CalsBenchError
from cals_bench.face.pipeline import FacePipeline, to_uint8_hwc
from cals_bench.metrics.base import SampleContext
from cals_bench.registry import Registry

Role = Literal["output", "reference"]


class FeatureExtractor(abc.ABC):
    """Base class: ``name``, ``dim``, ``face``; ``extract(images, contexts, role)`` -> ``(B, dim)``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    face: ClassVar[bool] = False

    def __init__(self) -> None:
        self.dim = 0
        self.cache: Any = None
        self.device = torch.device("cpu")
        self.weights_used: dict[str, str] = {}
        self.options: dict[str, Any] = {}
        self.last_reasons: list[str | None] = []

    def available(self) -> tuple[bool, str]:
        return True, ""

    def to(self, device: torch.device | str) -> FeatureExtractor:
        self.device = torch.device(device)
        return self

    def attach_cache(self, cache: Any) -> None:
        self.cache = cache

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "dim": self.dim,
            "face": self.face,
            "options": dict(self.options),
            "weights": dict(self.weights_used),
        }

    @abc.abstractmethod
    def extract(
        self, images: torch.Tensor, contexts: list[SampleContext], role: Role = "output"
    ) -> np.ndarray:
        """float32 ``(B, dim)`` features of float RGB ``(B, 3, H, W)`` images in [0, 1]."""


# name -> factory of a FeatureExtractor: the built-ins (registered at the end of this module), then what
# other packages declare in the entry-point group ``cals_bench.feature_extractors`` (imported when used)
FEATURE_EXTRACTORS: Registry[Callable[[], FeatureExtractor]] = Registry(
    "feature extractor", builtin_modules=(__name__,)
)


def register_extractor(name: str, factory: Callable[[], FeatureExtractor]) -> Callable[[], FeatureExtractor]:
    """Make ``factory()`` (a FeatureExtractor subclass or a function returning one) available as ``name``
    for a protocol's ``audit.gpi_features``; a different factory under a taken name is refused."""
    return FEATURE_EXTRACTORS.register(name, factory)


def build_extractor(name: str) -> FeatureExtractor:
    """An extractor by registered name (``identity-sface``, ``identity-insightface``, ``alexnet-pooled``)."""
    return FEATURE_EXTRACTORS.get(name)()


def _check_role(role: str) -> None:
    if role not in ("output", "reference"):
        raise CalsBenchError(f"feature role must be 'output' or 'reference', not {role!r}")


class IdentityFeatures(FeatureExtractor):
    """Unit face embeddings aligned on the reference's face (see the module docstring)."""

    face = True

    def __init__(self, backend: str = "sface", **recognizer_options: Any) -> None:
        super().__init__()
        self.pipeline = FacePipeline(backend, recognizer_options=recognizer_options)
        self.backend = backend
        self.name = f"identity-{backend}"  # type: ignore[misc]
        self.summary = f"unit {backend} face embeddings aligned on the reference's face"  # type: ignore[misc]
        self.dim = self.pipeline.recognizer.dim
        self.options = {"backend": backend, **self.pipeline.recognizer.options}

    def available(self) -> tuple[bool, str]:
        ok, reason = self.pipeline.available()
        if ok:
            self.weights_used = self.pipeline.weights_used
            self.dim = self.pipeline.recognizer.dim
        return ok, reason

    def attach_cache(self, cache: Any) -> None:
        self.cache = cache
        self.pipeline.cache = cache

    def extract(
        self, images: torch.Tensor, contexts: list[SampleContext], role: Role = "output"
    ) -> np.ndarray:
        _check_role(role)
        self.pipeline.load()
        self.weights_used = self.pipeline.weights_used
        self.dim = self.pipeline.recognizer.dim
        imgs = [to_uint8_hwc(images[i]) for i in range(len(contexts))]
        out = np.full((len(imgs), self.dim), np.nan, dtype=np.float32)
        reasons: list[str | None] = [None] * len(imgs)
        if role == "reference":
            faces = self.pipeline.reference_faces(imgs, [c.reference_key for c in contexts])
        else:
            faces = [self.pipeline.cached_reference(c.reference_key) for c in contexts]
            unseen = [i for i, f in enumerate(faces) if f is None or f.shape != imgs[i].shape[:2]]
            own = self.pipeline.reference_faces([imgs[i] for i in unseen], [""] * len(unseen))
            for j, i in enumerate(unseen):
                faces[i] = own[j]
        found = [i for i, f in enumerate(faces) if f is not None and f.found]
        for i, f in enumerate(faces):
            if f is None or not f.found:
                reasons[i] = "no face found (YuNet)"
        if role == "reference":
            for i in found:
                out[i] = faces[i].embedding
        elif found:
            emb = self.pipeline.embed_aligned([imgs[i] for i in found], [faces[i].matrix for i in found])
            out[found] = emb
        self.last_reasons = reasons
        return out


class AlexNetPooledFeatures(FeatureExtractor):
    """Spatial means of the LPIPS AlexNet backbone's five channel-normalised activations (1152-d)."""

    name = "alexnet-pooled"
    summary = (
        "LPIPS AlexNet channel-normalised activations, averaged over space, 5 layers concatenated (1152-d)"
    )
    face = False

    def __init__(self) -> None:
        super().__init__()
        from cals_bench.metrics.lpips import LAYOUTS

        self.dim = sum(LAYOUTS["alex"].channels)
        self.options = {"net": "alex", "pooling": "spatial mean per layer, concatenated"}
        self._lpips: Any = None

    def _metric(self) -> Any:
        if self._lpips is None:
            from cals_bench.metrics.lpips import LearnedPerceptualImagePatchSimilarity

            self._lpips = LearnedPerceptualImagePatchSimilarity(net="alex").to(self.device)
            self._lpips.attach_cache(self.cache)
        return self._lpips

    def available(self) -> tuple[bool, str]:
        ok, reason = self._metric().available()
        if ok:
            self.weights_used = {
                "backbone/alexnet-features": self._metric().weights_used["backbone/alexnet-features"]
            }
        return ok, reason

    def to(self, device: torch.device | str) -> AlexNetPooledFeatures:
        super().to(device)
        if self._lpips is not None:
            self._lpips.to(self.device)
        return self

    def attach_cache(self, cache: Any) -> None:
        self.cache = cache
        if self._lpips is not None:
            self._lpips.attach_cache(cache)

    def _pooled_key(self, ctx: SampleContext) -> CacheKey | None:
        full = self._metric().cache_key(ctx)
        if full is None:
            return None
        return CacheKey.make(
            "alexnet-pooled", full.reference_key, dict(full.weights), full.preprocessing + " pool=mean"
        )

    def extract(
        self, images: torch.Tensor, contexts: list[SampleContext], role: Role = "output"
    ) -> np.ndarray:
        _check_role(role)
        metric = self._metric()
        model = metric.load_model()
        self.weights_used = {"backbone/alexnet-features": metric.weights_used["backbone/alexnet-features"]}
        n = len(contexts)
        out = np.full((n, self.dim), np.nan, dtype=np.float32)
        todo = list(range(n))
        keys: list[CacheKey | None] = [None] * n
        if role == "reference" and self.cache is not None:
            todo = []
            for i, ctx in enumerate(contexts):
                keys[i] = self._pooled_key(ctx)
                hit = self.cache.get(keys[i]) if keys[i] is not None else None
                if hit is None and keys[i] is not None:  # the LPIPS metric's full maps, if it ran first
                    maps = self.cache.get(metric.cache_key(ctx))
                    if maps is not None:
                        hit = {
                            "pooled": np.concatenate([maps[f"layer{k}"].mean(axis=(0, 1)) for k in range(5)])
                        }
                        self.cache.put(keys[i], hit)
                if hit is None:
                    todo.append(i)
                else:
                    out[i] = hit["pooled"]
        if todo:
            with torch.inference_mode():
                shared = metric.last_features(images.to(self.device, torch.float32), role)
                if shared is not None:  # the LPIPS metric's pass over this very batch: no second pass
                    sel = torch.tensor(todo, device=shared[0].device)
                    feats = [f.index_select(0, sel) for f in shared]
                else:
                    feats = model.normalized_features(images[todo].to(self.device, torch.float32))
                pooled = torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1).cpu().numpy()
            for j, i in enumerate(todo):
                out[i] = pooled[j]
                if keys[i] is not None:
                    self.cache.put(keys[i], {"pooled": pooled[j]})
        self.last_reasons = [None] * n
        return out


def share_backbones(metrics: list[Any], extractors: list[FeatureExtractor]) -> int:
    """Let extractors read the features a metric computes on the same batch instead of a second pass.

    An ``alexnet-pooled`` extractor uses the run's LPIPS-alex metric (same backbone weights and
    normalisation) as its backbone; that metric then keeps its last batch's features until the next
    batch. An ``identity-*`` extractor uses the face pipeline of the run's ``id_sim`` metric when their
    recogniser and detector settings are the same, so each aligned output crop is embedded once (the
    pipeline remembers recent crop embeddings by content). The engine calls this once per run, after
    building both. Returns the number of links made.
    """
    from cals_bench.metrics.lpips import LearnedPerceptualImagePatchSimilarity

    lpips_alex = next(
        (m for m in metrics if isinstance(m, LearnedPerceptualImagePatchSimilarity) and m.net == "alex"), None
    )
    links = 0
    for ext in extractors:
        if isinstance(ext, AlexNetPooledFeatures) and lpips_alex is not None:
            ext._lpips = lpips_alex
            lpips_alex.keep_features = True
            links += 1
        elif isinstance(ext, IdentityFeatures):
            pipeline = _same_face_pipeline(metrics, ext.pipeline)
            if pipeline is not None:  # one detector + recogniser: each aligned crop is embedded once
                pipeline.cache = ext.pipeline.cache if pipeline.cache is None else pipeline.cache
                ext.pipeline = pipeline
                links += 1
    return links


def _same_face_pipeline(metrics: list[Any], pipeline: FacePipeline) -> FacePipeline | None:
    """The face pipeline of a metric (``id_sim``) with the same recogniser and detector settings, if any."""
    for m in metrics:
        other = getattr(m, "pipeline", None)
        if (
            isinstance(other, FacePipeline)
            and other.backend == pipeline.backend
            and other.recognizer.options == pipeline.recognizer.options
            and other.detector.preprocessing == pipeline.detector.preprocessing
        ):
            return other
    return None


def _sface() -> IdentityFeatures:
    return IdentityFeatures("sface")


def _insightface() -> IdentityFeatures:
    return IdentityFeatures("insightface")


register_extractor("identity-sface", _sface)
register_extractor("identity-insightface", _insightface)
register_extractor("alexnet-pooled", AlexNetPooledFeatures)
