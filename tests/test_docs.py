"""docs/models.md, where each model's equations come from: every model has a section, every reference to it
from the code and the tests names a section that exists."""

import re
from pathlib import Path

from mscbench.models import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "models.md").read_text()
ANCHORS = set(re.findall(r'<a id="([\w-]+)"></a>', DOC))


def test_every_registered_model_links_to_a_section():
    linked = dict(re.findall(r"^\| `(\w+)` \| \[\w+\]\(#([\w-]+)\) \|$", DOC, flags=re.MULTILINE))
    assert set(linked) == set(REGISTRY)
    assert set(linked.values()) <= ANCHORS


def test_every_reference_from_the_code_names_an_existing_section():
    references = {(path.relative_to(ROOT), anchor) for folder in ("mscbench", "tests") for path in (ROOT / folder).rglob("*.py")
                  for anchor in re.findall(r"docs/models\.md#([\w-]+)", path.read_text())}
    assert len(references) > 20
    assert [(str(path), anchor) for path, anchor in references if anchor not in ANCHORS] == []
