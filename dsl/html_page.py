"""A model's picture as one self-contained interactive HTML page.

The page holds Graphviz's SVG inline and a small script of its own, and reads nothing
from the network: it opens from a file, offline, in any browser. Clicking a cluster's
title collapses it (its layers and the edges inside are hidden, the box greys and says
how many layers it holds) and clicking again expands it; hovering a layer shows its full
path and its parameters with their shapes; clicking an ``× N`` block unfolds it, showing
the picture drawn with every copy (``collapse_repeats=False``), and the button at the top
folds it again. What the script needs (which layers sit in which cluster, each tooltip)
is read from the Graphviz source here and written into the page as JSON.

>>> page = html_page("net", [("folded", 'digraph m { n1 [label=<a>, tooltip="a"] }', "<svg></svg>")])
>>> page.startswith("<!DOCTYPE html>") and "http" not in page.split("<svg")[0].replace("http-equiv", "")
True
"""

from __future__ import annotations

import html
import json
import re

_UNQUOTE = re.compile(r"\\(.)")


def _unquoted(s: str) -> str:
    """A double-quoted Graphviz string's text (``\\n`` is a line break)."""
    return _UNQUOTE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def structure(source: str) -> dict:
    """What the page's script needs from a Graphviz source: each cluster's nodes (directly or
    in clusters inside it), each cluster's and node's tooltip, and which clusters are repeats."""
    members: dict[str, list[str]] = {}
    tips: dict[str, str] = {}
    repeats: list[str] = []
    stack: list[str] = []
    for line in source.splitlines():
        s = line.strip()
        if m := re.match(r"subgraph (cluster_\w+) \{", s):
            stack.append(m.group(1))
            members[m.group(1)] = []
        elif s == "}" and stack:
            stack.pop()
        elif s.startswith("graph [") and stack:
            if tip := re.search(r'tooltip="((?:[^"\\]|\\.)*)"', s):
                tips[stack[-1]] = _unquoted(tip.group(1))
            if "<B>× " in s:
                repeats.append(stack[-1])
        elif m := re.match(r"(\w+) \[", s):
            if m.group(1) in ("graph", "node", "edge"):
                continue
            for c in stack:
                members[c].append(m.group(1))
            if tip := re.search(r'tooltip="((?:[^"\\]|\\.)*)"', s):
                tips[m.group(1)] = _unquoted(tip.group(1))
    return {"members": members, "tips": tips, "repeats": repeats}


