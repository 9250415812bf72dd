"""A lecture in a real browser (issue 16): every page at a projector's 1024×768 with presenter mode
on must show no broken word, no text running out of its box and no labels drawn over each other;
presenter mode must survive page changes from a ``present=1`` link. Screenshots of every page at
1024×768 (presenter mode) and 1400×1000 go to test-artifacts/layout/ to be looked at.

One server for the module (KDVIZ_RUNS: an empty folder, so the inside pages show the teacher
alone). Needs Debian's chromium and the playwright pip package, like tests/test_browser.py.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from test_browser import ARTIFACTS, CHROMIUM, browser, page_paths, server, settle  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser
SHOTS = ARTIFACTS / "layout"

# Run in the page: what a lecturer would see as broken. Returns a list of short descriptions.
PROBLEMS_JS = r"""
() => {
  const out = [];
  const main = document.querySelector('[data-testid="stMain"]');
  const roots = [main, document.querySelector('[data-testid="stSidebar"]')].filter(Boolean);
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const name = el => (el.getAttribute('data-testid') || el.tagName.toLowerCase());
  // 0. an error box instead of the page
  for (const e of document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]'))
    out.push(`error box: ${e.innerText.slice(0, 160)}`);
  // 1. a word split over two lines ("what the tea|cher", "teache|r's")
  for (const root of roots) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const parent = node.parentElement;
      if (!parent || parent.closest('svg, .katex, code, pre, [data-testid="stDataFrame"], [data-testid="stSidebarNav"] span[aria-hidden]')) continue;
      if (!visible(parent)) continue;
      const re = /[^\s\-–—\/·,;:]{3,}/g;
      let m;
      while ((m = re.exec(node.data))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top / 4)));
        if (tops.size > 1) out.push(`word broken over two lines: "${m[0]}" in ${name(parent)}`);
      }
    }
  }
  // 2. text wider than its box
  const boxes = '[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"], [data-testid="stWidgetLabel"], '
    + '[data-testid="stMetricValue"], [data-testid="stMetricLabel"], [data-testid="stImageCaption"], .stButton button, '
    + '[data-testid="stPageLink"]';
  for (const root of roots) for (const el of root.querySelectorAll(boxes)) {
    if (!visible(el) || el.closest('[data-testid="stExpander"] details:not([open])')) continue;
    if (el.querySelector('.katex-display')) continue;  // display formulas scroll on purpose
    if (el.scrollWidth > el.clientWidth + 2) out.push(`text wider than its box (${el.scrollWidth} > ${el.clientWidth} px) in ${name(el)}: "${el.innerText.slice(0, 40)}"`);
  }
  // 3. a chart wider than the page (clipped)
  const right = main.getBoundingClientRect().right;
  for (const svg of document.querySelectorAll('.js-plotly-plot .main-svg')) {
    const r = svg.getBoundingClientRect();
    if (r.right > right + 2) out.push(`chart clipped at the right edge (${Math.round(r.right)} > ${Math.round(right)})`);
  }
  // 4. labels drawn over each other inside a chart
  const overlap = (a, b) => {
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    return w > 2 && h > 2;
  };
  const rects = (plot, sel) => Array.from(plot.querySelectorAll(sel)).filter(e => visible(e) && (e.textContent || '').trim() !== '' || e.matches('.legend .bg, .updatemenu-button, .slider-rail'))
    .map(e => ({el: e, r: e.getBoundingClientRect(), t: (e.textContent || e.getAttribute('class') || '').trim().slice(0, 30)}))
    .filter(x => x.r.width > 0 && x.r.height > 0);
  document.querySelectorAll('.js-plotly-plot').forEach((plot, k) => {
    const key = (plot.closest('[class*="st-key-"]') || {className: ''}).className.match(/st-key-([\w-]+)/);
    const where = `chart ${key ? key[1] : k}`;
    const groups = {
      legend: rects(plot, '.legend .bg'),
      xtitle: rects(plot, '[class*="g-x"][class*="title"] text'),
      ytitle: rects(plot, '[class*="g-y"][class*="title"] text'),
      title: rects(plot, '.g-gtitle text'),
      note: rects(plot, '.annotation-text-g text'),
      button: rects(plot, '.updatemenu-button'),
      slider: rects(plot, '.slider-group text, .slider-rail'),
      xtick: rects(plot, '.xtick text'),
      ytick: rects(plot, '.ytick text'),
    };
    const pairs = [['legend', 'xtitle'], ['legend', 'ytitle'], ['legend', 'title'], ['legend', 'note'], ['legend', 'xtick'],
                   ['legend', 'button'], ['legend', 'slider'], ['button', 'slider'], ['button', 'xtitle'], ['button', 'xtick'],
                   ['slider', 'xtitle'], ['slider', 'xtick'], ['title', 'note'], ['note', 'note'], ['xtitle', 'xtick'],
                   ['ytitle', 'ytick'], ['xtick', 'xtick'], ['ytick', 'ytick'], ['xtitle', 'note'], ['ytitle', 'note']];
    for (const [a, b] of pairs) for (const x of groups[a]) for (const y of groups[b]) {
      if (x.el === y.el || (a === b && x.el.compareDocumentPosition(y.el) & Node.DOCUMENT_POSITION_PRECEDING)) continue;
      if (overlap(x.r, y.r)) out.push(`${where}: ${a} "${x.t}" overlaps ${b} "${y.t}"`);
    }
  });
  return Array.from(new Set(out));
}
"""


def shot(page, name: str, width: int) -> Path:
    """A full-length screenshot at this width (the viewport grows to the page's height, then returns)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.viewport_size["height"]
    full = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": width, "height": max(height, min(int(full) + 80, 9000))})
    time.sleep(0.8)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": height})
    return path


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "home"


def presenter_on(page) -> bool:
    toggle = page.locator("[data-testid='stSidebar'] [data-testid='stCheckbox'] input, "
                          "[data-testid='stSidebar'] input[role='switch']").first
    return toggle.is_checked()


def test_every_page_fits_a_projector_in_presenter_mode(server, browser):  # noqa: F811
    """1024×768, presenter mode from the link: no broken words, overflowing text or overlapping labels."""
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    found = {}
    for path, title in page_paths().items():
        page.goto(f"{server}/{path}?present=1")
        settle(page, 60)
        page.wait_for_timeout(800)  # let Plotly finish its layout
        shot(page, f"{slug(title)}-1024x768-presenter", 1024)
        assert presenter_on(page), f"{title}: presenter mode is off although the link says present=1"
        problems = page.evaluate(PROBLEMS_JS)
        if problems:
            found[title] = problems
    page.close()
    (SHOTS / "problems-1024x768.json").write_text(json.dumps(found, indent=1, ensure_ascii=False))
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def test_every_page_at_1400x1000_for_the_record(server, browser):  # noqa: F811
    """The same pages at a laptop's size, presenter mode off: screenshots, and the same checks."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    found = {}
    for path, title in page_paths().items():
        page.goto(f"{server}/{path}")
        settle(page, 60)
        page.wait_for_timeout(800)
        shot(page, f"{slug(title)}-1400x1000", 1400)
        problems = page.evaluate(PROBLEMS_JS)
        if problems:
            found[title] = problems
    page.close()
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def test_presenter_mode_survives_page_changes_from_a_link(server, browser):  # noqa: F811
    """Issue 16, point 3: a session started from a present=1 link keeps presenter mode on every page
    reached through the sidebar, and the URL keeps saying so (a copied link stays a presenter link)."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/temperature?present=1")
    settle(page, 60)
    assert presenter_on(page)
    for path in ("compare", "attention", ""):
        page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first.click()
        settle(page, 60)
        assert presenter_on(page), f"presenter mode switched off on the way to /{path}"
        assert "present=1" in page.url, page.url
        page.wait_for_timeout(800)
        problems = page.evaluate(PROBLEMS_JS)  # the other projector size of the issue
        assert not problems, (path, problems)
    page.close()
