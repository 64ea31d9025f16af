"""Re-run the official low-light models' own test procedures on LOL-v1 eval15 (CPU) and score their PNGs.

Usage (from the repository root; README.md beside this file explains each recipe's changes):

    python scripts/upstream/reproduce.py [MODEL ...] [--checkout MODEL=DIR ...] [--weights DIR] [--data DIR]

For each recipe: take the upstream code at the pinned commit (a clone in --cache, or an existing --checkout),
copy its Python files to a temporary folder and apply the recipe's documented text edits there (CPU instead
of CUDA, unused torchvision imports dropped), import the upstream network and loading code from that copy,
run the upstream test loop on the 15 eval15 low images with the official weight files (sha256-checked against
the project's registry), save PNGs exactly as the upstream script saves them, and score those PNGs with the
suite's conventions (tests/helpers.py ``skimage_scores``: RGB, uint8, whole image, scikit-image PSNR/SSIM).
The table compares them with the numbers the baseline tests assert; exit status 1 when a difference exceeds
the tolerance stated in that test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "llie"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "lol-v1"


@dataclass(frozen=True)
class Expected:
    """One assertion of a baseline test about the upstream PNGs of one variant."""

    variant: str
    test: str  # "tests/test_baselines_X.py::test_name": the test asserting these numbers
    psnr: float
    ssim: float | None  # None where the test asserts PSNR only
    psnr_tol: float
    ssim_tol: float | None
    images: tuple[str, ...] = ()  # the scored eval15 images (all 15 when empty)
    rows: int | None = None  # upstream crops the height to this; the references are cropped alike


@dataclass(frozen=True)
class Recipe:
    repo: str  # OWNER/NAME on GitHub
    commit: str
    weights: dict[str, str]  # registry name (cals_bench.weights.get_spec) -> that file's path upstream
    root: str  # folder of the checkout that the upstream scripts run from (put on sys.path)
    run: Callable[[Context], None]
    expected: tuple[Expected, ...]
    edits: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # file -> (old, new), all


@dataclass
class Context:
    low: list[Path]  # the eval15 low images, sorted by name
    weight_files: dict[str, Path]
    out_root: Path
    workdir: Path  # an empty temporary folder (the upstream scripts' working directory where they need one)

    def weight(self, name: str) -> Path:
        return self.weight_files[name]

    def out(self, variant: str) -> Path:
        path = self.out_root / variant
        path.mkdir(parents=True, exist_ok=True)
        return path


# ------------------------------------------------------------------------------------------------------------
# What the upstream scripts do with torchvision, written out (PyPI's torchvision wheel is CUDA-linked and
# cannot load beside the project's CPU torch, so it is not used): same formulas, same dtypes.


def tv_to_tensor(img: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor`` of an 8-bit RGB image: (3, H, W) float32, value / 255."""
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous().float().div(255)


