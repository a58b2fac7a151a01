"""Stages that never build a model start without torch, albumentations or captum: each would
add seconds to every `dvc repro` of them (the benchmark's --stages times it)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

HEAVY = ("torch", "albumentations", "captum", "matplotlib")
PROBE = "import runpy, sys; runpy.run_path(sys.argv[1]); print(' '.join(m for m in sys.argv[2:] if m in sys.modules))"


def _heavy_imports(stage: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, f"stages/{stage}.py", *HEAVY], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.parametrize("stage", ["download", "stats"])
def test_data_stages_import_no_heavy_library(stage):
    assert _heavy_imports(stage) == []


def test_misclassify_imports_only_matplotlib_for_its_gallery():
    assert _heavy_imports("misclassify") == ["matplotlib"]


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_training_and_scoring_leave_albumentations_and_captum_until_used(stage):
    assert set(_heavy_imports(stage)) == {"torch", "matplotlib"}
