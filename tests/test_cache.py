"""The grading cache on its own: keys, entries, corruption (no TensorFlow, no child process)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_akida_grade import cache as cache_module
from pytest_akida_grade.cache import MANIFEST, Cache, Entry, FilesOnly, cache_key
from pytest_akida_grade.codec import Record
from pytest_akida_grade.results import Stage

PARTS: dict[str, Any] = {"source": "ab" * 32, "weights": None, "route": "default recipe",
                         "epochs": 5, "seed": 0, "data": "cd" * 32}


class Problems(list[str]):
    """An on_problem callback that remembers what it was told."""

    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def cache(tmp_path: Path, problems: Problems) -> Cache:
    return Cache(tmp_path / "cache", on_problem=problems)


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "model.fbz"
    path.write_bytes(b"\x00converted model\xff" * 100)
    return path


@dataclass(frozen=True, kw_only=True)
class Figures(Record):
    """A stage's result, as the cache stores any."""

    akida_accuracy: float
    nested: dict[str, int]


FIGURES = Figures(akida_accuracy=0.97, nested={"nps": 33})


def stored(cache: Cache, artifact: Path) -> Entry[Figures]:
    entry = cache.store("grade", "k" * 64, Stage(result=FIGURES), {"model.fbz": artifact})
    assert entry is not None
    return entry


# ---------------------------------------------------------------------------- keys


def test_the_same_inputs_give_the_same_key_whatever_their_order() -> None:
    reordered = dict(reversed(list(PARTS.items())))
    assert cache_key("trained", **PARTS) == cache_key("trained", **reordered)
    assert cache_key("trained", **PARTS) == cache_key("trained", **dict(PARTS))


def test_a_key_is_a_sha256_hex_digest_usable_as_a_directory_name() -> None:
    key = cache_key("trained", **PARTS)
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")


@pytest.mark.parametrize("part", sorted(PARTS))
def test_changing_any_one_input_changes_the_key(part: str) -> None:
    changed = {**PARTS, part: "something else"}
    assert cache_key("trained", **changed) != cache_key("trained", **PARTS)


def test_adding_or_dropping_an_input_changes_the_key() -> None:
    fewer = {k: v for k, v in PARTS.items() if k != "weights"}
    assert cache_key("trained", **fewer) != cache_key("trained", **PARTS)
    assert cache_key("trained", **PARTS, extra=1) != cache_key("trained", **PARTS)


def test_the_stage_kind_is_part_of_the_key() -> None:
    assert cache_key("inspect", **PARTS) != cache_key("grade", **PARTS)


def test_values_of_different_types_do_not_collide() -> None:
    assert cache_key("trained", epochs=5) != cache_key("trained", epochs="5")
    assert cache_key("trained", weights=None) != cache_key("trained", weights="None")


def test_a_toolchain_upgrade_invalidates_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_key("trained", **PARTS)
    upgraded = {**cache_module.toolchain_versions(), "akida": "9.9.9"}
    monkeypatch.setattr(cache_module, "toolchain_versions", lambda: upgraded)
    assert cache_key("trained", **PARTS) != before


def test_a_change_to_the_harness_code_invalidates_every_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_key("trained", **PARTS)
    monkeypatch.setattr(cache_module, "code_digest", lambda: "0" * 64)
    assert cache_key("trained", **PARTS) != before


def test_the_code_digest_covers_every_file_of_the_package() -> None:
    digest = cache_module.code_digest()
    assert len(digest) == 64
    assert cache_module.PACKAGE.name == "pytest_akida_grade"
    assert (cache_module.PACKAGE / "rules" / "akida_v1.py").is_file()


def test_a_new_harness_version_invalidates_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_key("trained", **PARTS)
    monkeypatch.setattr(cache_module, "__version__", "999.0.0")
    assert cache_key("trained", **PARTS) != before


# ---------------------------------------------------------------------------- entries


def test_a_stored_entry_loads_back_with_its_result_and_files(cache: Cache, artifact: Path,
                                                             problems: Problems) -> None:
    entry = stored(cache, artifact)
    loaded = cache.load("grade", "k" * 64, Figures)
    assert loaded is not None
    assert loaded.stage.result == FIGURES
    assert loaded.directory == entry.directory
    assert loaded.file("model.fbz").read_bytes() == artifact.read_bytes()
    assert problems == []


def test_an_entry_is_a_copy_independent_of_the_original_file(cache: Cache,
                                                             artifact: Path) -> None:
    stored(cache, artifact)
    artifact.write_bytes(b"changed after storing")
    loaded = cache.load("grade", "k" * 64, Figures)
    assert loaded is not None
    assert loaded.file("model.fbz").read_bytes() != artifact.read_bytes()


def test_an_entry_without_files_round_trips(cache: Cache) -> None:
    cache.store("inspect", "i" * 64, Stage(result=FIGURES))
    loaded = cache.load("inspect", "i" * 64, Figures)
    assert loaded is not None and loaded.stage == Stage(result=FIGURES)


