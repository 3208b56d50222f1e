"""The manuals cannot drift from the code: generated references are fresh, links resolve.

``docs/cli.md``, ``docs/config-reference.md`` and ``docs/topics.md`` are written by
``docs/generate.py`` from the argument parser, the configuration models and the topic
module. Each is rendered here in memory and compared with the committed file, so a new
flag, configuration field or topic fails the tests until the page is regenerated. Every
relative link in README.md and docs/*.md must name a file that exists, so moving a page
or a file breaks the tests, not the reader.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import REPO

DOCS = REPO / "docs"
MANUALS = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
# [text](target) and ![alt](target); the target ends at whitespace or the closing bracket.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_BLOCK = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("roadsense_docs_generate", DOCS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
PAGES: dict[str, str] = GENERATOR.render_all()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_generated_reference_is_fresh(name: str) -> None:
    committed = DOCS / name
    command = GENERATOR.COMMAND
    assert committed.is_file(), f"docs/{name} is missing: run `{command}`"
    fresh = committed.read_text(encoding="utf-8") == PAGES[name]
    assert fresh, f"docs/{name} is stale (it differs from the code): run `{command}`"


def test_the_references_cover_the_code() -> None:
    from roadsense.cli.main import build_parser
    from roadsense.cloud.config import CloudConfig
    from roadsense.edge.config import EdgeConfig
    from roadsense.proto import topics

    cli = PAGES["cli.md"]
    assert "## roadsense fleet rollout start\n" in cli
    assert build_parser().prog == "roadsense"
    config = PAGES["config-reference.md"]
    for model in (EdgeConfig, CloudConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in config
    assert '| `delivery` | "cloud" or "broker" | `"cloud"` |' in config
    listed = PAGES["topics.md"]
    assert listed.count("| `roadsense/v1/") == 7
    assert topics.ack_topic("<device_id>") in listed


def test_the_stale_check_names_the_file(tmp_path: Path) -> None:
    for name, text in PAGES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert GENERATOR.stale(PAGES, tmp_path) == []
    (tmp_path / "topics.md").write_text("# old\n", encoding="utf-8")
    assert GENERATOR.stale(PAGES, tmp_path) == ["docs/topics.md"]


def _relative_links(text: str) -> list[str]:
    prose = CODE_SPAN.sub("", CODE_BLOCK.sub("", text))
    targets = [m[1] for m in LINK.finditer(prose)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", MANUALS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file(page: Path) -> None:
    broken = []
    for target in _relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{page.relative_to(REPO)} links to missing files: {broken}"


def test_the_link_check_sees_links_and_skips_code() -> None:
    text = "See [a](docs/a.md#x), ![b](b.png) and [c](https://e.org).\n```\n[d](nope.md)\n```\n"
    assert _relative_links(text) == ["docs/a.md#x", "b.png"]


def test_the_manuals_cite_the_pitfalls_the_code_cites() -> None:
    pitfalls = (DOCS / "pitfalls.md").read_text(encoding="utf-8")
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", pitfalls, flags=re.MULTILINE)]
    assert numbers == list(range(1, 16))
    cited = set()
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        cited |= {int(n) for n in re.findall(r"pitfalls\.md\s*#(\d+)", path.read_text("utf-8"))}
    assert cited <= set(numbers)


def test_the_readme_stays_short_and_keeps_the_quickstart() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) < 10_000
    assert "make demo" in readme
    assert "make test" in readme
