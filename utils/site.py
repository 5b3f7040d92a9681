"""The course as a static web site: every notebook as an HTML page, an index with the course table.

    python -m utils.site                      # lectures and labs into site/
    python -m utils.site --out /tmp/course    # somewhere else
    python -m utils.site --with-solutions     # also the worked labs (instructors only)

nbconvert's HTML exporter (JupyterLab's look) renders each notebook as committed: the lectures
executed, the labs as handed out.  The worked labs (``solutions/``, executed) hold the answers and
the hidden tests, so they are added only on request, for an instructor's copy.  The pages work
offline: MathJax is copied from the ``jupyter-server-mathjax`` package beside them (nbconvert's
template would load it from a CDN), images are embedded, widgets show the static figure they leave
behind (see :func:`utils.viz.interactive`), and links between notebooks point at the pages.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from utils.paths import atomic_write, repo_root

SECTIONS = {  # folder -> what its pages are called
    "lectures": "lecture",
    "labs": "lab",
    "solutions": "worked lab",
}
MARKER = ".advx-site"  # marks a folder this module built, so a rebuild may replace it
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
CDN_MATHJAX = ("https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js"
               f"?config={MATHJAX_CONFIG}")

# nbconvert's JupyterLab template, less what it would fetch from a CDN: require.js and the widget
# renderer (no page here needs either) and Mermaid (no diagrams).  The packaged MathJax ships only
# the STIX-Web fonts, so MathJax is told to use those (as the classic notebook did).
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ super() }}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                 imageFont: null}, SVG: {font: "STIX-Web"}});
</script>
{%- endblock html_head_js_mathjax -%}
"""
LINK = re.compile(r'(href|src)="([^"]*)"')


def notebooks(root: Path, with_solutions: bool) -> list[Path]:
    """The notebooks that become pages, relative to ``root``: lectures, labs (and solutions)."""
    found = []
    for folder in SECTIONS:
        if folder == "solutions" and not with_solutions:
            continue
        found += sorted(p.relative_to(root) for p in (root / folder).glob("*.ipynb"))
    if not found:
        raise ValueError(f"no notebooks under {root}/lectures or {root}/labs: is {root} the course?")
    return found


def page_of(notebook: Path) -> Path:
    """The page a notebook becomes: the same path with ``.html``."""
    return notebook.with_suffix(".html")