def tv_save_image(t: torch.Tensor, path: Path) -> None:
    """torchvision ``utils.save_image`` of a (1, 3, H, W) tensor: x * 255 + 0.5, clamp, truncate (rounds)."""
    arr = t[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    Image.fromarray(arr).save(path)


def tv_to_pil(t: torch.Tensor) -> Image.Image:
    """torchvision ``ToPILImage`` of a (3, H, W) float tensor: ``mul(255).byte()`` (truncates)."""
    return Image.fromarray(np.transpose(t.mul(255).byte().numpy(), (1, 2, 0)), mode="RGB")


def save_clip_truncate(t: torch.Tensor, path: Path) -> None:
    """SCI's and RUAS's ``save_images``: ``np.clip(x * 255.0, 0, 255.0).astype('uint8')``."""
    image_numpy = np.transpose(t[0].cpu().float().numpy(), (1, 2, 0))
    Image.fromarray(np.clip(image_numpy * 255.0, 0, 255.0).astype("uint8")).save(path, "png")


@contextlib.contextmanager
def cpu_torch_load():
    """The one change every upstream load needs on CPU: ``torch.load(..., map_location="cpu")``. Also
    ``weights_only=False``, the default of the torch versions these scripts were written for (URetinex-Net's
    checkpoints hold an argparse.Namespace); the files are the sha256-checked official ones."""
    original = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("map_location", "cpu")
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


@contextlib.contextmanager
def chdir(path: Path):
    """Run in ``path`` (some upstream code opens files relative to its working folder)."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def load_file(path: Path, name: str):
    """Import one upstream script as a module (its folder is already on sys.path for its own imports)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------------------
# Recipes: each mirrors the upstream test script named in its docstring, with its .cuda() calls dropped.


def run_zero_dce(ctx: Context) -> None:
    """Zero-DCE_code/lowlight_test.py: numpy / 255.0 input, ``_, enhanced, _ = net(x)``, save_image."""
    model = importlib.import_module("model")
    net = model.enhance_net_nopool()
    net.load_state_dict(torch.load(ctx.weight("llie/zero-dce")))
    with torch.no_grad():
        for path in ctx.low:
            x = torch.from_numpy(np.asarray(Image.open(path)) / 255.0).float().permute(2, 0, 1).unsqueeze(0)
            _, enhanced, _ = net(x)
            tv_save_image(enhanced, ctx.out("default") / path.name)


def run_zero_dce_pp(ctx: Context) -> None:
    """Zero-DCE++/lowlight_test.py: crop H and W down to multiples of scale_factor 12 (600x400 -> 600x396)."""
    model = importlib.import_module("model")
    net = model.enhance_net_nopool(12)
    net.load_state_dict(torch.load(ctx.weight("llie/zero-dce++")))
    with torch.no_grad():
        for path in ctx.low:
            x = torch.from_numpy(np.asarray(Image.open(path)) / 255.0).float()
            h, w = x.shape[0] // 12 * 12, x.shape[1] // 12 * 12
            enhanced, _ = net(x[0:h, 0:w, :].permute(2, 0, 1).unsqueeze(0))
            tv_save_image(enhanced, ctx.out("default") / path.name)


def run_sci(ctx: Context) -> None:
    """test.py: ToTensor input, ``Finetunemodel(weights)``, eval(), ``i, r = model(x)``, save r (truncated)."""
    model = importlib.import_module("model")
    for variant in ("easy", "medium", "difficult"):
        net = model.Finetunemodel(str(ctx.weight(f"llie/sci-{variant}")))
        net.eval()
        with torch.no_grad():
            for path in ctx.low:
                _, r = net(tv_to_tensor(Image.open(path))[None])
                save_clip_truncate(r, ctx.out(variant) / path.name)


def run_ruas(ctx: Context) -> None:
    """test.py --model lol|upe|dark: Network() (which first loads ./model/denoise.pt from the working folder),
    the checkpoint over it, ToTensor input; saves u_list[-1] for lol, u_list[-2] for upe and dark (truncated).
    Like test.py, the network is left in its default (train) mode."""
    (ctx.workdir / "model").mkdir()
    (ctx.workdir / "model" / "denoise.pt").symlink_to(ctx.weight("llie/ruas-denoise"))
    model = importlib.import_module("model")
    with chdir(ctx.workdir):
        for variant in ("lol", "upe", "dark"):
            net = model.Network()
            net.load_state_dict(torch.load(ctx.weight(f"llie/ruas-{variant}")))
            for p in net.parameters():
                p.requires_grad = False
            with torch.no_grad():
                for path in ctx.low:
                    u_list, _ = net(tv_to_tensor(Image.open(path))[None])
                    save_clip_truncate(
                        u_list[-1] if variant == "lol" else u_list[-2], ctx.out(variant) / path.name
                    )


def run_sgz(ctx: Context) -> None:
    """test.py (CPU-aware upstream): utils.image_from_path, utils.scale_image (crop to multiples of 12),
    ``enhance_net_nopool(12, conv_type='dsc')``, eval(), save_image."""
    model = importlib.import_module("modeling.model")
    utils = importlib.import_module("utils")
    device = torch.device("cpu")
    net = model.enhance_net_nopool(12, conv_type="dsc").to(device)
    net.load_state_dict(torch.load(ctx.weight("llie/sgz"), map_location=device))
    net.eval()
    for path in ctx.low:
        x = utils.scale_image(utils.image_from_path(str(path)), 12, device)
        enhanced, _ = net(x)
        tv_save_image(enhanced.detach(), ctx.out("default") / path.name)


def run_iat(ctx: Context) -> None:
    """evaluation_lol_v1.py (lol_v1 weights: ToTensor input) and evaluation_lol_v2.py (lol weights: numpy
    / 255.0, Normalize(0.5, 0.5), float32), both ``IAT()``, eval(), ``_, _, out = model(x)``, save_image (the
    v2 script's save line is commented out upstream; it is what the test's per-image numbers score)."""
    iat = importlib.import_module("model.IAT_main")
    for variant, weight in (("lol_v1", "llie/iat-lol_v1"), ("lol", "llie/iat-lol")):
        net = iat.IAT()
        net.load_state_dict(torch.load(ctx.weight(weight)))
        net.eval()
        with torch.no_grad():
            for path in ctx.low:
                if variant == "lol_v1":
                    x = tv_to_tensor(Image.open(path))
                else:
                    x = torch.from_numpy(np.asarray(Image.open(path)) / 255.0).permute(2, 0, 1)
                    x = ((x - 0.5) / 0.5).float()
                _, _, out = net(x[None])
                tv_save_image(out, ctx.out(variant) / path.name)


def run_pairlie(ctx: Context) -> None:
    """eval.py: ToTensor input, ``L, R, X = model(x)``, ``I = L ** 0.14 * R`` (the authors' LOL exponent; the
    script's default is 0.2), saved by ToPILImage (truncates)."""
    net = importlib.import_module("net.net").net()
    net.load_state_dict(torch.load(ctx.weight("llie/pairlie"), map_location=lambda storage, loc: storage))
    net.eval()
    with torch.no_grad():
        for path in ctx.low:
            L, R, _ = net(tv_to_tensor(Image.open(path))[None])
            tv_to_pil((torch.pow(L, 0.14) * R).squeeze(0)).save(ctx.out("default") / path.name)


def run_uretinex(ctx: Context) -> None:
    """test.py (blind, --ratio 5) and evaluate.py (ratio from the high image): their own Inference classes,
    run()/evaluate() unchanged (save by utils.np_save_TensorImg, truncating); the outputs are renamed back
    to the input names."""
    src = Path.cwd()
    common = {
        "Decom_model_low_path": str(ctx.weight("llie/uretinex-init-low")),
        "unfolding_model_path": str(ctx.weight("llie/uretinex-unfolding")),
        "adjust_model_path": str(ctx.weight("llie/uretinex-l-adjust")),
    }
    evaluate = load_file(src / "evaluate.py", "uretinex_evaluate")
    raw = ctx.workdir / "gt_guided"
    opts = Namespace(
        low_dir=str(ctx.low[0].parent),
        high_dir=str(ctx.low[0].parent.parent / "high"),
        output=str(raw),
        Decom_model_high_path=str(ctx.weight("llie/uretinex-init-high")),
        **common,
    )
    inference = evaluate.Inference(opts)
    inference.transform = tv_to_tensor
    inference.evaluate()
    for path in ctx.low:
        shutil.move(raw / f"{path.stem}_URetinexNet.png", ctx.out("gt_guided") / path.name)
    test = load_file(src / "test.py", "uretinex_test")
    raw = ctx.workdir / "blind"
    inference = test.Inference(Namespace(img_path="", output=str(raw), ratio=5, **common))
    inference.transform = tv_to_tensor
    for path in ctx.low:
        inference.opts.img_path = str(path)
        inference.run(str(path))
        shutil.move(raw / f"{path.stem}_5_URetinexNet.png", ctx.out("blind") / path.name)


def run_retinexnet(ctx: Context) -> None:
    """predict.py: ``RetinexNet().predict(names, res_dir, ckpt_dir)`` unchanged but for saving its
    [input | output] image as PNG instead of JPEG; the output half is kept (clipped, truncated to uint8)."""
    model = importlib.import_module("model")
    ckpts = ctx.workdir / "ckpts"
    for phase in ("Decom", "Relight"):
        (ckpts / phase).mkdir(parents=True)
        (ckpts / phase / "9200.tar").symlink_to(ctx.weight(f"llie/retinexnet-{phase.lower()}"))
    raw = ctx.workdir / "res"
    raw.mkdir()
    model.RetinexNet().predict([str(p) for p in ctx.low], res_dir=str(raw), ckpt_dir=str(ckpts))
    for path in ctx.low:
        both = np.asarray(Image.open(raw / path.name))
        Image.fromarray(both[:, both.shape[1] // 2 :]).save(ctx.out("default") / path.name)


_NO_CUDA = (".cuda()", "")
_TIMM_FREE = (  # IAT only, and only where timm cannot be imported (timm needs torchvision): exact in eval mode
    ("from timm.models.vision_transformer import VisionTransformer, _cfg\n", ""),  # unused
    ("from timm.models.registry import register_model\n", ""),  # unused
    (
        "from timm.models.layers import trunc_normal_, DropPath, to_2tuple\n",
        "from torch.nn.init import trunc_normal_\n"  # initialisation only; the weights are loaded over it
        "DropPath = lambda p: nn.Identity()\n"  # stochastic depth is the identity in eval()
        "to_2tuple = lambda x: (x, x)\n",
    ),
)

SCI_TEST = "tests/test_baselines_sci.py::test_reproduces_lol_v1"
RUAS_OTHER = "tests/test_baselines_ruas.py::test_other_variants_match_upstream_on_three_pairs"
IAT_LOL = "tests/test_baselines_iat.py::test_lol_variant_matches_the_official_script_per_image"
FIRST_THREE = ("1.png", "111.png", "146.png")

RECIPES: dict[str, Recipe] = {
    "zero-dce": Recipe(
        repo="Li-Chongyi/Zero-DCE",
        commit="e0f4adc54d0f23348c4a9b84acc08fe8778d5bfd",
        weights={"llie/zero-dce": "Zero-DCE_code/snapshots/Epoch99.pth"},
        root="Zero-DCE_code",
        run=run_zero_dce,
        expected=(
            Expected(
                "default",
                "tests/test_baselines_zero_dce.py::test_zero_dce_reproduces_lol_v1",
                14.8607,
                0.5588,
                0.005,
                0.001,
            ),
        ),
    ),
    "zero-dce++": Recipe(
        repo="Li-Chongyi/Zero-DCE_extension",
        commit="09f202b690f82da939b8e6ec8535960ae97ad8bd",
        weights={"llie/zero-dce++": "Zero-DCE++/snapshots_Zero_DCE++/Epoch99.pth"},
        root="Zero-DCE++",
        run=run_zero_dce_pp,
        expected=(
            Expected(
                "default",
                "tests/test_baselines_zero_dce.py::test_zero_dce_pp_reproduces_lol_v1",
                15.3451,
                0.5681,
                0.005,
                0.001,
                rows=396,
            ),
        ),
    ),
    "sci": Recipe(
        repo="vis-opt-group/SCI",
        commit="9d28a3f1237df248bb765e7fee16f7c4ac7dbeee",
        weights={f"llie/sci-{v}": f"weights/{v}.pt" for v in ("easy", "medium", "difficult")},
        root=".",
        run=run_sci,
        expected=(
            Expected("easy", SCI_TEST, 9.5802, 0.3692, 0.005, 0.001),
            Expected("medium", SCI_TEST, 14.7840, 0.5220, 0.005, 0.001),
            Expected("difficult", SCI_TEST, 13.8063, 0.5261, 0.005, 0.001),
        ),
    ),
    "ruas": Recipe(
        repo="KarelZhang/RUAS",
        commit="f621bb19ceffbe27b2d9625bb806bc7cc60aea7b",
        weights={
            "llie/ruas-lol": "ckpt/lol.pt",
            "llie/ruas-upe": "ckpt/upe.pt",
            "llie/ruas-dark": "ckpt/dark.pt",
            "llie/ruas-denoise": "model/denoise.pt",
        },
        root=".",
        run=run_ruas,
        edits={"model.py": (_NO_CUDA,)},
        expected=(
            Expected(
                "lol",
                "tests/test_baselines_ruas.py::test_lol_variant_reproduces_lol_v1",
                16.4047,
                0.4996,
                0.005,
                0.001,
            ),
            Expected("upe", RUAS_OTHER, 10.9707, 0.5311, 0.005, 0.001, images=FIRST_THREE),
            Expected("dark", RUAS_OTHER, 16.9673, 0.5700, 0.005, 0.001, images=FIRST_THREE),
        ),
    ),
    "sgz": Recipe(
        repo="ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement",
        commit="94dedc53c17989e58bd0b9f236f6abfc72db4c92",
        weights={"llie/sgz": "weight/Epoch99.pth"},
        root=".",
        run=run_sgz,
        expected=(
            Expected(
                "default",
                "tests/test_baselines_sgz.py::test_reproduces_lol_v1",
                16.0406,
                0.5708,
                0.005,
                0.001,
                rows=396,
            ),
        ),
    ),
    "iat": Recipe(
        repo="cuiziteng/Illumination-Adaptive-Transformer",
        commit="c76472265247f47cea57649af28b15018bb64cb1",
        weights={
            "llie/iat-lol_v1": "IAT_enhance/best_Epoch_lol_v1.pth",
            "llie/iat-lol": "IAT_enhance/best_Epoch_lol.pth",
        },
        root="IAT_enhance",
        run=run_iat,
        edits={
            "IAT_enhance/model/blocks.py": _TIMM_FREE,
            "IAT_enhance/model/global_net.py": _TIMM_FREE[2:],
            "IAT_enhance/model/IAT_main.py": (
                (
                    "from timm.models.layers import trunc_normal_\n",
                    "from torch.nn.init import trunc_normal_\n",
                ),
            ),
        },
        expected=(
            Expected(
                "lol_v1",
                "tests/test_baselines_iat.py::test_lol_v1_reproduces_readme",
                23.38,
                0.809,
                0.05,
                0.002,
            ),
            Expected("lol", IAT_LOL, 19.7796, None, 0.01, None, images=("1.png",)),
            Expected("lol", IAT_LOL, 15.1101, None, 0.01, None, images=("111.png",)),
            Expected("lol", IAT_LOL, 17.9779, None, 0.01, None, images=("146.png",)),
        ),
    ),
    "pairlie": Recipe(
        repo="zhenqifu/PairLIE",
        commit="3fd5c1586aa5f8f0736382de36d5bf46a4e208c2",
        weights={"llie/pairlie": "weights/PairLIE.pth"},
        root=".",
        run=run_pairlie,
        expected=(
            Expected(
                "default",
                "tests/test_baselines_pairlie.py::test_lol_v1_matches_the_official_eval",
                19.514,
                0.7359,
                0.05,
                0.002,
            ),
        ),
    ),
    "uretinex-net": Recipe(
        repo="AndersonYong/URetinex-Net",
        commit="7ee2196e093b6a9ae5c20242e48f9d61021b6364",
        weights={
            "llie/uretinex-init-low": "ckpt/init_low.pth",
            "llie/uretinex-init-high": "ckpt/init_high.pth",
            "llie/uretinex-unfolding": "ckpt/unfolding.pth",
            "llie/uretinex-l-adjust": "ckpt/L_adjust.pth",
        },
        root=".",
        run=run_uretinex,
        edits={
            "network/Math_Module.py": (("from torchvision.transforms import Grayscale\n", ""),),  # unused
            "network/architecture.py": (("import torchvision\n", ""),),  # unused
            "utils.py": (("import torchvision\n", ""),),  # used by save_TensorImg only, which is not called
            **{
                script: (
                    _NO_CUDA,
                    ("import torchvision\n", ""),
                    ("import torchvision.transforms as transforms\n", ""),
                    ("transforms.ToTensor(),", ""),  # the driver sets .transform to the same ToTensor
                    ("self.transform = transforms.Compose(transform)", "self.transform = None"),
                )
                for script in ("test.py", "evaluate.py")
            },
        },
        expected=(
            Expected(
                "gt_guided",
                "tests/test_baselines_uretinex.py::test_lol_v1_gt_guided_reproduces_the_paper",
                21.33,
                0.8341,
                0.05,
                0.002,
            ),
            Expected(
                "blind",
                "tests/test_baselines_uretinex.py::test_lol_v1_blind_matches_the_official_test_script",
                19.842,
                0.8259,
                0.05,
                0.002,
            ),
        ),
    ),
    "retinexnet": Recipe(
        repo="aasharma90/RetinexNet_PyTorch",
        commit="22675105f52432715a7935db16562f5117c9d369",
        weights={
            "llie/retinexnet-decom": "ckpts/Decom/9200.tar",
            "llie/retinexnet-relight": "ckpts/Relight/9200.tar",
        },
        root=".",
        run=run_retinexnet,
        edits={
            "model.py": (_NO_CUDA, ("im.save(filepath[:-4] + '.jpg')", "im.save(filepath[:-4] + '.png')"))
        },
        expected=(
            Expected(
                "default",
                "tests/test_baselines_retinexnet.py::test_lol_v1_matches_the_official_predict",
                17.610,
                0.6479,
                0.05,
                0.002,
            ),
        ),
    ),
}


# ------------------------------------------------------------------------------------------------------------
# The driver.


def checkout_at(name: str, recipe: Recipe, given: Path | None, cache: Path) -> Path:
    """The upstream code at the pinned commit: ``given`` (checked when it is a git work tree) or a clone."""
    if given is None:
        given = cache / name
        if not given.exists():
            subprocess.run(["git", "clone", f"https://github.com/{recipe.repo}", str(given)], check=True)
        subprocess.run(["git", "-C", str(given), "checkout", "--quiet", recipe.commit], check=True)
    head = subprocess.run(["git", "-C", str(given), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (given / ".git").exists():
        if head.stdout.strip() != recipe.commit:
            raise SystemExit(f"{name}: {given} is at {head.stdout.strip()}, not the pinned {recipe.commit}")
    else:
        print(f"{name}: {given} is not a git work tree; trusting it to hold {recipe.commit}", file=sys.stderr)
    return given


def weight_files(recipe: Recipe, weights_dir: Path) -> dict[str, Path]:
    """The recipe's weight files under ``weights_dir``, each checked against the project's sha256."""
    from cals_bench.weights import get_spec, sha256_file

    files = {}
    for name in recipe.weights:
        spec = get_spec(name)
        path = weights_dir / spec.relpath.removeprefix("llie/")
        if sha256_file(path) != spec.sha256:
            raise SystemExit(f"{path}: sha256 differs from the registered {name}")
        files[name] = path
    return files


def patched_copy(checkout: Path, recipe: Recipe, dest: Path) -> Path:
    """The checkout's Python files copied to ``dest``, with the recipe's edits applied (each must match)."""
    shutil.copytree(
        checkout,
        dest,
        ignore=lambda d, names: [
            n for n in names if n == ".git" or ((Path(d) / n).is_file() and not n.endswith(".py"))
        ],
    )
    timm_ok = importlib.util.find_spec("timm") is not None
    for rel, edits in recipe.edits.items():
        path = dest / rel
        text = path.read_text()
        for old, new in edits:
            if timm_ok and "timm" in old:
                continue
            if old not in text:
                raise SystemExit(f"{rel}: expected text not found (wrong commit?): {old!r}")
            text = text.replace(old, new)
        path.write_text(text)
    return dest / recipe.root


def run_recipe(
    name: str, recipe: Recipe, checkout: Path, weights: dict[str, Path], low: list[Path], out: Path
):
    with tempfile.TemporaryDirectory(prefix=f"upstream-{name}-") as tmp:
        src = patched_copy(checkout, recipe, Path(tmp) / "src")
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        before = set(sys.modules)
        sys.path.insert(0, str(src))
        try:
            with cpu_torch_load(), chdir(src):
                recipe.run(Context(low, weights, out, workdir))
        finally:
            sys.path.remove(str(src))
            for mod in set(sys.modules) - before:  # the next recipe's "model", "utils" are other files
                where = [
                    getattr(sys.modules[mod], "__file__", None) or "",
                    *getattr(sys.modules[mod], "__path__", []),
                ]
                if any(str(w).startswith(str(src)) for w in where):
                    del sys.modules[mod]


def score(expected: Expected, out: Path, data: Path) -> tuple[float, float]:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.helpers import skimage_scores  # the baseline tests' scorer

    names = expected.images or tuple(sorted(p.name for p in (data / "eval15" / "low").glob("*.png")))
    refs, outs = [], []
    for n in names:
        ref = np.asarray(Image.open(data / "eval15" / "high" / n).convert("RGB"))
        outs.append(np.asarray(Image.open(out / expected.variant / n).convert("RGB")))
        refs.append(ref[: expected.rows] if expected.rows else ref)
        if outs[-1].shape != refs[-1].shape:
            raise SystemExit(
                f"{out / expected.variant / n}: shape {outs[-1].shape}, reference {refs[-1].shape}"
            )
    return skimage_scores(refs, outs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", metavar="MODEL", help="any of " + ", ".join(RECIPES) + " (default: all)"
    )
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="MODEL=DIR",
        help="use this existing checkout of MODEL's upstream repository (at the pinned commit)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "cals-bench-upstream",
        help="where upstream repositories are cloned (default %(default)s)",
    )
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="default %(default)s")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LOL-v1 root (default %(default)s)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cals-bench-upstream-out",
        help="where the upstream PNGs are written, OUT/MODEL/VARIANT/NAME.png",
    )
    parser.add_argument("--score-only", action="store_true", help="score PNGs already in --out")
    parser.add_argument(
        "--flush-denormals",
        action="store_true",
        help="torch.set_flush_denormal(True) while upstream code runs: not part of the upstream procedures, but "
        "much faster on CPU where weights hold subnormals (Zero-DCE's), as the project's engine runs models",
    )
    args = parser.parse_args(argv)
    unknown = set(args.models) - set(RECIPES)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(RECIPES)}")
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    low = sorted((args.data / "eval15" / "low").glob("*.png"))
    if len(low) != 15:
        raise SystemExit(f"{args.data}/eval15/low: expected the 15 LOL-v1 eval15 images, found {len(low)}")
    rows, failed = [], False
    for name in args.models or list(RECIPES):
        recipe = RECIPES[name]
        out = args.out / name
        if not args.score_only:
            given = Path(checkouts[name]).resolve() if name in checkouts else None
            checkout = checkout_at(name, recipe, given, args.cache)
            if out.exists():
                shutil.rmtree(out)
            flushed = torch.set_flush_denormal(args.flush_denormals)
            if args.flush_denormals and not flushed:
                raise SystemExit("--flush-denormals: this CPU cannot flush subnormals")
            try:
                run_recipe(name, recipe, checkout, weight_files(recipe, args.weights), low, out)
            finally:
                torch.set_flush_denormal(False)
        for exp in recipe.expected:
            psnr, ssim = score(exp, out, args.data)
            d_psnr = psnr - exp.psnr
            d_ssim = None if exp.ssim is None else ssim - exp.ssim
            ok = abs(d_psnr) <= exp.psnr_tol and (d_ssim is None or abs(d_ssim) <= exp.ssim_tol)
            failed |= not ok
            where = ",".join(n.removesuffix(".png") for n in exp.images) or "all 15"
            rows.append(
                (
                    name,
                    exp.variant,
                    where,
                    psnr,
                    exp.psnr,
                    d_psnr,
                    exp.psnr_tol,
                    ssim,
                    exp.ssim,
                    d_ssim,
                    exp.ssim_tol,
                    "ok" if ok else "FAIL",
                )
            )
        print_table(rows[-len(recipe.expected) :], header=name == (args.models or list(RECIPES))[0])
    return 1 if failed else 0


def print_table(rows, header: bool) -> None:
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    if header:
        print(
            "| model | variant | images | upstream PSNR | test PSNR | diff | tol | upstream SSIM | test SSIM | diff | tol | |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r[0],
            r[1],
            r[2],
            f(r[3], ".4f"),
            f(r[4], "g"),
            f(r[5], "+.4f"),
            f(r[6], "g"),
            f(r[7], ".4f") if r[8] is not None else "-",
            f(r[8], "g"),
            f(r[9], "+.4f"),
            f(r[10], "g"),
            r[11],
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
