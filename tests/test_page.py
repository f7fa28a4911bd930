"""The leaderboard page (report --format html): its tables read exactly as the Markdown report's, it is self-
contained, and (slow stage) it loads, sorts and renders in a real headless Chromium without any network request."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import copy_storage

from glue_bench.cli import main
from glue_bench.reporting import leaderboard, page, render, selection
from glue_bench.reporting.grid import grid

RUNS = Path(__file__).parent / "fixtures" / "report" / "runs.csv"
TINY, MINI, OTHER = "L-2_H-128 (bert-tiny)", "L-4_H-256 (bert-mini)", "someorg/tiny-bert"


class Page(HTMLParser):
    """What the tests read from a page: its tables (header, body rows per <tbody>, each cell's text and
    class), every src/href, the headings, the <style> text and the tags used."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables, self.urls, self.headings, self.styles, self.tags = [], [], [], [], []
        self._tables_before: dict[str, int] = {}  # heading → how many tables precede it
        self._cell = self._row = self._heading = self._style = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [(tag, value) for name, value in attrs.items() if name in ("src", "href")]
        if tag == "table":
            self.tables.append({"attrs": attrs, "head": None, "bodies": []})
        elif tag == "tbody":
            self.tables[-1]["bodies"].append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = [attrs.get("class") or "", ""]
        elif tag in ("h2", "h3"):
            self._heading = ""
        elif tag == "style":
            self._style = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._heading is not None:
            self._heading += data
        if self._style is not None:
            self._style += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append((self._cell[1], self._cell[0]))
            self._cell = None
        elif tag == "tr":
            table = self.tables[-1]
            if table["head"] is None:
                table["head"] = [text for text, _ in self._row]
            else:
                table["bodies"][-1].append(self._row)
        elif tag in ("h2", "h3"):
            self.headings.append(self._heading)
            self._tables_before[self._heading] = len(self.tables)
            self._heading = None
        elif tag == "style":
            self.styles.append(self._style)
            self._style = None

    def table(self, table_id: str | None = None, after: str | None = None) -> dict:
        """The table with this id, or the first one after the heading `after`."""
        if table_id:
            return next(t for t in self.tables if t["attrs"].get("id") == table_id)
        return self.tables[self._tables_before[after]]


def texts(table: dict) -> list[list[str]]:
    """The body rows' cell texts, every <tbody> in order."""
    return [[text for text, _ in row] for body in table["bodies"] for row in body]


def markdown_table(report) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the Markdown report's table ('| a | b |' lines)."""
    lines = [line for line in render.markdown(report).splitlines() if line.startswith("| ")]
    cells = [line[2:-2].split(" | ") for line in lines]
    return cells[0], cells[2:]


def self_contained(text: str, parsed: Page) -> None:
    assert "http://" not in text and "https://" not in text
    assert all(value.startswith(("data:", "#")) for _, value in parsed.urls), parsed.urls
    assert "link" not in parsed.tags and "iframe" not in parsed.tags
    assert not any("@import" in css or "url(" in css for css in parsed.styles)


@pytest.fixture(scope="module")
def runs():
    return selection.load_runs(runs=str(RUNS))


