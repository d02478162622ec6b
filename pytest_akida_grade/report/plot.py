"""The quality-vs-accuracy plot: an inline SVG with a labelled point per student and the pass line.

Reads only student records and the catalog; the energy budget comes from quality.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from pytest_akida_grade import catalog
from pytest_akida_grade.quality import PERCENT, QUALITY_MAX, energy_budget_mj

_W, _H = 760, 440
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 24, 44, 62
_PLOT_W, _PLOT_H = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
_FONT = 'font-family="system-ui,Helvetica,Arial,sans-serif"'
_MINUS, _TIMES = "\u2212", "\u00d7"
_SOURCE_LABELS = {"device": "measured", "replay": "replayed", "none": "none"}

Point = tuple[float, float, Mapping[str, object]]  # (accuracy %, quality, record)


# ---------------------------------------------------------------- a record's figures


def _metric(record: Mapping[str, object], key: str) -> float | None:
    value = catalog.part(record, "metrics").get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fraction(record: Mapping[str, object]) -> float | None:
    """Hardware accuracy, else the Akida simulator's, as recorded (a value above 1 is a percent)."""
    value = _metric(record, "hardware_accuracy")
    return value if value is not None else _metric(record, "akida_accuracy")


def _accuracy(record: Mapping[str, object]) -> float | None:
    """The accuracy in percent."""
    value = _fraction(record)
    if value is None:
        return None
    return value * PERCENT if value <= 1.0 else value


def _fmt_quality(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _source_label(record: Mapping[str, object]) -> str:
    source = catalog.part(record, "metrics").get("source")
    return _SOURCE_LABELS.get(str(source), str(source)) if source else "none"


def _energy_budget(record: Mapping[str, object], quality_max: float) -> str | None:
    """Energy per frame a student must stay under to pass, from simulator accuracy and memory."""
    acc, fraction = _accuracy(record), _fraction(record)
    memory = _metric(record, "memory_bytes")
    note = ""
    if memory is None:
        memory, note = _metric(record, "program_memory_bytes"), " program"
    if acc is None or fraction is None or not memory or acc >= PERCENT:
        return None
    fraction = fraction if fraction <= 1.0 else fraction / PERCENT
    budget_mj = energy_budget_mj(fraction, int(memory), quality_max)
    return (f"{record.get('student', '')}: accuracy {acc:.2f}%, {memory:,.0f} B{note} memory → "
            f"pass needs energy below {budget_mj:.3g} mJ/frame")


# ---------------------------------------------------------------- SVG pieces


def _svg_open(title: str) -> str:
    return (f'<svg id="akida-quality-plot" xmlns="http://www.w3.org/2000/svg" width="{_W}" '
            f'height="{_H}" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
            f'style="display:block;max-width:100%;height:auto;background:#fff;margin:8px 0">'
            f"<title>{escape(title)}</title>"
            f'<rect x="0.5" y="0.5" width="{_W - 1}" height="{_H - 1}" fill="#fff" '
            f'stroke="#d0d7de"/>')


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start",
          fill: str = "#1f2328", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}" {_FONT}{extra}>{escape(text)}</text>')


def _decade_label(exponent: int) -> str:
    return f"{10.0 ** exponent:g}" if -3 <= exponent <= 4 else f"1e{exponent}"


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 25):
        if span / step <= 8:
            return step
    return 50.0


def _empty_plot(quality_max: float) -> str:
    """Nothing to place: neither quality nor accuracy with a static figure."""
    title = "Quality vs accuracy: no hardware figures yet"
    parts = [_svg_open(title),
             f'<rect x="40" y="40" width="{_W - 80}" height="{_H - 80}" rx="8" fill="#f6f8fa" '
             f'stroke="#d0d7de" stroke-dasharray="6 4"/>',
             _text(_W / 2, 100, "No hardware figures yet", size=24, anchor="middle",
                   extra=' font-weight="600"'),
             _text(_W / 2, 130, "Quality needs accuracy, fps, power and memory measured on the "
                   "AKD1000 (or replayed).", size=13, anchor="middle", fill="#57606a"),
             _text(_W / 2, 152, f"Quality = (100 {_MINUS} accuracy %) {_TIMES} energy per frame "
                   f"[J] {_TIMES} memory [B]; full credit below {_fmt_quality(quality_max)}.",
                   size=13, anchor="middle", fill="#57606a")]
    return "".join(parts) + "</svg>"


# Without a board: accuracy against what the mapping knows statically (not measured).
_STATIC = (("program_memory_bytes", "Program memory (bytes, static estimate, log scale)", "B"),
           ("nps", "Neural processors used (log scale)", "NPs"))


