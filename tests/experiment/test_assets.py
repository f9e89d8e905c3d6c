"""Storage locations, assets (publish, fetch once per node, hash checks) and encoded sets stored as .npz:
the tiny model on the shared data, local storage (the S3 path is in tests/search/test_s3_storage.py)."""

import dataclasses
import os
import threading

import numpy as np
import pytest

from xlamaml.cli import PRESETS
from xlamaml.experiment import assets, storage
from xlamaml.trainables.config import load_config
from xlamaml.trainables.data_source import (
    AssetSource,
    TokenizingSource,
    build_data_asset,
    needed_sets,
)
from xlamaml.trainables.local_files import sha256_of
from xlamaml.trainables.models import load_tokenizer
from xlamaml.trainables.tasks.registry import get_task

pytestmark = pytest.mark.usefixtures("one_thread")


def same(a, b) -> bool:
    """Return True when two encoded sets (dataclasses of lists, arrays and scalars) are equal, types included."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_locations_are_uris_or_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.normalize("runs") == str(tmp_path / "runs")
    assert storage.normalize("s3://bucket/runs/") == "s3://bucket/runs"
    assert storage.join("s3://bucket/runs", "exp", "assets") == "s3://bucket/runs/exp/assets"
    with pytest.raises(storage.StorageError, match=r"^s4://bucket/runs: not a storage location") as err:
        storage.check_writable("s4://bucket/runs")
    assert "\n" not in str(err.value)


def test_an_unwritable_folder_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(storage.StorageError, match=f"^{blocker}/runs: cannot"):
        storage.check_writable(str(blocker / "runs"))


@pytest.mark.parametrize("preset", ["smoke", "smoke-qa"])
def test_encoded_sets_round_trip_exactly(tmp_path, preset):
    cfg = load_config(PRESETS / f"{preset}.yaml")
    task = get_task(cfg.task)
    source = TokenizingSource(cfg, task, load_tokenizer(cfg.model))
    for train in (True, False):
        for lang, enc in source.sets("dev", ["en", "hi"], 12, train).items():
            path = tmp_path / f"{lang}-{train}.npz"
            task.save_encoded(enc, path)
            assert same(task.load_encoded(path), enc)


@pytest.mark.parametrize("preset,model", [("smoke", "tiny"), ("smoke", "embedded"), ("smoke-qa", "embedded")])
def test_the_model_name_tokenizer_encodes_like_a_saved_checkpoints(tmp_path, preset, model):
    """Sweeps tokenize with the model name's tokenizer; trials used to with the one a base checkpoint saved (the
    English stage loads the model, then saves both): the same encoded sets, bit for bit."""
    cfg = load_config(PRESETS / f"{preset}.yaml", [f"model.name={model}"])
    task = get_task(cfg.task)
    loaded, tok = task.load_model(cfg.model, None, cfg.seed)
    loaded.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    _, base_tok = task.load_model(cfg.model, str(tmp_path / "base"), cfg.seed)
    a = TokenizingSource(cfg, task, base_tok).sets("test", ["en", "zh"], 20)
    b = TokenizingSource(cfg, task, load_tokenizer(cfg.model)).sets("test", ["en", "zh"], 20)
    assert all(same(a[lang], b[lang]) for lang in a)


@pytest.fixture
def published(tmp_path):
    """A data asset of the smoke config published to local storage: (config, task, location, the sets' keys)."""
    cfg = load_config(PRESETS / "smoke.yaml")
    task = get_task(cfg.task)
    keys = needed_sets(cfg, task)
    meta = build_data_asset(TokenizingSource(cfg, task, load_tokenizer(cfg.model)), keys, tmp_path / "made")
    location = str(tmp_path / "storage" / "assets" / "data-test")
    assets.publish(tmp_path / "made", location, meta)
    return cfg, task, location, keys


def test_a_fetched_asset_gives_the_sets_tokenizing_gives(tmp_path, published):
    cfg, task, location, keys = published
    folder = assets.fetch(location, tmp_path / "node")
    source = AssetSource(cfg, task, folder, assets.local_manifest(folder)["meta"])
    direct = TokenizingSource(cfg, task, load_tokenizer(cfg.model))
    for key in keys:
        assert same(source.get(key), direct.get(key)), key


def test_concurrent_trials_on_a_node_fetch_once(tmp_path, published, monkeypatch):
    _, _, location, _ = published
    calls = []
    real = storage.download_files
    monkeypatch.setattr(storage, "download_files", lambda *a: (calls.append(a[1]), real(*a)))
    got = []
    threads = [threading.Thread(target=lambda: got.append(assets.fetch(location, tmp_path / "node")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got) == 4 and len(calls) == 1


def test_a_partial_upload_is_fetched_again_then_named(tmp_path, published, monkeypatch):
    _, _, location, keys = published
    name = keys[0].file_name
    real = storage.download_files
    cut_once = []

    def flaky(loc, names, local_dir):  # the first download of `name` arrives cut short
        real(loc, names, local_dir)
        if name in names and not cut_once:
            cut_once.append(name)
            path = local_dir / name
            data = path.read_bytes()
            path.unlink()  # a local download may be a hard link to the stored file: never write through it
            path.write_bytes(data[:100])
    monkeypatch.setattr(storage, "download_files", flaky)
    folder = assets.fetch(location, tmp_path / "node")
    assert cut_once and sha256_of(folder / name) == assets.local_manifest(folder)["files"][name]["sha256"]

    # The stored file itself is damaged: two downloads, then one line naming it.
    monkeypatch.setattr(storage, "download_files", real)
    stored = storage.join(location, name)
    data = open(stored, "rb").read()
    os.unlink(stored)  # the node cache may share its inode (a hard link): replace, do not truncate in place
    open(stored, "wb").write(data[:-10])
    with pytest.raises(assets.AssetError, match=f"^{stored}: does not match the sha256") as err:
        assets.fetch(location, tmp_path / "other-node")
    assert "\n" not in str(err.value)


def test_an_unfinished_asset_is_not_fetched(tmp_path, published):
    _, _, location, _ = published
    (tmp_path / "storage" / "assets" / "data-test" / assets.MANIFEST).unlink()
    with pytest.raises(assets.AssetError, match="asset not found or unfinished"):
        assets.fetch(location, tmp_path / "node2")


def test_copies_are_copies_and_a_node_copy_changed_in_place_is_fetched_again(tmp_path, caplog):
    src = tmp_path / "made"
    src.mkdir()
    (src / "model.safetensors").write_bytes(os.urandom(8192))
    first = str(tmp_path / "storage" / "exp1" / "assets" / "base-x")
    assets.publish(src, first)
    second = str(tmp_path / "storage" / "exp2" / "assets" / "base-x")
    assets.copy(first, second)
    cache = tmp_path / "cache"
    local = assets.fetch(second, cache)
    files = [src / "model.safetensors", tmp_path / "storage" / "exp1" / "assets" / "base-x" / "model.safetensors",
             tmp_path / "storage" / "exp2" / "assets" / "base-x" / "model.safetensors", local / "model.safetensors"]
    assert len({os.stat(f).st_ino for f in files}) == 4 and all(os.stat(f).st_nlink == 1 for f in files)
    # Zero 4 KB inside the node's copy, in place: the next trial's fetch sees it and fetches the asset again.
    with open(local / "model.safetensors", "r+b") as f:
        f.seek(1024)
        f.write(b"\0" * 4096)
    with caplog.at_level("WARNING", logger="xlamaml"):
        again = assets.fetch(second, cache)
    assert any("no longer matches the manifest" in r.getMessage() for r in caplog.records)
    assert sha256_of(again / "model.safetensors") == sha256_of(files[1])
    # The other experiment's copy and the original are untouched.
    assert sha256_of(files[2]) == sha256_of(files[1]) == sha256_of(src / "model.safetensors")
