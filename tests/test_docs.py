"""Every table of measurements in the docs is its stored results (benchmarks/publish.py), never
a figure typed by hand: a block edited by hand, or results stored and not published, fail here."""

from __future__ import annotations

import importlib.util
import json
import shutil

from tests.helpers import KIT

_spec = importlib.util.spec_from_file_location("publish", KIT / "benchmarks" / "publish.py")
publish = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(publish)


def test_the_published_figures_are_their_results():
    stale, broken = publish.publish(check=True)
    assert broken == [] and stale == [], "\n".join(broken + stale)
    blocks = [m.group(2) for doc in publish.DOCS for m in publish.BLOCK.finditer(doc.read_text())]
    assert set(publish.RENDERERS) <= set(blocks)


def test_a_figure_edited_by_hand_is_found_and_published_again(tmp_path):
    figures = tmp_path / "figures"
    shutil.copytree(publish.FIGURES, figures)
    doc = tmp_path / "page.md"
    doc.write_text("Times:\n\n<!-- figure feedback -->\n| typed | by hand |\n<!-- /figure -->\n"
                   "\n<!-- figure nonesuch -->\n<!-- /figure -->\n")
    stale, broken = publish.publish(check=True, docs=[doc], figures=figures)
    assert stale == ["page.md: figure feedback is not what feedback.json holds"]
    assert broken == ["page.md: no figure called 'nonesuch' (known: bench, feedback, "
                      "worst-case, class-on-slurm, stability, balance)"]
    publish.publish(docs=[doc], figures=figures)  # publishing writes the results' table
    data = json.loads((figures / "feedback.json").read_text())
    assert f"`{data['commands'][0]['command']}`" in doc.read_text()
    assert "typed" not in doc.read_text()
    assert publish.publish(check=True, docs=[doc], figures=figures)[0] == []