def _static_points(records: list[Mapping[str, object]]) -> tuple[list[Point], tuple[str, str, str]]:
    for key, label, unit in _STATIC:
        points = [(acc, value, r) for r in records
                  if (acc := _accuracy(r)) is not None and (value := _metric(r, key))]
        if points:
            return points, (key, label, unit)
    return [], _STATIC[0]


def _static_dots(points: list[Point], axes: _Axes, unit: str,
                 quality_max: float) -> list[str]:
    parts = []
    spots = [(axes.px(acc), axes.py(v), str(r.get("student", ""))) for acc, v, r in points]
    for (acc, value, record), (x, y, name), (tx, ty, anchor) in zip(
            points, spots, _place_labels(spots), strict=True):
        budget = _energy_budget(record, quality_max)
        tip = f"{name}: accuracy {acc:.2f}%, {value:,.0f} {unit} (static, not measured)" + (
            f"; {budget.split(' → ', 1)[1]}" if budget else "")
        parts.append(f'<g class="akida-point akida-static" data-student="{escape(name)}">'
                     f'<title>{escape(tip)}</title><circle cx="{x:.1f}" cy="{y:.1f}" r="5" '
                     f'fill="#0969da" stroke="#fff" stroke-width="1.5"/>'
                     + _text(tx, ty, name, size=11, anchor=anchor) + "</g>")
    return parts


def _static_plot(records: list[Mapping[str, object]], quality_max: float) -> str | None:
    """No quality yet: the simulator's accuracy against the static memory estimate (or NPs)."""
    points, (_, label, unit) = _static_points(records)
    if not points:
        return None
    axes = _Axes.around(points, points[0][1])
    title = (f"No hardware figures yet: accuracy vs {unit} for {len(points)} students "
             "(static estimates; quality needs a board or a recording)")
    mid_y = _TOP + _PLOT_H / 2
    parts = [_svg_open(title), _text(_LEFT, 26, "No hardware figures yet", size=14,
                                     extra=' font-weight="600"'),
             _text(_LEFT + 190, 26, f"accuracy vs {label.split(' (')[0].lower()}: static "
                   "figures, not measured", size=12, fill="#57606a"),
             *_grid(axes),
             f'<rect x="{_LEFT}" y="{_TOP}" width="{_PLOT_W}" height="{_PLOT_H}" fill="none" '
             f'stroke="#57606a"/>',
             _text(_LEFT + _PLOT_W / 2, _H - 24, "Akida accuracy (%, simulator)", size=13,
                   anchor="middle"),
             _text(18, mid_y, label, size=13, anchor="middle",
                   extra=f' transform="rotate(-90 18 {mid_y:.1f})"'),
             *_static_dots(points, axes, unit, quality_max),
             *_missing_note([str(r.get("student", "")) for r in records
                             if all(r is not p[2] for p in points)])]
    return "".join(parts) + "</svg>"


