"""The course site (``python -m utils.site``): every page built, every link and load inside it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

from utils import site

ROOT = Path(__file__).resolve().parents[1]
LOADS = {("script", "src"), ("img", "src"), ("link", "href"), ("iframe", "src"), ("source", "src")}


class Page(HTMLParser):
    """The links, the loaded resources and the element ids of one HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.loads, self.ids = [], [], set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if value is None or name not in ("href", "src"):
                continue
            (self.loads if (tag, name) in LOADS else self.links).append(value)


def is_local(url: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", url, flags=re.I) and not url.startswith("//")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The whole site, worked labs included (the default build is the same less solutions/)."""
    out = tmp_path_factory.mktemp("site") / "site"
    pages = site.build(out, with_solutions=True, quiet=True)
    return out, pages


def every_notebook() -> list[Path]:
    return sorted(p.relative_to(ROOT) for folder in ("lectures", "labs", "solutions")
                  for p in (ROOT / folder).glob("*.ipynb"))


def test_every_notebook_has_a_page_and_the_index_links_them_all(built):
    out, pages = built
    assert sorted(pages) == sorted([Path("index.html")] + [p.with_suffix(".html")
                                                           for p in every_notebook()])
    index = Page((out / "index.html").read_text())
    linked = {Path(unquote(link)) for link in index.links if is_local(link)}
    missing = [p for p in pages if p != Path("index.html") and p not in linked]
    assert not missing, f"pages the index does not link: {missing}"


def test_every_internal_link_and_anchor_resolves(built):
    out, pages = built
    parsed = {page: Page((out / page).read_text()) for page in pages}
    broken = []
    for page, html in parsed.items():
        for url in html.links + html.loads:
            if not is_local(url) or not url:
                continue
            path, _, fragment = url.partition("#")
            target = (out / page).parent / unquote(path.split("?")[0]) if path else out / page
            if not target.is_file():
                broken.append(f"{page}: {url}")
            elif fragment and target.suffix == ".html":
                ids = parsed[target.resolve().relative_to(out.resolve())].ids
                if fragment not in ids and unquote(fragment) not in ids:  # as browsers look
                    broken.append(f"{page}: {url} (no such anchor)")
            if path.endswith(".ipynb"):
                broken.append(f"{page}: {url} (a notebook, not its page)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_pages_load_nothing_from_the_network_and_embed_their_images(built):
    out, pages = built
    for page in pages:
        html = Page((out / page).read_text())
        outside = [url for url in html.loads if not is_local(url) and not url.startswith("data:")]
        assert not outside, f"{page} loads {outside} from the network"
        scripts = [u for u in html.loads if "MathJax.js" in u]
        assert len(scripts) == 1 and (out / page).parent.joinpath(scripts[0].split("?")[0]).is_file()


def test_pages_carry_their_figures_and_maths_but_no_live_widgets(built):
    out, _ = built
    lecture = (out / "lectures" / "01_adversarial_examples.html").read_text()
    assert lecture.count("data:image/png;base64") >= 5  # the lecture's figures, embedded
    assert "$" in lecture or "\\(" in lecture  # maths left for MathJax to typeset
    for page in out.rglob("*.html"):
        text = page.read_text()
        assert "application/vnd.jupyter.widget-view+json" not in text, page
        assert "VBox(children=" not in text, f"{page} shows a widget's Python repr"


def test_pages_link_back_to_the_index_and_to_their_lecture_and_lab(built):
    out, _ = built
    html = Page((out / "labs" / "00_start_here_lab.html").read_text())
    for link in ("../index.html", "../lectures/00_start_here.html",
                 "../solutions/00_start_here_lab.html"):
        assert link in html.links


def test_default_build_leaves_the_worked_labs_out():
    chosen = site.notebooks(ROOT, with_solutions=False)
    assert chosen and not [p for p in chosen if p.parts[0] == "solutions"]
    assert {p.parts[0] for p in chosen} == {"lectures", "labs"}


def test_static_widgets_keeps_the_fallback_figure_and_drops_bare_widgets():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    cell = nbformat.v4.new_code_cell("viz.interactive(...)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={site.WIDGET_VIEW: view, "image/png": "iVBO",
                                                     "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={site.WIDGET_VIEW: view, "text/plain": "VBox()"}),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
    ]
    nb.cells = [cell]
    static = site.static_widgets(nb)
    assert "widgets" not in static.metadata and "widgets" in nb.metadata  # a copy
    assert [sorted(o.get("data", {})) for o in static.cells[0].outputs] == [
        ["image/png", "text/plain"], []]


def test_links_to_notebooks_are_rewritten_to_pages(tmp_path):
    html = ('<a href="01_x.ipynb#Part-1">a</a> <a href="../labs/01_x_lab.ipynb">b</a> '
            '<a href="https://example.org/x.ipynb">c</a> <a href="#top">d</a>')
    fixed = site.rewrite_links(html, Path("lectures/00.html"), ROOT, tmp_path)
    assert fixed == ('<a href="01_x.html#Part-1">a</a> <a href="../labs/01_x_lab.html">b</a> '
                     '<a href="https://example.org/x.ipynb">c</a> <a href="#top">d</a>')


def test_build_replaces_its_own_site_but_refuses_another_folder(tmp_path):
    foreign = tmp_path / "not-a-site"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not built by utils.site"):
        site.build(foreign, only=["labs/00_"], quiet=True)
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "site"
    site.build(out, only=["labs/00_"], quiet=True)
    (out / "stale.html").write_text("from an older build")
    pages = site.build(out, only=["labs/00_"], quiet=True)
    assert pages == [Path("index.html"), Path("labs/00_start_here_lab.html")]
    assert not (out / "stale.html").exists() and (out / "labs" / "00_start_here_lab.html").is_file()
