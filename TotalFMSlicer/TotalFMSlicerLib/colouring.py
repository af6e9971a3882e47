"""Organs coloured by a finding's score (faint below the threshold) or by a search, and the
original colours put back exactly: while scores or a search are shown, each segment keeps its
original colour and opacities in tags (``TotalFM.originalColor``, ``TotalFM.originalOpacity``)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from TotalFMLib.errors import InputError
from TotalFMLib.results import ANY_LESION, ScoreRow, SearchHit

from .score_store import store_scores
from .segments import organ_segments, segment_tag

TAG_ORIGINAL_COLOR = "TotalFM.originalColor"
TAG_ORIGINAL_OPACITY = "TotalFM.originalOpacity"
ATTR_SHOWN = "TotalFM.shown"          # segmentation node attribute: what the colours show now

DIM_OPACITY = 0.15
UNSCORED_COLOR = (0.6, 0.6, 0.6)
HIGHLIGHT_COLOR = (1.0, 0.55, 0.0)

# Perceptual colour maps as stops at 0, 1/8, ..., 1 (sampled from matplotlib's maps).
COLORMAPS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "viridis": (
        (0.267, 0.005, 0.329), (0.279, 0.175, 0.483), (0.230, 0.322, 0.546),
        (0.173, 0.449, 0.558), (0.128, 0.567, 0.551), (0.158, 0.684, 0.502),
        (0.369, 0.789, 0.383), (0.678, 0.864, 0.190), (0.993, 0.906, 0.144),
    ),
    "inferno": (
        (0.001, 0.000, 0.014), (0.129, 0.047, 0.291), (0.342, 0.062, 0.429),
        (0.541, 0.135, 0.415), (0.736, 0.216, 0.330), (0.894, 0.353, 0.194),
        (0.978, 0.558, 0.035), (0.975, 0.798, 0.206), (0.988, 0.998, 0.645),
    ),
}


@dataclass
class ColorLegend:
    """What the overlay colours mean: score -> colour ramp, plus dimming."""
    title: str
    colormap: str
    stops: list[tuple[float, tuple[float, float, float]]]
    vmin: float = 0.0
    vmax: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    dim_opacity: float = DIM_OPACITY
    unscored_color: tuple[float, float, float] = UNSCORED_COLOR

    def color(self, value: float) -> tuple[float, float, float]:
        return score_color(value, self.colormap, self.vmin, self.vmax)


def score_color(value: float, colormap: str = "viridis", vmin: float = 0.0, vmax: float = 1.0
                ) -> tuple[float, float, float]:
    """RGB (0-1) of ``value`` on a colour map, clipped to [vmin, vmax]."""
    if colormap not in COLORMAPS:
        raise InputError(None, f"unknown colour map {colormap!r}; known: {', '.join(COLORMAPS)}")
    stops = np.asarray(COLORMAPS[colormap])
    t = 0.0 if vmax <= vmin else float(np.clip((value - vmin) / (vmax - vmin), 0.0, 1.0))
    xs = np.linspace(0.0, 1.0, len(stops))
    return tuple(float(np.interp(t, xs, stops[:, c])) for c in range(3))


def _display_node(segmentation_node):
    display = segmentation_node.GetDisplayNode()
    if display is None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    return display


@contextmanager
def modifying(segmentation_node):
    """The segmentation and its display node changed in one batch: views update once, not once
    per segment and property."""
    display = _display_node(segmentation_node)
    node_was, display_was = segmentation_node.StartModify(), display.StartModify()
    try:
        yield display
    finally:
        display.EndModify(display_was)
        segmentation_node.EndModify(node_was)


def _remember_original(segment, display, sid: str) -> None:
    if segment.HasTag(TAG_ORIGINAL_COLOR):
        return
    segment.SetTag(TAG_ORIGINAL_COLOR, " ".join(repr(float(c)) for c in segment.GetColor()))
    opacities = (display.GetSegmentOpacity3D(sid), display.GetSegmentOpacity2DFill(sid),
                 display.GetSegmentOpacity2DOutline(sid))
    segment.SetTag(TAG_ORIGINAL_OPACITY, " ".join(repr(float(o)) for o in opacities))


def _set_opacity(display, sid: str, opacity: float) -> None:
    display.SetSegmentOpacity3D(sid, opacity)
    display.SetSegmentOpacity2DFill(sid, opacity)
    display.SetSegmentOpacity2DOutline(sid, opacity)


def _original_color(segment) -> tuple[float, float, float]:
    text = segment_tag(segment, TAG_ORIGINAL_COLOR)
    return tuple(float(c) for c in text.split()) if text else tuple(segment.GetColor())


def restore_colors(segmentation_node) -> int:
    """Put back the colours and opacities saved before scores or a search were shown.
    Returns the number of segments restored; stored scores stay."""
    seg = segmentation_node.GetSegmentation()
    with modifying(segmentation_node) as display:
        restored = _restore(seg, display)
        segmentation_node.RemoveAttribute(ATTR_SHOWN)
    return restored


def _restore(seg, display) -> int:
    restored = 0
    for i in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(i)
        segment = seg.GetSegment(sid)
        color = segment_tag(segment, TAG_ORIGINAL_COLOR)
        if color is None:
            continue
        segment.SetColor(*(float(c) for c in color.split()))
        opacity = segment_tag(segment, TAG_ORIGINAL_OPACITY)
        if opacity:
            o3d, fill, outline = (float(o) for o in opacity.split())
            display.SetSegmentOpacity3D(sid, o3d)
            display.SetSegmentOpacity2DFill(sid, fill)
            display.SetSegmentOpacity2DOutline(sid, outline)
        segment.RemoveTag(TAG_ORIGINAL_COLOR)
        segment.RemoveTag(TAG_ORIGINAL_OPACITY)
        restored += 1
    return restored


def apply_scores(segmentation_node, rows: list[ScoreRow], finding: str = ANY_LESION,
                 colormap: str = "viridis", dim_opacity: float = DIM_OPACITY) -> ColorLegend:
    """Colour each organ segment by its score for ``finding``; organs below their threshold
    and organs without a score are dimmed (unscored ones also grey). Stores all ``rows`` as
    tags and remembers the original colours for ``restore_colors``."""
    shown = {r.organ: r for r in rows if r.finding == finding}
    if rows and not shown:
        findings = sorted({r.finding for r in rows})
        raise InputError(None, f"no score for finding {finding!r}; scored findings: {', '.join(findings)}")
    score_color(0.0, colormap)  # fails early on an unknown colour map
    store_scores(segmentation_node, rows)
    seg = segmentation_node.GetSegmentation()
    with modifying(segmentation_node) as display:
        for organ, sid in organ_segments(segmentation_node).items():
            segment = seg.GetSegment(sid)
            _remember_original(segment, display, sid)
            row = shown.get(organ)
            if row is None:
                segment.SetColor(*UNSCORED_COLOR)
                _set_opacity(display, sid, dim_opacity)
                continue
            segment.SetColor(*score_color(row.score, colormap))
            _set_opacity(display, sid, 1.0 if row.flagged else dim_opacity)
        segmentation_node.SetAttribute(ATTR_SHOWN, f"scores:{finding}")
    stops = [(float(x), tuple(c)) for x, c in zip(np.linspace(0, 1, len(COLORMAPS[colormap])), COLORMAPS[colormap])]
    return ColorLegend(title=f"TotalFM score: {finding}", colormap=colormap, stops=stops,
                       thresholds={o: r.threshold for o, r in shown.items()}, dim_opacity=dim_opacity)


def highlight(segmentation_node, hits: list[SearchHit], color=HIGHLIGHT_COLOR,
              dim_opacity: float = DIM_OPACITY) -> list[str]:
    """Show the matched organs of a search in ``color`` at full opacity and dim the rest
    (in their original colours). Returns the highlighted organs, best first."""
    matched = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
    return highlight_organs(segmentation_node, matched, color, dim_opacity)


def highlight_organs(segmentation_node, matched: list[str], color=HIGHLIGHT_COLOR,
                     dim_opacity: float = DIM_OPACITY) -> list[str]:
    """``matched`` organs (structure names) in ``color`` at full opacity, the rest dimmed in
    their original colours; the highlighted organs present, in the order given."""
    seg = segmentation_node.GetSegmentation()
    segments = organ_segments(segmentation_node)
    with modifying(segmentation_node) as display:
        for organ, sid in segments.items():
            segment = seg.GetSegment(sid)
            _remember_original(segment, display, sid)
            if organ in matched:
                segment.SetColor(*color)
                _set_opacity(display, sid, 1.0)
            else:
                segment.SetColor(*_original_color(segment))
                _set_opacity(display, sid, dim_opacity)
        segmentation_node.SetAttribute(ATTR_SHOWN, "search")
    return [organ for organ in matched if organ in segments]


def legend_html(legend) -> str:
    """A colour bar for the legend label: 0 ... 1 with the colour map's stops."""
    cells = "".join(
        '<td style="background-color:#%02x%02x%02x">&nbsp;&nbsp;&nbsp;</td>' % tuple(int(round(255 * c)) for c in rgb)
        for _value, rgb in legend.stops)
    return (f"<table cellspacing=0><tr><td>0&nbsp;</td>{cells}<td>&nbsp;1</td></tr></table>"
            f"{legend.title}; faint organs: below threshold or not scored")
