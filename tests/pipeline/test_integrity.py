"""pipeline.integrity: hashing, atomic writes and the one folder manifest, and that the manifests
users already have (dataset snapshots with ``bytes``, checkpoint manifests written by earlier plora)
still read and verify. No model, no network."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from pipeline.integrity import FileEntry, FolderManifest, atomic_write, copy_durably, hash_file, sha256_file
from pipeline.snapshots import DATA_DIR, META_FILE, damage, data_files, read_snapshot


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_hash_copy_and_atomic_write(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 3_000_000)
    assert sha256_file(source) == _sha(source.read_bytes())
    assert hash_file(source) == FileEntry(sha256=_sha(source.read_bytes()), size=3_000_000)
    assert copy_durably(source, tmp_path / "b.bin") == hash_file(source)
    with pytest.raises(FileExistsError):
        copy_durably(source, tmp_path / "b.bin")  # never overwrites

    target = tmp_path / "state.json"
    atomic_write(target, "one\n")
    atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin", "state.json"]  # no temp left


def test_folder_manifest_round_trip_and_mismatches(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_bytes(b"one")
    (folder / "sub" / "two.txt").write_bytes(b"two")
    (folder / "skip.json").write_bytes(b"{}")
    manifest = FolderManifest.of_folder(folder, exclude={"skip.json"})
    assert list(manifest) == ["one.txt", "sub/two.txt"]
    assert manifest.dump() == {
        "one.txt": {"sha256": _sha(b"one"), "size": 3},
        "sub/two.txt": {"sha256": _sha(b"two"), "size": 3},
    }
    assert FolderManifest.parse(json.loads(json.dumps(manifest.dump()))) == manifest
    assert manifest.mismatches(folder) == []

    (folder / "one.txt").write_bytes(b"ONE")
    (folder / "sub" / "two.txt").write_bytes(b"twoo")
    found = manifest.mismatches(folder)
    assert [(m.name, m.problem) for m in found] == [("one.txt", "sha256"), ("sub/two.txt", "size")]
    assert found[1].describe() == "sub/two.txt: 4 bytes, the manifest says 3 (truncated or changed)"
    assert len(manifest.mismatches(folder, first_only=True)) == 1
    (folder / "one.txt").unlink()
    (folder / "sub" / "two.txt").unlink()
    (folder / "sub" / "two.txt").mkdir()
    assert [str(m) for m in manifest.mismatches(folder)] == ["one.txt: missing", "sub/two.txt: not a regular file"]

    for bad in ({"x": {"sha256": "nothex", "size": 1}}, {"x": {"sha256": _sha(b"")}}, {"x": "y"}, []):
        with pytest.raises(ValueError):
            FolderManifest.parse(bad)


def _snapshot_folder(root: Path, files_key: str | None) -> Path:
    folder = root / "snap"
    (folder / DATA_DIR / "train").mkdir(parents=True)
    (folder / DATA_DIR / "train" / "data-00000-of-00001.arrow").write_bytes(b"arrow bytes")
    (folder / DATA_DIR / "dataset_dict.json").write_text('{"splits": ["train"]}')
    meta = {"kind": "sft", "fingerprint": "a" * 64, "rows": {"train": 1}}
    if files_key is not None:  # the form plora wrote before pipeline.integrity: {"bytes": N, "sha256": ...}
        listed = {}
        for path in sorted((folder / DATA_DIR).rglob("*")):
            if path.is_file():
                entry = {files_key: path.stat().st_size, "sha256": _sha(path.read_bytes())}
                listed[path.relative_to(folder).as_posix()] = entry
        meta["files"] = listed
    (folder / META_FILE).write_text(json.dumps(meta))
    return folder


def test_snapshots_written_before_read_the_same(tmp_path: Path) -> None:
    folder = _snapshot_folder(tmp_path, "bytes")
    assert damage(read_snapshot(folder)) is None
    new_form = data_files(folder)
    assert {name: entry["size"] for name, entry in new_form.items()} == {
        name: entry["bytes"] for name, entry in read_snapshot(folder).meta["files"].items()
    }
    (folder / DATA_DIR / "train" / "cache.pkl").write_bytes(pickle.dumps({}))  # beside the data: not counted
    assert damage(read_snapshot(folder)) is None

    arrow = folder / DATA_DIR / "train" / "data-00000-of-00001.arrow"
    arrow.write_bytes(b"ARROW BYTES")
    assert damage(read_snapshot(folder)) == f"{arrow} changed since it was written"
    arrow.unlink()
    assert damage(read_snapshot(folder)) == f"{arrow}: missing"

    broken = json.loads((folder / META_FILE).read_text())
    broken["files"]["data/dataset_dict.json"] = {"bytes": "many"}
    (folder / META_FILE).write_text(json.dumps(broken))
    assert "unreadable files list" in damage(read_snapshot(folder))


def test_checkpoint_manifests_written_before_still_verify(tmp_path: Path) -> None:
    from pipeline.train.resume import MANIFEST_FILE, verify_manifest, write_manifest

    folder = tmp_path / "checkpoint-3"
    (folder / "ref").mkdir(parents=True)
    (folder / "optimizer.pt").write_bytes(b"one")
    (folder / "ref" / "adapter_model.safetensors").write_bytes(b"two")
    # exactly what plora wrote before pipeline.integrity
    files = {
        "optimizer.pt": {"sha256": _sha(b"one"), "size": 3},
        "ref/adapter_model.safetensors": {"sha256": _sha(b"two"), "size": 3},
    }
    old = json.dumps({"format": 1, "run_id": "r", "stage": "sft", "step": 3, "files": files}, indent=2, sort_keys=True)
    (folder / MANIFEST_FILE).write_text(old + "\n")
    assert verify_manifest(folder, run_id="r", stage="sft", step=3) == (_sha((old + "\n").encode()), "ok")
    # and today's writer writes the same bytes for the same folder (the store records their sha256)
    assert write_manifest(folder, run_id="r", stage="sft", step=3) == _sha((old + "\n").encode())
    assert (folder / MANIFEST_FILE).read_text() == old + "\n"
    (folder / MANIFEST_FILE).write_text("{not json")
    assert verify_manifest(folder, run_id="r", stage="sft")[1].startswith("unreadable manifest")


def test_weights_offered_for_registration_must_be_complete_safetensors(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from pipeline.registry.verification import safetensors_problem

    good = tmp_path / "good.safetensors"
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(good))
    assert safetensors_problem(good) is None
    data = good.read_bytes()
    for name, content in (("truncated", data[:-10]), ("padded", data + b"xx"), ("pickle", pickle.dumps({}))):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        assert "truncated or corrupt" in (safetensors_problem(path) or ""), name
    assert "can't be read" in (safetensors_problem(tmp_path / "absent.safetensors") or "")
