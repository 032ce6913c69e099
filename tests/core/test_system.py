"""core.system: what the machine is, read from the files the kernel exposes."""

from __future__ import annotations

from qwenkit.core import system


def _virtio_device(root, name, device_id, features):
    device = root / name
    device.mkdir(parents=True)
    (device / "device").write_text(device_id + "\n")
    (device / "features").write_text(features + "\n")


def test_free_page_reporting_is_the_balloon_feature_bit(tmp_path):
    """Only a virtio balloon (device 0x0005) with feature bit 5 set reports free pages; bit 5 of another device
    (here a block device, 0x0002) or a balloon without it does not."""
    assert not system.free_page_reporting(tmp_path / "missing")
    _virtio_device(tmp_path, "virtio0", "0x0002", "0000010000")
    _virtio_device(tmp_path, "virtio1", "0x0005", "0110000000")
    assert not system.free_page_reporting(tmp_path)
    (tmp_path / "virtio2").mkdir()  # a device whose files cannot be read is skipped
    _virtio_device(tmp_path, "virtio3", "0x0005", "0110010000")
    assert system.free_page_reporting(tmp_path)
    assert isinstance(system.free_page_reporting(), bool)


def test_cpu_family_model_reads_the_exact_keys(monkeypatch):
    """``model`` is its own key, not the ``model name`` line; either key missing gives None (ARM has neither)."""
    fields = {"vendor_id": "AuthenticAMD", "cpu family": "23", "model": "49", "model name": "AMD EPYC"}
    monkeypatch.setattr(system, "_cpuinfo_fields", lambda: fields)
    assert system.cpu_family_model() == "family 23 model 49"
    assert system.machine_summary()["cpu_family_model"] == "family 23 model 49"
    assert system.cpu_family() == 23
    monkeypatch.setattr(system, "_cpuinfo_fields", lambda: {"model name": "AMD EPYC", "cpu family": "23"})
    assert system.cpu_family_model() is None
    monkeypatch.setattr(system, "_cpuinfo_fields", lambda: None)
    assert system.cpu_family_model() is None and system.cpu_family() is None
