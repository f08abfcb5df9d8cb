"""The HTML of every report page: the page itself (style, script, the policy that forbids any
request), what was run, galleries and tables. Every text from a run is escaped here.

The page asks for nothing: its Content-Security-Policy allows only inline style and script
and ``data:`` images, so a stray URL would be blocked (and logged by the browser) rather than
fetched. It works without JavaScript: tables come sorted worst first, a picture opens full
size through its ``#anchor`` (CSS ``:target``). The script adds column sorting, Escape to close
a picture, and a self-check a test reads back (``data-images-decoded``, ``data-errors``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cam_cli.files.checks import printable_path
from cam_cli.report.inputs import RunInfo
from cam_cli.report.pictures import GT_COLOUR, PREDICTED_COLOUR, Picture, viridis_stops

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
:root{--ink:#1d1d1f;--muted:#5f6368;--line:#d9dce0;--soft:#f4f5f7;--accent:#0072B2}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:#fff}
header{padding:18px 28px 10px;border-bottom:1px solid var(--line);background:var(--soft)}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:var(--muted)}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);
padding:6px 28px;font-size:14px}
nav a{margin-right:14px;color:var(--accent);text-decoration:none;white-space:nowrap}
main{padding:8px 28px 40px;max-width:1400px}
section{margin:26px 0}
h2{font-size:19px;border-bottom:2px solid var(--ink);padding-bottom:3px}
h3{font-size:16px;margin:18px 0 6px}
.note{color:var(--muted);font-size:13.5px;margin:4px 0 10px}
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}
dl.run dt{color:var(--muted)}
dl.run dd{margin:0;overflow-wrap:anywhere}
code,pre{font:13px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
pre.table{background:var(--soft);border:1px solid var(--line);padding:10px 12px;overflow-x:auto}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 14px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:150px}
.card .v{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}
.card .k{font-size:12.5px;color:var(--muted)}
svg.plot{width:100%;height:auto;display:block;margin:6px 0}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots>div{flex:1 1 360px;min-width:300px}
table.data{border-collapse:collapse;font-size:13.5px;font-variant-numeric:tabular-nums}
table.data th,table.data td{border-bottom:1px solid var(--line);padding:3px 9px;text-align:right}
table.data th{background:var(--soft);position:sticky;top:0;cursor:default}
table.data th.sortable{cursor:pointer}
table.data th.sortable:after{content:" \\2195";color:var(--muted)}
table.data td.t,table.data th.t{text-align:left}
.scroll{max-height:560px;overflow:auto;border:1px solid var(--line);display:inline-block;
max-width:100%}
.bar{display:inline-block;height:10px;background:var(--accent);vertical-align:middle}
.legend{display:flex;flex-wrap:wrap;gap:18px;align-items:center;font-size:13.5px;margin:6px 0 10px}
.sw{display:inline-block;width:26px;height:0;border-top:4px solid;vertical-align:middle;
margin-right:6px;outline:1px solid #000}
.sw.dash{border-top-style:dashed}
.ramp{display:inline-block;width:120px;height:12px;vertical-align:middle;margin:0 6px;
border:1px solid #000}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:14px}
figure.pic{margin:0;font-size:12.5px;line-height:1.35}
figure.pic img{width:100%;height:auto;display:block;border:1px solid var(--line);background:#eee}
img.crisp{image-rendering:pixelated}
figure.pic figcaption{margin-top:4px;overflow-wrap:anywhere}
figure.pic .id{color:var(--muted)}
figure.pic b{font-variant-numeric:tabular-nums}
figure.pic .close{display:none}
figure.pic:target{position:fixed;inset:0;z-index:20;background:rgba(0,0,0,.88);color:#fff;
display:flex;flex-direction:column;align-items:center;justify-content:center;padding:16px;
font-size:14px}
figure.pic:target img{width:auto;height:min(82vh,calc(var(--h) * 2.5));max-width:94vw;
object-fit:contain;border:0}
figure.pic:target .id{color:#ccc}
figure.pic:target figcaption{text-align:center;max-width:90vw}
figure.pic:target .close{display:inline;color:#fff;margin-top:10px}
.sw-inline{display:inline-block;width:10px;height:10px;border:1px solid #000;margin-right:3px;
vertical-align:baseline}
table.grid td{padding:2px;vertical-align:top;max-width:116px}
.scroll.wide{max-height:none}
table.grid img{display:block;width:112px;height:auto}
table.grid th{font-weight:500;font-size:12.5px}
.missing{padding:30px 6px;background:#f8e6e6;font-size:12px;color:#6b1d1d;overflow-wrap:anywhere}
table.grid td.missing{padding:4px;font-size:11px}
@media print{nav{position:static}}
"""