_STYLE = """
body { font: 14px Helvetica, Arial, sans-serif; margin: 12px; color: #1f2937; }
header { display: flex; gap: 12px; align-items: center; margin-bottom: 8px; }
button { font: inherit; padding: 2px 10px; }
.view[hidden] { display: none; }
g.cluster text { cursor: pointer; }
g.cluster.collapsed path, g.cluster.collapsed polygon { fill: #e5e7eb; }
.nnc-hidden { display: none; }
#tip { position: fixed; pointer-events: none; background: #111827; color: #f9fafb; padding: 6px 8px;
       border-radius: 4px; white-space: pre; font: 13px Menlo, Consolas, monospace; display: none; }
"""

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("nnc-data").textContent);
  const tip = document.getElementById("tip");
  const fold = document.getElementById("fold");
  function titled(svg, kind) {
    const found = {};
    svg.querySelectorAll("g." + kind).forEach(function (g) {
      const t = g.querySelector(":scope > title");
      if (t) found[t.textContent] = g;
    });
    return found;
  }
  function show(name) {
    document.querySelectorAll(".view").forEach(function (v) { v.hidden = v.dataset.view !== name; });
    fold.hidden = name === "folded" || !document.querySelector('.view[data-view="folded"]');
  }
  document.querySelectorAll(".view").forEach(function (view) {
    const info = data[view.dataset.view];
    const svg = view.querySelector("svg");
    const nodes = titled(svg, "node"), clusters = titled(svg, "cluster"), edges = titled(svg, "edge");
    function ends(title) { return title.split("->").map(function (s) { return s.split(":")[0]; }); }
    function refresh() {
      const hidden = new Set();
      Object.keys(clusters).forEach(function (c) {
        if (clusters[c].classList.contains("collapsed")) (info.members[c] || []).forEach(function (n) { hidden.add(n); });
      });
      Object.keys(nodes).forEach(function (n) { nodes[n].classList.toggle("nnc-hidden", hidden.has(n)); });
      Object.keys(edges).forEach(function (e) {
        const ab = ends(e);
        edges[e].classList.toggle("nnc-hidden", hidden.has(ab[0]) && hidden.has(ab[1]));
      });
      Object.keys(clusters).forEach(function (c) {
        const g = clusters[c];
        const inner = !g.classList.contains("collapsed") && (info.members[c] || []).some(function (n) { return hidden.has(n); });
        g.classList.toggle("nnc-hidden", inner);  // a cluster inside a collapsed one
      });
    }
    Object.keys(clusters).forEach(function (c) {
      const g = clusters[c];
      g.querySelectorAll("title").forEach(function (t) { t.remove(); });
      g.querySelectorAll("a").forEach(function (a) { a.removeAttribute("xlink:title"); a.removeAttribute("title"); });
      const texts = g.querySelectorAll("text");
      const last = texts[texts.length - 1];
      if (last) last.dataset.title = last.textContent;
      g.addEventListener("click", function (event) {
        if (event.target.tagName !== "text" && event.target.tagName !== "tspan") return;
        if (info.repeats.indexOf(c) >= 0 && data.unfolded && view.dataset.view === "folded") { show("unfolded"); return; }
        const collapsed = g.classList.toggle("collapsed");
        g.dataset.collapsed = collapsed ? "true" : "false";
        if (last) last.textContent = collapsed
          ? last.dataset.title + " \u25b8 " + (info.members[c] || []).length + " hidden"
          : last.dataset.title;
        refresh();
      });
      g.addEventListener("mousemove", function (event) {
        if (event.target.tagName === "text" && info.tips[c]) { tip.textContent = info.tips[c]; tip.style.display = "block"; place(event); }
      });
      g.addEventListener("mouseout", function () { tip.style.display = "none"; });
    });
    Object.keys(nodes).forEach(function (n) {
      const g = nodes[n];
      g.querySelectorAll("title").forEach(function (t) { t.remove(); });  // our tooltip, not the browser's
      g.querySelectorAll("a").forEach(function (a) { a.removeAttribute("xlink:title"); a.removeAttribute("title"); });
      g.addEventListener("mouseover", function (event) {
        tip.textContent = info.tips[n] || n; tip.style.display = "block"; place(event);
      });
      g.addEventListener("mousemove", place);
      g.addEventListener("mouseout", function () { tip.style.display = "none"; });
    });
  });
  function place(event) { tip.style.left = (event.clientX + 14) + "px"; tip.style.top = (event.clientY + 14) + "px"; }
  fold.addEventListener("click", function () { show("folded"); });
  show(document.querySelector(".view").dataset.view);
})();
"""


def _svg_only(svg: str) -> str:
    """The ``<svg>`` element of Graphviz's output, without its XML prolog and doctype."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def html_page(title: str, views: list[tuple[str, str, str]]) -> str:
    """One HTML page showing ``views``: ``(name, Graphviz source, its SVG)``, the first shown.

    A view named ``"unfolded"`` is what clicking an ``× N`` block in the ``"folded"`` one shows."""
    data = {name: structure(source) for name, source, _ in views}
    data["unfolded"] = any(name == "unfolded" for name, _, _ in views)  # type: ignore[assignment]
    blocks = "\n".join(
        f'<div class="view" data-view="{html.escape(name)}">{_svg_only(svg)}</div>' for name, _, svg in views
    )
    # "</" inside the JSON would end the script element early
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<header><strong>{html.escape(title)}</strong><span>click a block's title to collapse or "
        "expand it, an × N block to unfold it; hover a layer for its path and parameters</span>"
        '<button id="fold" hidden>fold the repeats again</button></header>\n'
        f'{blocks}\n<div id="tip"></div>\n'
        f'<script type="application/json" id="nnc-data">{payload}</script>\n'
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