def test_a_cached_failure_and_an_entry_of_files_alone_have_the_same_shape(
        cache: Cache, artifact: Path) -> None:
    cache.store("build", "b" * 64, Stage[Figures](failure="build_model() raised"))
    failed = cache.load("build", "b" * 64, Figures)
    assert failed is not None and failed.stage == Stage(failure="build_model() raised")
    cache.store("trained", "t" * 64, Stage(result=FilesOnly()), {"model.fbz": artifact})
    manifests = [json.loads((cache.root / kind / key / MANIFEST).read_text())  # type: ignore
                 for kind, key in (("build", "b" * 64), ("trained", "t" * 64))]
    assert [sorted(m) for m in manifests] == [["failure", "files", "result"]] * 2
    files_only = cache.load("trained", "t" * 64, FilesOnly)
    assert files_only is not None and files_only.stage.result == FilesOnly()


def test_a_missing_entry_is_a_silent_miss(cache: Cache, problems: Problems) -> None:
    assert cache.load("grade", "0" * 64, Figures) is None
    assert problems == []


def test_storing_again_replaces_the_entry_and_leaves_no_staging_directory(
        cache: Cache, artifact: Path) -> None:
    entry = stored(cache, artifact)
    again = Figures(akida_accuracy=0.5, nested={})
    cache.store("grade", "k" * 64, Stage(result=again), {"model.fbz": artifact})
    loaded = cache.load("grade", "k" * 64, Figures)
    assert loaded is not None
    assert loaded.stage.result == again
    assert [p.name for p in entry.directory.parent.iterdir()] == ["k" * 64]


def test_kinds_are_kept_apart(cache: Cache, artifact: Path) -> None:
    stored(cache, artifact)
    assert cache.load("trained", "k" * 64, Figures) is None


# ---------------------------------------------------------------------------- corruption


def _alter_file(entry: Entry) -> None:
    entry.file("model.fbz").write_bytes(b"bit rot")


def _delete_file(entry: Entry) -> None:
    entry.file("model.fbz").unlink()


def _garble_manifest(entry: Entry) -> None:
    entry.file(MANIFEST).write_text("{not json")


def _manifest_of_the_wrong_shape(entry: Entry) -> None:
    entry.file(MANIFEST).write_text(json.dumps({"result": [1, 2], "files": {}}))


def _result_of_another_stage(entry: Entry) -> None:
    entry.file(MANIFEST).write_text(json.dumps({"result": {"route": "train()"}, "files": {}}))


def _manifest_nested_to_crash_its_reader(entry: Entry) -> None:
    entry.file(MANIFEST).write_text("[" * 100_000)


def _manifest_naming_a_file_outside(entry: Entry) -> None:
    entry.file(MANIFEST).write_text(json.dumps({"result": None, "failure": "x",
                                                "files": {"../../secret": "ab"}}))


def _delete_manifest(entry: Entry) -> None:
    entry.file(MANIFEST).unlink()


@pytest.mark.parametrize(("damage", "said"), [
    (_alter_file, "model.fbz does not match its recorded hash"),
    (_delete_file, "model.fbz is missing"),
    (_garble_manifest, "manifest.json is not valid JSON"),
    (_manifest_of_the_wrong_shape, "Manifest.result: expected dict[str, object] | None, got list"),
    (_result_of_another_stage, "Figures: unknown fields ['route']"),
    (_manifest_nested_to_crash_its_reader, "manifest.json is nested more than 64 levels deep"),
    (_manifest_naming_a_file_outside, "../../secret is missing"),
    (_delete_manifest, "manifest.json: no such file"),
])
def test_a_corrupt_entry_is_reported_deleted_and_treated_as_a_miss(
        cache: Cache, artifact: Path, problems: Problems, damage: Any, said: str) -> None:
    entry = stored(cache, artifact)
    damage(entry)
    assert cache.load("grade", "k" * 64, Figures) is None
    assert len(problems) == 1
    assert said in problems[0]
    assert str(entry.directory) in problems[0]
    assert "rebuilding" in problems[0]
    assert not entry.directory.exists()


def test_a_corrupt_entry_can_be_rebuilt_and_then_loads_cleanly(
        cache: Cache, artifact: Path, problems: Problems) -> None:
    _alter_file(stored(cache, artifact))
    assert cache.load("grade", "k" * 64, Figures) is None
    stored(cache, artifact)
    assert cache.load("grade", "k" * 64, Figures) is not None
    assert len(problems) == 1


# ---------------------------------------------------------------------------- disabled


def test_a_cache_without_a_root_stores_nothing_and_always_misses(
        tmp_path: Path, artifact: Path) -> None:
    problems = Problems()
    disabled = Cache(None, on_problem=problems)
    assert disabled.store("grade", "k" * 64, Stage(result=FIGURES),
                          {"model.fbz": artifact}) is None
    assert disabled.load("grade", "k" * 64, Figures) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fbz"]
    assert problems == []