SCRIPT = """
(function(){
  var root = document.documentElement, errors = 0;
  function count(){ errors += 1; root.setAttribute('data-errors', String(errors)); }
  root.setAttribute('data-errors', '0');
  window.addEventListener('error', count, true);
  document.addEventListener('securitypolicyviolation', count);
  function key(cell){
    var v = cell.getAttribute('data-v');
    return v === null ? cell.textContent : v;
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th.sortable').forEach(function(th, column){
      th.addEventListener('click', function(){
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var index = th.cellIndex, numeric = th.getAttribute('data-type') === 'num';
        var down = th.getAttribute('data-dir') !== 'desc';
        rows.sort(function(a, b){
          var x = key(a.cells[index]), y = key(b.cells[index]);
          var c = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
          return down ? -c : c;
        });
        th.setAttribute('data-dir', down ? 'desc' : 'asc');
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });
  document.addEventListener('keydown', function(e){
    var open = e.key === 'Escape' && document.querySelector('figure.pic:target');
    if (open) { location.hash = open.parentNode.id; }
  });
  window.addEventListener('load', function(){
    var images = Array.prototype.slice.call(document.images);
    var good = images.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
    root.setAttribute('data-images-decoded', good + '/' + images.length);
  });
})();
"""


def esc(text: object) -> str:
    """Text for HTML: escaped, and a file name that is not UTF-8 written as `printable_path`
    writes it."""
    return html.escape(printable_path(str(text)) if isinstance(text, str) else str(text))


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A whole page: ``sections`` are ``(id, heading, body HTML)``, listed in the bar."""
    nav = "".join(f'<a href="#{sid}">{esc(heading)}</a>' for sid, heading, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(heading)}</h2>{content}</section>'
        for sid, heading, content in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes} min {rest:.0f} s"
    return f"{minutes} min {rest:.1f} s" if minutes else f"{rest:.1f} s"


def run_section(run: RunInfo) -> str:
    """What was run, as a definition list (empty items left out)."""
    items: list[tuple[str, str]] = [
        ("command", f"<code>{esc(run.command)}</code>"),
        ("cam-cli version", esc(run.version)),
        ("started", esc(run.started)),
        ("time taken", esc(seconds_text(run.seconds))),
    ]
    optional = [("network", run.network), ("weights", run.weights),
                ("weights SHA-256", run.weights_sha256), ("device", run.device),
                ("precision", run.precision), ("method / layer", run.method)]  # fmt: skip
    items += [(name, esc(value)) for name, value in optional if value]
    items += [(name, f"<code>{esc(value)}</code>") for name, value in run.data.items()]
    items += [(name, esc(value)) for name, value in run.settings.items()]
    rows = "".join(f"<dt>{esc(name)}</dt><dd>{value}</dd>" for name, value in items)
    return f'<dl class="run">{rows}</dl>'


def box_legend(boxes: Sequence[tuple[str, str, bool]] | None = None, cam: bool = True) -> str:
    """The legend above a gallery: ``boxes`` as ``(label, colour, dashed)`` (default: ground
    truth and the predicted box) and the CAM's colour ramp."""
    if boxes is None:
        boxes = [("ground-truth box (sky blue, dashed)", GT_COLOUR, True),
                 ("predicted box (orange, solid)", PREDICTED_COLOUR, False)]  # fmt: skip
    parts = [
        f'<span><span class="sw{" dash" if dashed else ""}" style="border-top-color:{colour}">'
        f"</span>{esc(label)}</span>"
        for label, colour, dashed in boxes
    ]
    if cam:
        ramp = ",".join(viridis_stops())
        parts.append(
            f'<span>CAM: low<span class="ramp" style="background:linear-gradient(90deg,{ramp})">'
            "</span>high (viridis; the more opaque, the higher)</span>"
        )
    return f'<div class="legend">{"".join(parts)}</div>'


