"""A compile cache on storage shared by several workers: two processes storing the same key at the
same moment leave one whole, checksummed entry (the one that finished first) and no temporary folder;
a temporary folder of another host's writer is never taken for a dead writer's.

Budget: ~20 s (two torchscript exports of the tiny BERT, two forked processes).
"""

from __future__ import annotations

import multiprocessing
import time

import pytest

from neuron_export import ExportOptions, export
from neuron_export.artifact.folders import SIBLING_NAME, clean_stale, sibling
from neuron_export.export import cache as cache_module
from neuron_export.export.cache import ENTRY_ARTIFACT, CompileCache


@pytest.fixture
def two_builds(tmp_path, monkeypatch):
    """The same export built twice (two workers that missed the cache): (key, task, [artifact, artifact])."""
    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(tmp_path / "first-cache"))
    artifacts = []
    for name in ("a", "b"):
        result = export("demo:tiny-bert", tmp_path / name, ExportOptions(backend="torchscript", sequence_length=16, force=True))
        CompileCache().clear()  # the second one compiles too
        artifacts.append(result.artifact)
    return result.manifest.compile_cache["key"], result.manifest.task, artifacts


def _store_slowly(root, key, artifact, barrier) -> None:
    copy = cache_module._copy_hashing

    def slow_copy(source, target):  # both writers are mid-entry at once
        time.sleep(0.05)
        return copy(source, target)

    cache_module._copy_hashing = slow_copy
    barrier.wait()
    CompileCache(root).store(key, artifact)


def test_two_workers_storing_one_key_at_once_leave_one_whole_entry(two_builds, tmp_path):
    key, task, artifacts = two_builds
    shared = tmp_path / "shared-cache"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_store_slowly, args=(shared, key, artifact, barrier)) for artifact in artifacts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert [p.name for p in shared.iterdir()] == [key]  # no temporary or trash folder left
    restored = tmp_path / "restored"
    manifest = CompileCache(shared).restore(key, restored, {"task": task, "backend": "torchscript"})
    assert manifest is not None and manifest.compile_cache["key"] == key  # every file matched its checksum
    assert sorted(p.name for p in (shared / key / ENTRY_ARTIFACT).iterdir()) == sorted(p.name for p in artifacts[0].iterdir())


def test_another_hosts_temporary_folder_is_kept(tmp_path):
    mine_dead = tmp_path / ".entry.tmp-999999999-0123abcd"  # this host (old name, no host): pid gone, removed
    theirs = tmp_path / ".entry.tmp-999999999-89abcdef@compile-node-7"  # its pid means nothing here
    for folder in (mine_dead, theirs):
        folder.mkdir()
    assert clean_stale(tmp_path) == [mine_dead] and theirs.is_dir()
    assert SIBLING_NAME.match(sibling(tmp_path / "entry", "tmp").name)["host"]  # new names carry the host