def title_of(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first Markdown heading, without the ``#``s."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s+(.+)$", cell.source, flags=re.M)
            if match:
                return match.group(1).strip()
    return fallback


def static_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without live widgets: each widget output keeps its static figure, or goes.

    An output made by :func:`utils.viz.interactive` carries the widget and a PNG of its figure;
    the page shows the PNG.  A widget output with no such picture (only ``text/plain``, the
    widget's Python repr) says nothing on a static page and is dropped.  The saved widget state
    goes too, so the template loads no widget renderer.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if set(data) <= {"text/plain"}:
                    continue
            kept.append(output)
        cell.outputs = kept
    return nb


def navigation(notebook: Path, built: list[Path]) -> str:
    """A Markdown line for the top of a page: the index, and the lecture/lab/worked lab of its number."""
    number = notebook.name[:2]
    links = ["[course index](../index.html)"]
    for other in built:
        if other.name[:2] == number:
            label = f"{SECTIONS[other.parent.name]} {number}"
            links.append(f"**{label}**" if other == notebook
                         else f"[{label}](../{page_of(other).as_posix()})")
    return "*Adversarial X* · " + " · ".join(links)


def course_table(root: Path, built: list[Path]) -> str:
    """The README's course table (Markdown, links to notebooks), or "" when the README has none."""
    readme = root / "README.md"
    if not readme.exists():
        return ""
    match = re.search(r"^## The course\s*\n(.*?)(?=^## |\Z)", readme.read_text(), flags=re.M | re.S)
    if not match:
        return ""
    text = match.group(1).strip()
    if any(p.parts[0] == "solutions" for p in built):  # a worked-lab link after each lab link
        def add_worked(m: re.Match) -> str:
            worked = Path("solutions") / Path(m.group(2)).name
            return m.group(0) + (f" · [worked](solutions/{worked.name})" if worked in built else "")
        text = re.sub(r"\[([^\]]*)\]\((labs/[^)]+\.ipynb)\)", add_worked, text)
    return text


def index_notebook(root: Path, built: list[Path], titles: dict[Path, str]) -> nbformat.NotebookNode:
    """The index page as a notebook of Markdown: the course table, then every page by section."""
    parts = ["# Adversarial X",
             "A hands-on course, as JupyterLab notebooks, on what happens when optimisation is "
             "turned *against* neural networks, or networks against each other. These pages are "
             "the notebooks as committed (lectures executed, labs as handed out); to run them, "
             "open the course in JupyterLab with `python3 kit.py open`."]
    table = course_table(root, built)
    if table:
        parts += ["## The course", table]
    parts.append("## All pages")
    for folder, name in SECTIONS.items():
        pages = [p for p in built if p.parts[0] == folder]
        if pages:
            parts.append(f"**{name.capitalize()}s**\n\n" + "\n".join(
                f"* [{titles[p]}]({p.as_posix()})" for p in pages))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("\n\n".join(parts))]
    nb.metadata["title"] = "Adversarial X"
    return nb


def local_mathjax() -> Path | None:
    """The folder of MathJax 2 that the ``jupyter-server-mathjax`` package ships, if installed."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    return folder if (folder / "MathJax.js").exists() else None


def rewrite_links(html: str, page: Path, root: Path, out: Path) -> str:
    """Point relative links at notebooks to their pages; copy other linked course files along."""
    def fix(match: re.Match) -> str:
        attribute, url = match.groups()
        if not url or url.startswith(("#", "data:", "/")) or ":" in url.split("/")[0]:
            return match.group(0)
        path, hash_, fragment = url.partition("#")
        if path.endswith(".ipynb"):
            return f'{attribute}="{path[:-len(".ipynb")]}.html{hash_}{fragment}"'
        source = (root / page.parent / path).resolve()
        if source.is_file() and source.is_relative_to(root.resolve()):
            atomic_write(out / source.relative_to(root.resolve()), source.read_bytes())
        return match.group(0)
    return LINK.sub(fix, html)


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"site.html.j2": TEMPLATE})],
                        template_file="site.html.j2", embed_images=True)


def _render(exporter, nb, page: Path, root: Path, out: Path, mathjax: str, source_dir: Path) -> None:
    depth = len(page.parts) - 1
    exporter.mathjax_url = mathjax if "://" in mathjax else "../" * depth + mathjax
    resources = {"metadata": {"name": page.stem, "path": str(source_dir)}}
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    atomic_write(out / page, rewrite_links(html, page, root, out))


def build(out: Path | str, *, root: Path | str | None = None, with_solutions: bool = False,
          only: list[str] | None = None, quiet: bool = False) -> list[Path]:
    """Build the site into ``out`` (replaced if this module built it before); returns its pages.

    ``only`` keeps the notebooks whose path contains one of the given strings (e.g. ``["00_"]``),
    for a quick partial build.  Raises ``ValueError`` if ``out`` holds something else.
    """
    root = Path(root) if root is not None else repo_root()
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ValueError(f"{out} exists and was not built by utils.site; choose an empty or new "
                         f"folder with --out (a rebuild replaces only a folder holding {MARKER})")
    chosen = notebooks(root, with_solutions)
    if only is not None:
        chosen = [p for p in chosen if any(s in p.as_posix() for s in only)]
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        mathjax_folder = local_mathjax()
        if mathjax_folder is None:
            mathjax = CDN_MATHJAX
            print("utils.site: jupyter-server-mathjax is not installed, so the maths on these pages "
                  "loads MathJax from the internet; `pip install jupyter-server-mathjax` makes "
                  "them work offline", file=sys.stderr)
        else:
            shutil.copytree(mathjax_folder, staging / "_static" / "mathjax")
            mathjax = f"_static/mathjax/MathJax.js?config={MATHJAX_CONFIG}"
        exporter = _exporter()
        titles = {}
        for notebook in chosen:
            started = time.perf_counter()
            nb = static_widgets(nbformat.read(root / notebook, as_version=4))
            titles[notebook] = title_of(nb, notebook.stem)
            nb.metadata["title"] = f"{titles[notebook]} ({SECTIONS[notebook.parts[0]]})"
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(navigation(notebook, chosen)))
            _render(exporter, nb, page_of(notebook), root, staging, mathjax, root / notebook.parent)
            say(f"  {page_of(notebook).as_posix():50s} {time.perf_counter() - started:5.1f} s")
        _render(exporter, index_notebook(root, chosen, titles), Path("index.html"), root, staging,
                mathjax, root)
        atomic_write(staging / MARKER, "built by python -m utils.site; safe to delete\n")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp made it private to its owner
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [Path("index.html")] + [page_of(p) for p in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.site", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(repo_root() / "site"),
                        help="folder to build into (default: site/ in the repository)")
    parser.add_argument("--with-solutions", action="store_true",
                        help="also render solutions/ (answers and hidden tests: not for students)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        pages = build(args.out, with_solutions=args.with_solutions)
    except ValueError as error:
        print(f"utils.site: {error}", file=sys.stderr)
        return 2
    print(f"{len(pages)} pages in {Path(args.out).resolve()} "
          f"({time.perf_counter() - started:.0f} s); open index.html in a browser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
