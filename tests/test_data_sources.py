"""The download stage's sources all load to one prepared format, and bad data fails clearly."""
from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from cifarlab.core import paths
from cifarlab.core.errors import UserError
from cifarlab.download import cifar, imagefolder
from cifarlab.download.filetree import FolderTree
from cifarlab.download.sources import prepare
from cifarlab.prepared import balanced_indices, load_prepared, save_prepared
from conftest import CLASSES, serve_folder, write_cifar_batches, write_image_tree

ALL = {"train": 0, "test": 0}


def _tar(src, dest, arcname):
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=arcname)
    return dest


def _zip(src, dest):
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src.parent))
    return dest


@pytest.fixture
def every_source(tmp_path, arrays):
    """The same images as each kind of data.source the download stage accepts."""
    tree = write_image_tree(tmp_path / "tree", arrays)
    batches = write_cifar_batches(tmp_path / "official" / cifar.BATCH_DIR, arrays)
    return {
        "image tree": tree,
        "tree .tar.gz": _tar(tree, tmp_path / "tree.tar.gz", "cifar-like"),
        "tree .zip": _zip(tree, tmp_path / "tree.zip"),
        "batch folder": batches,
        "official tarball": _tar(batches, tmp_path / "cifar-10-python.tar.gz", cifar.BATCH_DIR),
    }


def _pairs(images: np.ndarray, labels: np.ndarray) -> list[tuple[int, bytes]]:
    """Each image with its label, in a canonical order: an image tree is stored shuffled."""
    return sorted((int(label), image.tobytes()) for image, label in zip(images, labels))


def test_every_source_kind_loads_to_the_same_prepared_arrays(every_source, arrays, tmp_path):
    for kind, source in every_source.items():
        data = prepare(str(source), 32, ALL, 0, tmp_path / "raw")
        assert data.classes == CLASSES, kind
        assert data.x_train.dtype == np.uint8 and data.x_train.shape[1:] == (32, 32, 3), kind
        assert _pairs(data.x_train, data.y_train) == _pairs(*arrays["train"]), kind
        assert _pairs(data.x_test, data.y_test) == _pairs(*arrays["test"]), kind


def test_prepared_file_round_trips(image_tree, tmp_path):
    data = prepare(str(image_tree), 32, ALL, 0, tmp_path)
    save_prepared(tmp_path / "p.npz", data)
    again = load_prepared(tmp_path / "p.npz")
    assert again.classes == data.classes
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_subset_is_class_balanced_and_seeded(image_tree, tmp_path):
    data = prepare(str(image_tree), 32, {"train": 9, "test": 3}, 5, tmp_path)
    assert np.bincount(data.y_train).tolist() == [3, 3, 3]
    assert np.bincount(data.y_test).tolist() == [1, 1, 1]
    same = prepare(str(image_tree), 32, {"train": 9, "test": 3}, 5, tmp_path)
    np.testing.assert_array_equal(same.x_train, data.x_train)


def test_validation_split_is_held_out_of_training_balanced_and_seeded(every_source, tmp_path):
    """data.val images come from the training split, never the test split, and leave training."""
    for kind, source in every_source.items():
        data = prepare(str(source), 32, ALL, 0, tmp_path / "raw", val=6)
        assert np.bincount(data.y_val).tolist() == [2, 2, 2], kind
        assert len(data.y_train) == 18 - 6 and len(data.y_test) == 9, kind
        train_pixels = {image.tobytes() for image in data.x_train}
        assert not any(image.tobytes() in train_pixels for image in data.x_val), kind
        again = prepare(str(source), 32, ALL, 0, tmp_path / "raw", val=6)
        np.testing.assert_array_equal(again.x_val, data.x_val)


def test_subset_applies_to_what_validation_leaves(image_tree, tmp_path):
    data = prepare(str(image_tree), 32, {"train": 6, "test": 3}, 0, tmp_path, val=3)
    assert np.bincount(data.y_train).tolist() == [2, 2, 2] and np.bincount(data.y_val).tolist() == [1, 1, 1]
    save_prepared(tmp_path / "p.npz", data)
    np.testing.assert_array_equal(load_prepared(tmp_path / "p.npz").x_val, data.x_val)


def test_validation_larger_than_the_training_split_is_refused(image_tree, tmp_path):
    with pytest.raises(UserError, match=r"data.val = 18 leaves no training images \(the source has 18\)"):
        prepare(str(image_tree), 32, ALL, 0, tmp_path, val=18)


def test_balanced_indices_gives_remainder_to_first_classes():
    labels = np.repeat([0, 1, 2], 10)
    picked = balanced_indices(labels, 8, seed=0)
    assert np.bincount(labels[picked]).tolist() == [3, 3, 2]


