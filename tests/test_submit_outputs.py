"""`cals-bench score --outputs`: a folder or .zip of outputs, every problem on its own line, unsafe archives
refused without extracting anything."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image
from submit_helpers import identity_scores, snapshot, tiny_world

from cals_bench import protocol as protocol_mod
from cals_bench.engine import evaluate
from cals_bench.errors import CalsBenchError
from cals_bench.store import Store
from cals_bench.submit.flow import SubmissionFailed, score_outputs
from cals_bench.submit.records import Submissions


@pytest.fixture
def world(tmp_path):
    data, proto, results = tiny_world(tmp_path)
    return {"root": tmp_path, "data": data, "proto": str(proto), "store": Store(results)}


def _copy_lows(world, name="outs"):
    out = world["root"] / name
    shutil.copytree(world["data"] / "low", out)
    return out


def _score(world, path, name="paper outputs"):
    return score_outputs(
        world["proto"], path, store=world["store"], name=name, data_root=world["data"], progress=False
    )


def test_folder_and_zip_score_and_are_recognised(world):
    folder = _copy_lows(world)
    out = _score(world, folder)
    psnr, ssim = identity_scores(world["data"])
    assert out.record["status"] == "scored"
    assert out.record["kind"] == "outputs"
    assert out.result.summary["psnr"]["mean"] == pytest.approx(psnr, abs=1e-9)
    assert out.result.summary["ssim"]["mean"] == pytest.approx(ssim, abs=1e-6)
    assert out.result.meta["model"]["submission"]["kind"] == "outputs"
    archive = world["root"] / "outs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"results/{p.name}")  # one common sub-folder is accepted
    again = _score(world, archive)
    assert again.identical
    assert again.record["id"] == out.record["id"]


def test_each_problem_gets_its_own_line(world):
    folder = _copy_lows(world)
    (folder / "000.png").unlink()  # missing
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(folder / "999.png")  # extra
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(folder / "001.png")  # wrong size
    (folder / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)  # unreadable
    (world["root"] / "real.png").write_bytes(b"x")
    os.symlink(world["data"] / "high" / "000.png", folder / "linked.png")  # symlink
    before = snapshot(world["store"].root)
    with pytest.raises(SubmissionFailed, match=r"5 problem\(s\) in the outputs; nothing scored") as info:
        _score(world, folder)
    lines = info.value.lines
    assert len(lines) == 5
    assert any(line.startswith("missing: no output for sample '000'") for line in lines)
    assert any(line.startswith("extra: 999.png") for line in lines)
    assert any(line.startswith("001.png: wrong size 16x12, sample '001' is 32x24") for line in lines)
    assert any(line.startswith("002.png: unreadable") for line in lines)
    assert any(line.startswith("linked.png: symbolic link refused") for line in lines)
    assert info.value.record["status"] == "failed"
    assert snapshot(world["store"].root) == before


def _zip_with(world, extra) -> object:
    archive = world["root"] / "bad.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((world["data"] / "low").iterdir()):
            zf.write(p, p.name)
        extra(zf)
    return archive


def test_zip_path_traversal_is_refused(world):
    archive = _zip_with(world, lambda zf: zf.writestr("../escape.png", b"x"))
    with pytest.raises(SubmissionFailed) as info:
        _score(world, archive)
    assert info.value.lines == ["../escape.png: unsafe path in archive (absolute or '..') refused"]
    assert not (world["root"].parent / "escape.png").exists()


def test_zip_symlink_is_refused(world):
    def add(zf):
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../data/high/000.png")

    with pytest.raises(SubmissionFailed) as info:
        _score(world, _zip_with(world, add))
    assert info.value.lines == ["link.png: symbolic link in archive refused"]


def test_zip_bomb_is_refused(world):
    archive = _zip_with(world, lambda zf: zf.writestr("bomb.png", b"\0" * (16 << 20)))
    assert zipfile.ZipFile(archive).getinfo("bomb.png").compress_size < (16 << 20) // 500
    with pytest.raises(SubmissionFailed) as info:
        _score(world, archive)
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith("bomb.png: compression ratio")
    assert "(zip bomb?) refused" in info.value.lines[0]


def test_registered_name_refused_and_remove_keeps_audit_trail(world):
    folder = _copy_lows(world)
    with pytest.raises(CalsBenchError, match="taken by the registered model 'zero-dce'"):
        _score(world, folder, name="Zero-DCE")
    proto = protocol_mod.load(world["proto"])
    other = evaluate(proto, "identity", data_root=world["data"], store=world["store"], progress=False)
    out = _score(world, folder, name="mine")
    subs = Submissions(world["store"])
    rec = subs.remove(out.record["id"], "withdrawn")
    assert rec["status"] == "removed"
    assert [e["event"] for e in rec["events"]] == [
        "created",
        "scored",
        "removed",
    ]
    assert "withdrawn" in rec["events"][-1]["detail"]
    runs = set(world["store"].list_runs()["run_id"])
    assert runs == {other.run_id}  # the submission's run is gone, the other run stays
    again = _score(world, folder, name="mine")  # a removed submission is not "identical"
    assert not again.identical
    assert again.record["status"] == "scored"