def score_text(score: float) -> str:
    """A class probability as a caption shows it: 2 decimals, and "<0.01" below."""
    return "<0.01" if score < 0.005 else f"{score:.2f}"


def swatch(colour: str) -> str:
    return f'<span class="sw-inline" style="background:{colour}"></span>'


@dataclass(frozen=True)
class Tile:
    """One picture of a gallery and the caption lines beside it (already HTML)."""

    picture: Picture | str  # or why it could not be made
    caption: Sequence[str]
    alt: str


def gallery(gallery_id: str, tiles: Sequence[Tile]) -> str:
    """A grid of pictures; each opens full size (its anchor) and closes back to the gallery."""
    figures = []
    for n, tile in enumerate(tiles):
        anchor = f"{gallery_id}-{n}"
        caption = "<br>".join(tile.caption)
        if isinstance(tile.picture, str):
            figures.append(
                f'<figure class="pic" id="{anchor}"><div class="missing">picture not made: '
                f"{esc(tile.picture)}</div><figcaption>{caption}</figcaption></figure>"
            )
            continue
        pic = tile.picture
        crisp = ' class="crisp"' if pic.upscaled else ""
        figures.append(
            f'<figure class="pic" id="{anchor}" style="--h:{pic.height}px">'
            f'<a href="#{anchor}"><img src="{pic.data_uri}" width="{pic.width}" '
            f'height="{pic.height}"{crisp} alt="{esc(tile.alt)}"></a>'
            f"<figcaption>{caption}</figcaption>"
            f'<a class="close" href="#{gallery_id}">close (Esc)</a></figure>'
        )
    return f'<div class="gallery" id="{gallery_id}">{"".join(figures)}</div>'


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = True


Cell = tuple[str, float | str | None]  # (shown HTML, sort value)


def data_table(columns: Sequence[Column], rows: Iterable[Sequence[Cell]]) -> str:
    """A sortable table (the rows in the order given, which works without JavaScript): each
    cell is ``(shown HTML, sort value)``."""
    head = "".join(
        f'<th class="sortable{"" if c.numeric else " t"}" '
        f'data-type="{"num" if c.numeric else "text"}">{esc(c.title)}</th>'
        for c in columns
    )
    body = []
    for row in rows:
        cells = []
        for column, (shown, value) in zip(columns, row, strict=True):
            v = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
            cls = "" if column.numeric else ' class="t"'
            cells.append(f'<td{cls} data-v="{esc(v)}">{shown}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="data sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def share_bar(share: float) -> str:
    """A bar of ``share`` (0..1), 120 px at 100%."""
    return f'<span class="bar" style="width:{max(0.0, min(share, 1.0)) * 120:.1f}px"></span>'


def figure_cards(cards: Mapping[str, tuple[str, str]]) -> str:
    """Headline figures: ``{key: (label, shown value)}``, each carrying its key (a test reads
    them back and compares with the JSON)."""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card" data-figure="{esc(key)}"><div class="v">{esc(value)}</div>'
            f'<div class="k">{esc(label)}</div></div>'
            for key, (label, value) in cards.items()
        )
        + "</div>"
    )