def _place_labels(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Greedy label placement: try right, above, below, left of each point to avoid overlaps."""
    placed: list[tuple[float, float, float, float]] = []
    result = []
    for x, y, name in points:
        width, height = 7.0 * len(name) + 2, 14.0
        options = ((x + 8, y + 4, "start"), (x, y - 10, "middle"), (x, y + 18, "middle"),
                   (x - 8, y + 4, "end"))
        chosen = options[0]
        for tx, ty, anchor in options:
            left = tx - (width if anchor == "end" else width / 2 if anchor == "middle" else 0)
            box = (left, ty - height + 3, left + width, ty + 3)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in placed):
                chosen = (tx, ty, anchor)
                placed.append(box)
                break
        result.append(chosen)
    return result


# ---------------------------------------------------------------- the plot


@dataclass(frozen=True)
class _Axes:
    """Whole decades of quality (log y) around the points and the pass line; accuracy on x."""

    lo: int
    hi: int
    x_lo: float
    x_hi: float

    @classmethod
    def around(cls, points: list[Point], quality_max: float) -> _Axes:
        positive = [q for _, q, _ in points if q > 0] or [quality_max]
        lo = math.floor(math.log10(min(*positive, quality_max) / 1.5))
        hi = math.ceil(math.log10(max(*positive, quality_max) * 1.5))
        x_lo = max(0.0, math.floor(min(a for a, _, _ in points) - 0.5))
        return cls(lo, max(hi, lo + 1), x_lo, 100.0 if x_lo < 100.0 else 101.0)

    def px(self, acc: float) -> float:
        return _LEFT + (min(acc, self.x_hi) - self.x_lo) / (self.x_hi - self.x_lo) * _PLOT_W

    def py(self, quality: float) -> float:
        log_q = math.log10(max(quality, 10.0 ** self.lo))
        return _TOP + (self.hi - log_q) / (self.hi - self.lo) * _PLOT_H


def _grid(axes: _Axes) -> list[str]:
    parts = []
    decade_step = max(1, math.ceil((axes.hi - axes.lo) / 8))
    for exponent in range(axes.lo, axes.hi + 1, decade_step):
        y = axes.py(10.0 ** exponent)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + _PLOT_W}" y2="{y:.1f}" '
                     f'stroke="#eaeef2"/>')
        parts.append(_text(_LEFT - 8, y + 4, _decade_label(exponent), size=11, anchor="end"))
    step = _nice_step(axes.x_hi - axes.x_lo)
    tick = math.ceil(axes.x_lo / step) * step
    while tick <= axes.x_hi + 1e-9:
        x = axes.px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + _PLOT_H}" '
                     f'stroke="#eaeef2"/>')
        parts.append(_text(x, _TOP + _PLOT_H + 18, f"{tick:g}", size=11, anchor="middle"))
        tick += step
    return parts


def _frame(pass_y: float, quality_max: float) -> list[str]:
    mid_y = _TOP + _PLOT_H / 2
    return [
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_PLOT_W}" height="{_PLOT_H}" fill="none" '
        f'stroke="#57606a"/>',
        f'<g id="akida-pass-line"><line class="akida-pass-line" x1="{_LEFT}" '
        f'y1="{pass_y:.1f}" x2="{_LEFT + _PLOT_W}" y2="{pass_y:.1f}" stroke="#cf222e" '
        f'stroke-width="2" stroke-dasharray="8 5"/>'
        + _text(_LEFT + _PLOT_W - 6, pass_y - 6, f"pass line: quality "
                f"{_fmt_quality(quality_max)}", size=12, anchor="end", fill="#cf222e")
        + "</g>",
        _text(_LEFT + _PLOT_W / 2, _H - 24, "Hardware accuracy (%)", size=13, anchor="middle"),
        _text(18, mid_y, "Quality (log scale, lower is better)", size=13,
              anchor="middle", extra=f' transform="rotate(-90 18 {mid_y:.1f})"'),
    ]


def _dots(points: list[Point], axes: _Axes, quality_max: float) -> list[str]:
    parts = []
    spots = [(axes.px(acc), axes.py(q), str(r.get("student", ""))) for acc, q, r in points]
    for (acc, quality, record), (x, y, name), (tx, ty, anchor) in zip(
            points, spots, _place_labels(spots), strict=True):
        colour = "#1a7f37" if quality < quality_max else "#cf222e"
        tip = (f"{name}: quality {_fmt_quality(quality)} ({_source_label(record)}), "
               f"accuracy {acc:.2f}%")
        parts.append(f'<g class="akida-point" data-student="{escape(name)}"><title>{escape(tip)}'
                     f'</title><circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" '
                     f'stroke="#fff" stroke-width="1.5"/>'
                     + _text(tx, ty, name, size=11, anchor=anchor) + "</g>")
    return parts


def _missing_note(missing: list[str]) -> list[str]:
    if not missing:
        return []
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return [_text(_LEFT, _H - 6, f"No hardware figures: {shown}", size=11, fill="#57606a")]


def quality_plot_svg(records: Iterable[Mapping[str, object]], *,
                     quality_max: float = QUALITY_MAX) -> str:
    """Inline <svg id="akida-quality-plot">: quality (log y) vs accuracy, with the pass line."""
    records = sorted(records, key=lambda r: str(r.get("student", "")))
    points: list[Point] = []
    missing: list[str] = []
    for record in records:
        quality, acc = _metric(record, "quality"), _accuracy(record)
        if quality is None or acc is None:
            missing.append(str(record.get("student", "")))
        else:
            points.append((acc, quality, record))
    if not points:
        return _static_plot(records, quality_max) or _empty_plot(quality_max)
    axes = _Axes.around(points, quality_max)
    title = (f"Quality vs accuracy for {len(points)} students; full credit below "
             f"{_fmt_quality(quality_max)}")
    pass_y = axes.py(quality_max)
    parts = [_svg_open(title), _text(_LEFT, 26, title, size=14, extra=' font-weight="600"'),
             f'<rect x="{_LEFT}" y="{pass_y:.1f}" width="{_PLOT_W}" '
             f'height="{_TOP + _PLOT_H - pass_y:.1f}" fill="#dafbe1" fill-opacity="0.55"/>',
             *_grid(axes), *_frame(pass_y, quality_max), *_dots(points, axes, quality_max),
             *_missing_note(missing)]
    return "".join(parts) + "</svg>"