def test_the_page_holds_the_leaderboard_as_the_markdown_report_has_it(runs):
    board = leaderboard.leaderboard(runs, compare="paper")
    text = page.page(board, runs, compare_paper=True)
    parsed = Page(text)
    table = parsed.table("board")
    header, rows = markdown_table(board)
    assert table["head"] == header and texts(table) == rows
    # one <tbody> per model: its own row, the paper's, Δ (someorg has no paper row), so a sort moves them together
    assert [[row[0][0] for row in body] for body in table["bodies"]] == [
        [TINY, "BERT-Tiny (L-2_H-128)", ""],
        [MINI, "BERT-Mini (L-4_H-256)", ""],
        [OTHER],
    ]
    assert table["attrs"]["class"] == "sortable" and table["attrs"]["data-text-columns"] == "3"  # Model, Source, Recipe
    # collapsed cells keep their mark and carry the class that shades them; no other cell does
    cells = [cell for body in table["bodies"] for row in body for cell in row]
    assert sorted(text for text, css in cells if css == "collapsed") == ["0.0 †", "56.3 †"]
    assert all(("†" in text) == (css == "collapsed") for text, css in cells)
    assert any(note.startswith("† a collapsed fine-tune") for note in board.notes) and board.notes[-1] in text
    # the figure: a PNG inlined as a data URI
    images = [value for tag, value in parsed.urls if tag == "img"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    png = base64.b64decode(images[0].removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    self_contained(text, parsed)
    # every (model, task) grid, as the Markdown grid report has it
    expected = {f"{model} on {task}: the grid" for model, task in runs.groupby(["model", "task"]).groups}
    assert expected == {h for h in parsed.headings if h.endswith(": the grid")}
    rte = grid(runs, "bert-tiny:rte")
    header, rows = markdown_table(rte)
    grid_table = parsed.table(after=rte.title)
    assert grid_table["head"] == header and texts(grid_table) == rows
    # AX: the fixture's MNLI trials have AX scores, but no --data: the section says what it needs
    assert "AX diagnostic categories" in parsed.headings and "pass --data" in text.split('id="ax"')[1]


def test_names_are_escaped_and_no_miniature_means_no_figure(runs):
    names = {"L-2_H-128": "<i>one</i>", "L-4_H-256": "two & <three>", OTHER: OTHER}
    renamed = runs.assign(model=runs["model"].map(names))
    text = page.page(leaderboard.leaderboard(renamed), renamed)
    assert "<i>" not in text and "<three>" not in text and "&lt;i&gt;one&lt;/i&gt;" in text
    parsed = Page(text)
    assert {row[0] for row in texts(parsed.table("board"))} == set(names.values())
    assert "<i>one</i> on rte: the grid" in parsed.headings
    assert "No figure: no model is a BERT miniature" in text and "data:image" not in text
    self_contained(text, parsed)


@pytest.fixture(scope="module")
def page_storage(mnli_trial, glue_data, tmp_path_factory):
    """Real trials of random:L-2_H-128: the MNLI one that predicts AX, and WNLI (64 rows, 1 epoch) at two learning
    rates, with their dev predictions, so --ci has intervals."""
    url, data = mnli_trial
    copy = copy_storage(url, tmp_path_factory.mktemp("page"))
    for lr in ("1e-4", "3e-5"):
        argv = ["run", "--model", "random:L-2_H-128", "--task", "wnli", "--data", str(glue_data), "--batch-size"]
        argv += ["16", "--lr", lr, "--epochs", "1", "--max-train-samples", "64", "--storage", copy, "--no-progress"]
        assert main(argv) == 0
    return copy, data


def test_the_page_of_real_trials_with_intervals_and_ax(page_storage, tmp_path, capsys):
    url, data = page_storage
    argv = ["report", "--storage", url, "--ci", "--resamples", "200", "--compare", "paper"]
    assert main([*argv, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert main([*argv, "--data", data, "--out", str(tmp_path / "board.html")]) == 0
    text = (tmp_path / "board.html").read_text(encoding="utf-8")
    parsed = Page(text)
    table = parsed.table("board")
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert [table["head"], *texts(table)] == [line[2:-2].split(" | ") for line in lines if "---" not in line]
    ours = dict(zip(table["head"], table["bodies"][0][0]))
    for column in ("Score", "MNLI-m", "MNLI-mm", "WNLI"):  # a 95% interval beside the value, "56.3 [45.1, 67.6]"
        value, interval = ours[column][0].split(" [")
        low, high = (float(v) for v in interval.rstrip("]").split(", "))
        assert low <= float(value.split()[0]) <= high, column
    assert text.count('<span class="ci">') == 4
    assert all(("†" in cell) == (css == "collapsed") for row in table["bodies"][0] for cell, css in row)
    # AX by category, and its overall score is the leaderboard's AX cell
    ax = parsed.table(after="AX diagnostic breakdown: random:L-2_H-128")
    assert ax["head"] == ["Category", "Subcategory", "Examples", "MCC"]
    assert texts(ax)[0][:3] == ["All", "", "1104"] and texts(ax)[0][3] == ours["AX"][0]
    assert {"random:L-2_H-128 on mnli: the grid", "random:L-2_H-128 on wnli: the grid"} <= set(parsed.headings)
    assert parsed.table(after="random:L-2_H-128 on wnli: the grid")["head"] == ["batch size", "lr 1e-4", "lr 3e-5"]
    self_contained(text, parsed)


# --- in a real browser (slow stage) ---------------------------------------------------------------


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium (Debian's package; root needs --no-sandbox), its own profile, host names unresolvable."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--no-first-run"]
    flags += ["--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]
    return subprocess.run([BROWSER, *flags, *args], capture_output=True, text=True, timeout=60, check=True)


def page_requests(net_log: Path) -> list[str]:
    """The URLs Chromium's network stack was asked for on behalf of a file:// page (its network isolation key
    names the page's site); the browser's own background requests (component updates, …) have other keys."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start and "file://" in event["params"].get("network_isolation_key", "")
    ]


def model_order(parsed: Page) -> list[str]:
    return [body[0][0][0] for body in parsed.table("board")["bodies"]]


@pytest.mark.slow
@pytest.mark.skipif(not BROWSER, reason="chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
def test_the_page_in_headless_chromium(runs, tmp_path):
    board = leaderboard.leaderboard(runs, compare="paper")
    # Two SST-2 intervals, misleading on purpose: a sort that read a bound instead of the value would put
    # someorg (80.0 [1.0, 99.0]) above bert-mini (85.5±0.7 [0.5, 1.5]).
    board.intervals = {(3, "SST-2"): ("0.5", "1.5"), (6, "SST-2"): ("1.0", "99.0")}
    path = tmp_path / "board.html"
    path.write_text(page.page(board, runs, compare_paper=True), encoding="utf-8")
    profile = tmp_path / "profile"

    def dom(fragment: str = "") -> Page:
        return Page(chromium(profile, "--dump-dom", path.as_uri() + fragment).stdout)

    loaded = dom()
    header, rows = markdown_table(board)
    assert loaded.table("board")["head"] == header and texts(loaded.table("board")) == rows
    # a click on a header (#sort=… clicks it on load): numbers best first, again to reverse, "—" last either way;
    # a model's paper and Δ rows stay under it
    assert model_order(dom("#sort=SST-2")) == [MINI, OTHER, TINY]
    assert model_order(dom("#sort=SST-2,SST-2")) == [OTHER, MINI, TINY]
    assert model_order(dom("#sort=Score")) == [OTHER, MINI, TINY]  # 80.0 (1/9), 66.3, 50.5 (4/9)
    assert model_order(dom("#sort=Model,Model")) == [OTHER, MINI, TINY]  # text, descending on the second click
    sorted_dom = dom("#sort=CoLA")
    assert model_order(sorted_dom) == [MINI, TINY, OTHER]
    assert [len(body) for body in sorted_dom.table("board")["bodies"]] == [3, 3, 1]
    assert texts(sorted_dom.table("board"))[3:6] == rows[:3]  # bert-tiny's three rows, whole, now second

    # no network: the page asks for nothing; the same check on a page that links out does see its requests
    shot, net_log = tmp_path / "board.png", tmp_path / "net-log.json"
    chromium(profile, f"--screenshot={shot}", "--window-size=1400,2000", f"--log-net-log={net_log}", path.as_uri())
    assert page_requests(net_log) == []
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><img src="http://example.invalid/a.png"><script src="https://x.invalid/a.js">')
    chromium(profile, "--dump-dom", f"--log-net-log={tmp_path / 'control.json'}", control.as_uri())
    assert sorted(page_requests(tmp_path / "control.json")) == [
        "http://example.invalid/a.png",
        "https://x.invalid/a.js",
    ]
    # the screenshot: a 1400 × 2000 PNG with something on it
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1400, 2000)
    assert len(png) > 100_000