def test_number_of_classes_comes_from_the_data(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b", "c", "d", "e"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / split / name / "x.png")
    data = prepare(str(tmp_path), 32, ALL, 0, tmp_path / "raw")
    assert data.num_classes == 5 and data.classes == ["a", "b", "c", "d", "e"]


def test_gray_rgba_and_other_sizes_become_rgb_of_image_size(tmp_path):
    samples = {"gray": Image.new("L", (48, 40), 128),
               "rgba": Image.new("RGBA", (16, 16), (10, 20, 30, 255)),
               "large": Image.new("RGB", (64, 64), (200, 0, 0))}
    for split in ("train", "test"):
        for name, image in samples.items():
            (tmp_path / split / name).mkdir(parents=True)
            image.save(tmp_path / split / name / f"{name}.png")
    data = prepare(str(tmp_path), 32, ALL, 0, tmp_path / "raw")
    assert data.classes == ["gray", "large", "rgba"]
    assert data.x_train.shape == (3, 32, 32, 3)
    by_class = dict(zip(data.y_train.tolist(), data.x_train))  # stored shuffled: look each one up
    assert (by_class[0] == 128).all()
    assert (by_class[1] == (200, 0, 0)).all()
    assert (by_class[2] == (10, 20, 30)).all()


def test_image_size_resizes_every_source(every_source, tmp_path):
    data = prepare(str(every_source["batch folder"]), 16, ALL, 0, tmp_path)
    assert data.x_train.shape[1:] == (16, 16, 3)


@pytest.mark.parametrize("breakage, expected", [
    ("missing", "no such file or folder"),
    ("no_splits", "no train/ and test/ split"),
    ("test_only_class", "are not in train/"),
    ("unreadable", "not a readable image"),
    ("empty_class", "empty class folder"),
    ("plain_file", "not a .tar.gz"),
])
def test_bad_sources_name_the_problem(image_tree, tmp_path, breakage, expected):
    source = image_tree
    if breakage == "missing":
        source = tmp_path / "nope"
    elif breakage == "no_splits":
        shutil.rmtree(image_tree / "test")
    elif breakage == "test_only_class":
        (image_tree / "test" / "zebra").mkdir()
        shutil.copy(next((image_tree / "test" / "cat").iterdir()), image_tree / "test" / "zebra" / "z.png")
    elif breakage == "unreadable":
        (image_tree / "train" / "cat" / "notes.txt").write_text("not an image")
    elif breakage == "empty_class":
        (image_tree / "train" / "dog").mkdir()
    elif breakage == "plain_file":
        source = tmp_path / "data.csv"
        source.write_text("a,b\n")
    with pytest.raises(UserError, match=expected):
        prepare(str(source), 32, ALL, 0, tmp_path / "raw")


def test_unreadable_image_error_names_the_file(image_tree, tmp_path):
    bad = image_tree / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UserError, match="broken.png"):
        prepare(str(image_tree), 32, ALL, 0, tmp_path)


def _tar_with_member(path, member: tarfile.TarInfo, payload: bytes = b"x"):
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


@pytest.mark.parametrize("name, kind", [("../evil.txt", "file"), ("/tmp/evil.txt", "file"),
                                        ("link", "symlink"), ("hard", "hardlink"), ("dev", "device")])
def test_hostile_tar_members_are_refused(tmp_path, name, kind):
    member = tarfile.TarInfo(name)
    if kind == "file":
        member.size = 1
    elif kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        member.type, member.linkname = tarfile.LNKTYPE, "/etc/passwd"
    else:
        member.type = tarfile.CHRTYPE
    archive = _tar_with_member(tmp_path / "evil.tar.gz", member)
    with pytest.raises(UserError, match="refusing member"):
        prepare(str(archive), 32, ALL, 0, tmp_path / "raw")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("kind", ["tree .tar.gz", "tree .zip"])
def test_errors_inside_an_archive_name_the_archive_and_member_and_nothing_is_extracted(
        every_source, tmp_path, kind, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    if kind.endswith("gz"):
        archive, member = _tar(tree, tmp_path / "bad.tar.gz", "cifar-like"), "cifar-like/train/cat/broken.png"
    else:
        archive, member = _zip(tree, tmp_path / "bad.zip"), "tree/train/cat/broken.png"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))  # anything extracted would land here
    (tmp_path / "temp").mkdir()
    with pytest.raises(UserError) as err:
        prepare(str(archive), 32, ALL, 0, tmp_path / "raw")
    assert str(err.value).startswith(f"{archive}: {member}: not a readable image"), err.value
    assert not list((tmp_path / "temp").iterdir())


