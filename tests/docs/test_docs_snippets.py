"""Run every ```python block of docs/*.md: each file's blocks in order, in one namespace, in a
fresh temporary folder (the snippets make their own small synthetic data there)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return _BLOCK.findall(path.read_text())


DOC_FILES = sorted(DOCS.glob("*.md"))
# README.md is the index: it has no snippet
SNIPPET_FILES = [p for p in DOC_FILES if p.name != "README.md"]


def test_docs_exist_and_have_snippets():
    names = {p.name for p in DOC_FILES}
    expected = {
        "getting_started.md",
        "datasets.md",
        "data_loading.md",
        "models.md",
        "training.md",
        "evaluation.md",
        "configs.md",
        "deployment.md",
        "migrating_from_detectron2.md",
    }
    assert expected <= names, f"missing docs: {sorted(expected - names)}"
    for p in SNIPPET_FILES:
        assert python_blocks(p), f"{p.name} has no python snippet"


@pytest.mark.parametrize("doc", SNIPPET_FILES, ids=[p.name for p in SNIPPET_FILES])
def test_doc_snippets_run(doc, tmp_path, monkeypatch):
    blocks = python_blocks(doc)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHDET_SHAPES_DIR", raising=False)
    from torchdet.data import DatasetCatalog, MetadataCatalog

    registered = set(DatasetCatalog.list())
    threads = torch.get_num_threads()
    namespace: dict = {"__name__": f"docs_{doc.stem}"}
    try:
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"{doc.name}[block {i}]", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"{doc.name}, python block {i} failed:\n{code}") from e
    finally:
        torch.set_num_threads(threads)
        # each doc registers its own data (in its own folder): forget it for the next doc
        for name in set(DatasetCatalog.list()) - registered:
            DatasetCatalog.remove(name)
            if name in MetadataCatalog.list():
                MetadataCatalog.remove(name)
    assert os.getcwd() == str(tmp_path)
