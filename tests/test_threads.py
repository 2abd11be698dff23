"""How many cores Tessera thinks it has: a container's CPU quota and the process's affinity count, not the host's."""

from __future__ import annotations

import os

import pytest

from tessera import threads


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_read_and_max_means_none(tmp_path):
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 1.5
    write(tmp_path / "cpu.max", "max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None


def test_cgroup_v1_quota_is_read_and_minus_one_means_none(tmp_path):
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "200000\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 2.0
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    assert threads.cgroup_cpu_quota(tmp_path / "missing") is None


def test_a_quota_below_the_affinity_caps_the_cores_and_the_threads(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 1.5)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.available_cores() == 2  # 1.5 CPUs of time: two threads can use it, 64 would be throttled
    assert threads.idle_cores() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    assert threads.available_cores() == 64


@pytest.mark.parametrize("load, idle", [(0.0, 4), (1.2, 3), (3.9, 1), (12.0, 1)])
def test_idle_cores_subtract_the_load_and_keep_one(monkeypatch, load, idle):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert threads.idle_cores() == idle
    assert threads.resolve_threads(3) == 3  # a number given always wins