def test_decoding_in_worker_processes_gives_the_same_arrays_and_the_same_errors(
        every_source, arrays, tmp_path, monkeypatch):
    """CHUNK=4 spreads the 27 test images over the worker processes, as 60,000 real ones are."""
    monkeypatch.setattr(imagefolder, "CHUNK", 4)
    for kind in ("image tree", "tree .tar.gz", "tree .zip"):
        data = prepare(str(every_source[kind]), 32, ALL, 0, tmp_path / "raw")
        assert _pairs(data.x_train, data.y_train) == _pairs(*arrays["train"]), kind
        assert _pairs(data.x_test, data.y_test) == _pairs(*arrays["test"]), kind
    (every_source["image tree"] / "test" / "cat" / "zz.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"test/cat/zz.png: not a readable image"):
        prepare(str(every_source["image tree"]), 32, ALL, 0, tmp_path / "raw")
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # the workers must apply the caller's limit
    with pytest.raises(UserError, match="refusing an image of more than 500 pixels"):
        prepare(str(every_source["tree .tar.gz"]), 32, ALL, 0, tmp_path / "raw")


def test_zip_with_parent_path_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(UserError, match="refusing member"):
        prepare(str(archive), 32, ALL, 0, tmp_path / "raw")


def test_truncated_archive_is_a_clear_error(every_source, tmp_path):
    whole = every_source["tree .tar.gz"].read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        prepare(str(cut), 32, ALL, 0, tmp_path / "raw")


@pytest.fixture
def served(every_source):
    """The official tarball served over HTTP on this machine, as the real download gets it."""
    tarball = every_source["official tarball"]
    with serve_folder(tarball.parent) as base_url:
        yield tarball, base_url + tarball.name


def test_download_checks_md5_and_keeps_the_file(served, tmp_path):
    tarball, url = served
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    got = cifar.download(url, tmp_path / "raw" / "c.tar.gz", md5)
    assert got.read_bytes() == tarball.read_bytes()
    assert cifar.download("http://127.0.0.1:9/gone", got, md5) == got  # a good copy is not fetched again


def test_download_checksum_mismatch_removes_file_and_explains(served, tmp_path):
    dest = tmp_path / "raw" / "c.tar.gz"
    _, url = served
    with pytest.raises(UserError, match="checksum mismatch") as err:
        cifar.download(url, dest, "0" * 32)
    assert url in str(err.value) and "data.source" in str(err.value)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_failed_download_names_url_and_offline_fix(tmp_path):
    url = (tmp_path / "absent.tar.gz").as_uri()
    with pytest.raises(UserError, match="could not download") as err:
        cifar.download(url, tmp_path / "raw" / "c.tar.gz", cifar.CIFAR10_MD5)
    assert url in str(err.value) and "data.source" in str(err.value)
    assert not list((tmp_path / "raw").iterdir())


def test_official_constants_are_the_published_ones():
    assert cifar.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"


class _RunsCode:
    def __reduce__(self):
        return (print, ("owned",))


def test_cifar_batch_that_would_run_code_is_refused(every_source, capsys):
    folder = every_source["batch folder"]
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _RunsCode(), b"labels": []}))
    with pytest.raises(UserError, match="not a readable CIFAR batch"):
        cifar.load_batch_dir(FolderTree(folder), "")
    assert "owned" not in capsys.readouterr().out


def test_relative_sources_mean_the_project_root_also_in_an_experiment_copy(tmp_path, image_tree, monkeypatch):
    """`dvc exp run --temp/--queue` runs in <project>/.dvc/tmp/exps/<run>/: ../tree must still be
    the tree beside the project."""
    project = tmp_path / "project"  # beside image_tree, which is tmp_path / "tree"
    copy = project / ".dvc" / "tmp" / "exps" / "tmpab12"
    copy.mkdir(parents=True)
    for cwd in (project, copy):
        monkeypatch.chdir(cwd)
        data = prepare("../tree", 32, ALL, 0, tmp_path / "raw")
        assert data.classes == CLASSES
    assert paths.project_root(copy) == project.resolve()


def test_a_decompression_bomb_archive_is_refused_from_its_headers(tmp_path, monkeypatch):
    """A member declaring more than the per-file limit is refused before anything is extracted."""
    from cifarlab.download import filetree

    monkeypatch.setattr(filetree, "MAX_MEMBER_BYTES", 1000)
    member = tarfile.TarInfo("cifar-like/train/cat/huge.png")
    member.size = 5000
    bomb = _tar_with_member(tmp_path / "bomb.tar.gz", member, b"\0" * 5000)
    with pytest.raises(UserError, match=r"bomb.tar.gz: cifar-like/train/cat/huge.png: refusing a member of 5,000"):
        prepare(str(bomb), 32, ALL, 0, tmp_path / "raw")


def test_an_image_that_decodes_to_gigapixels_is_refused(image_tree, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # a 32x32 image then counts as a bomb
    with pytest.raises(UserError, match="refusing an image of more than 500 pixels"):
        prepare(str(image_tree), 32, ALL, 0, tmp_path / "raw")
