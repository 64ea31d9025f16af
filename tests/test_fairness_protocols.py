"""The fairness protocols on real grouped data: UTKFace (full test split and the balanced CPU subsample) and
the chest X-ray collection split by patient; UTKFace labels from file names; cluster_by in protocol specs.

Shared-data checks skip when ../shared is absent. References: UTKFace's own coding of file names and the
upstream-derived attributes.csv beside the images; the split's own hash rule for which part a unit is in.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cals_bench import protocol as protocol_mod
from cals_bench.data.datasets import load_samples, utkface_labels
from cals_bench.data.splits import part_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_utkface_labels_follow_the_dataset_coding(tmp_path):
    names = [
        "26_0_1_20170116010114628.jpg.chip.jpg",  # 26, male, Black
        "61_1_3_20170109141541523.jpg.chip.jpg",  # 61, female, Indian
        "39_1_20170116174525125.jpg.chip.jpg",  # a published name lacking race: no gender/race label
    ]
    labels = utkface_labels([tmp_path / n for n in names])
    assert labels[names[0]] == {"age": "26", "gender": "male", "race": "Black"}
    assert labels[names[1]] == {"age": "61", "gender": "female", "race": "Indian"}
    assert labels[names[2]] == {"age": "39", "gender": "", "race": ""}


def test_utkface_folder_without_attributes_file_gets_labels_from_names(tmp_path):
    import cv2

    root = tmp_path / "UTKFace"
    root.mkdir()
    img = np.full((200, 200, 3), 128, np.uint8)
    for name in ("20_1_4_20170103224900034.jpg.chip.jpg", "70_0_0_20170111200854453.jpg.chip.jpg"):
        cv2.imwrite(str(root / name), img)
    proto = protocol_mod.load("utkface")
    import dataclasses

    proto = dataclasses.replace(proto, dataset=dataclasses.replace(proto.dataset, split=None))
    _, samples = load_samples(proto, root)  # the published layout: a flat folder of images
    by_id = {s.sample_id: s.attributes for s in samples}
    assert by_id["20_1_4_20170103224900034.jpg.chip"]["race"] == "Others"
    assert by_id["20_1_4_20170103224900034.jpg.chip"]["age_band"] == "20-39"
    assert by_id["70_0_0_20170111200854453.jpg.chip"]["gender"] == "male"
    assert by_id["70_0_0_20170111200854453.jpg.chip"]["age_band"] == "60+"


def test_utkface_names_agree_with_the_shared_attributes_file():
    path = SHARED / "utkface" / "attributes.csv"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    rows = list(csv.DictReader(path.open()))
    derived = utkface_labels([Path(r["image"]) for r in rows])
    assert all(derived[r["image"]] == {k: r[k] for k in ("age", "gender", "race")} for r in rows)


def test_balanced_face_protocol_is_the_pinned_test_subsample():
    root = SHARED / "utkface"
    if not root.is_dir():
        pytest.skip(f"needs {root}")
    proto = protocol_mod.load("utkface-balanced")
    _, samples = load_samples(proto, root)
    assert len(samples) == proto.dataset.expected_count == 220
    cells = Counter((s.attributes["race"], s.attributes["gender"]) for s in samples)
    assert len(cells) == 10
    assert set(cells.values()) == {22}
    split = proto.dataset.split
    assert all(part_of(s.sample_id, split) == "test" for s in samples)  # never in the trainer's part
    # the declared sha256 are those of the files read
    for s in samples[:20]:
        rel = s.high_path.relative_to(root).as_posix()
        assert proto.dataset.checksums[rel] == hashlib.sha256(s.high_path.read_bytes()).hexdigest()
    full = protocol_mod.load("utkface")
    _, test = load_samples(full, root)
    assert {s.sample_id for s in samples} <= {s.sample_id for s in test}


def test_xray_protocol_splits_by_patient_and_clusters():
    root = SHARED / "covid-cxr-256"
    if not root.is_dir():
        pytest.skip(f"needs {root}")
    proto = protocol_mod.load("covid-cxr")
    assert proto.audit.cluster_by == "patientid"
    _, samples = load_samples(proto, root)
    test_patients = {s.attributes["patientid"] for s in samples}
    rows = list(csv.DictReader((root / "metadata.csv").open()))
    # every image of a test patient is in the test part, and no other image is
    assert len(samples) == sum(r["patientid"] in test_patients for r in rows)
    assert all(part_of(f"patientid={p}", proto.dataset.split) == "test" for p in test_patients)
    bands = Counter(s.attributes["age_band"] for s in samples)
    assert set(bands) == {"0-39", "40-59", "60+"}


def test_cluster_by_is_absent_from_specs_that_do_not_set_it():
    """Adding cluster_by keeps every other protocol's hash: the key is left out of the spec at its default."""
    for name, path in protocol_mod.available().items():
        spec = protocol_mod.load(name).to_dict()
        assert ("cluster_by" in spec["audit"]) == ("cluster_by:" in path.read_text()), name
    assert protocol_mod.load("covid-cxr").to_dict()["audit"]["cluster_by"] == "patientid"
