"""The host CPU's description, kept in the compile cache's directory
(runtime/host.py): read back without LLVM on the same kind of machine,
asked of LLVM again when missing, damaged or another machine's."""

import json

import pytest

from ember.compiler.codegen.target import host_target, probe_host_cpu
from ember.runtime import host as host_module
from ember.runtime.object_cache import HOST_PREFIX, ObjectCache


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """`host()` forgotten, with the cache in `tmp_path`; yields the calls to LLVM."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    probes = []

    def probe():
        probes.append(1)
        return probe_host_cpu()

    monkeypatch.setattr(host_module, "probe_host_cpu", probe)
    host_module.host.cache_clear()
    yield probes
    host_module.host.cache_clear()


def records(directory):
    return sorted(directory.glob(f"{HOST_PREFIX}*.json"))


def test_the_description_is_llvms_and_is_read_back_without_it(fresh, tmp_path):
    assert host_module.host() == host_target()
    assert fresh == [1]
    [record] = records(tmp_path)
    assert json.loads(record.read_text())["cpu"] == host_target().cpu
    host_module.host.cache_clear()
    assert host_module.host() == host_target()
    assert fresh == [1]  # read back


@pytest.mark.parametrize(
    "damage",
    [lambda text: text[: len(text) // 2], lambda text: text.replace('"fingerprint": "', '"fingerprint": "0')],
    ids=["truncated", "another-machine"],
)
def test_a_damaged_or_foreign_record_is_asked_again(fresh, tmp_path, damage):
    host_module.host()
    [record] = records(tmp_path)
    record.write_text(damage(record.read_text()))
    host_module.host.cache_clear()
    assert host_module.host() == host_target()
    assert fresh == [1, 1]
    assert json.loads(record.read_text())["fingerprint"] in record.name  # rewritten whole


def test_without_cpuinfo_llvm_is_asked_every_time(fresh, tmp_path, monkeypatch):
    monkeypatch.setattr(host_module, "cpu_fingerprint", lambda: None)
    assert host_module.host() == host_target()
    assert records(tmp_path) == []


def test_clearing_the_cache_removes_the_records(fresh, tmp_path):
    host_module.host()
    ObjectCache(tmp_path).clear()
    assert records(tmp_path) == []
