"""Planning the torch device of the model tasks, its precision, and sharing one GPU."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from geo_ntl import _device
from geo_ntl._device import DevicePlan, gpu_slot, plan_device, precision_for
from geo_ntl.exceptions import InputError
from geo_ntl.testing import AtOnce


def _fake_gpus(monkeypatch, capabilities):
    """Make torch in this process see GPUs of these compute capabilities (by index)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    # Emulated bf16 makes torch say yes on any card: the choice must not ask it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    def capability(device=None):
        index = torch.device(device).index if device is not None else None
        return capabilities[0 if index is None else index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)


def test_precision_for__bf16_from_compute_capability_8():
    assert precision_for(None) == "fp32"
    assert precision_for((7, 5)) == "fp16"  # Turing: no bf16 convolutions in cuDNN
    assert precision_for((8, 0)) == "bf16"
    assert precision_for((9, 0)) == "bf16"


def test_plan_device__precision_of_the_gpu_in_use_not_the_current_one(monkeypatch):
    _fake_gpus(monkeypatch, [(7, 5), (8, 6)])
    assert plan_device("cuda") == DevicePlan("cuda", "fp16")
    assert plan_device("cuda:1") == DevicePlan("cuda:1", "bf16")
    assert plan_device("cpu") == DevicePlan("cpu", "fp32")


def test_deblur_array__forward_runs_in_the_planned_precision(monkeypatch):
    from geo_ntl.deblur import inference

    _fake_gpus(monkeypatch, [(7, 0), (8, 0)])
    seen = []

    def forward(self, x):
        seen.append((self.device, self.precision))
        return x

    monkeypatch.setattr(inference._Runner, "_forward", forward)
    image = np.zeros((3, 32, 32), np.uint8)
    inference.deblur_array(image, device="cuda:0", conserve=False)
    inference.deblur_array(image, device="cuda:1", conserve=False)
    assert seen == [("cuda:0", "fp16"), ("cuda:1", "bf16")]


def test_gpu_slot__one_model_call_at_a_time_per_gpu():
    def most_at_once(device):
        probe = AtOnce()

        def call():
            with gpu_slot(device):
                probe.visit()

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return probe.most

    assert most_at_once(torch.device("cuda", 0)) == 1
    assert most_at_once(torch.device("cpu")) > 1


# --- on a cluster: planned from the workers' GPUs, not this process's ------------------------


@pytest.fixture
def mixed_client(mixed_cluster):
    from distributed import Client

    with Client(mixed_cluster) as client:
        yield client


def test_plan_device__cuda_on_gpu_workers_from_a_client_without_gpu(mixed_client, monkeypatch):
    # This process has no GPU (torch is CPU-only here); the GPU-declaring worker has one.
    monkeypatch.setattr(_device, "local_gpus", lambda: [(8, 0)])
    assert not torch.cuda.is_available()
    for asked in ("auto", "cuda"):
        assert plan_device(asked) == DevicePlan("cuda", "bf16", {"GPU": 1})
    assert plan_device("cpu") == DevicePlan("cpu", "fp32")


def test_plan_device__cuda_refused_when_the_workers_have_none(mixed_client):
    assert plan_device("auto") == DevicePlan("cpu", "fp32")
    with pytest.raises(InputError, match="1 of the cluster's 1 workers that declare a GPU"):
        plan_device("cuda")
