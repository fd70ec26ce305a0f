"""Long recordings with time-aligned text: subtitle files in, training windows of at most the model's window out.

A recording is an audio file with segments (start, end, text): an SRT or WebVTT file beside it (same stem) or a
manifest row with ``segments: [{start, end, text}]``. ``parse_subtitles`` reads SRT and WebVTT as they arrive
(a BOM, CRLF line ends, a missing blank line between cues, markup tags); ``check_segments`` finds every segment
that cannot be trained on and says why; ``plan_windows`` cuts the recording into windows::

    segments (file order) -> problems per segment (bad_timestamp, empty_segment, segment_out_of_order,
    segment_overlap, segment_too_long, segment_past_end) -> consecutive good segments packed greedily into
    windows of at most ``window`` seconds, cut only between segments and never across a bad one

Every good segment lies in exactly one window and windows never overlap, so each second of transcribed speech
is trained on once. A window stores its segments relative to its own start, the text of the window before it
(Whisper's previous-text prompt), the recording's key and the window's offset in the recording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PAD_SECONDS = 0.5  # context kept around a window's first and last segment, where the gap allows
_TIMING = re.compile(r"^\s*(\S+)\s*-->\s*(\S+)")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <v Speaker>, <00:01.000>, {\an8}


@dataclass
class Segment:
    start: float | None  # None: the cue's times could not be read (its span is unknown)
    end: float | None
    text: str
    where: str  # "talk.srt cue 3", for the quarantine report
    problem: str | None = None  # a quarantine reason; a bad segment is never trained on and no window crosses it
    detail: str = ""


@dataclass
class Window:
    start: float  # seconds into the recording
    end: float
    segments: list[Segment] = field(default_factory=list)
    prev_text: str = ""

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    def relative_segments(self) -> list[dict]:
        """The segments with times relative to the window's start (ms resolution)."""
        return [
            {"start": round(s.start - self.start, 3), "end": round(s.end - self.start, 3), "text": s.text}
            for s in self.segments
        ]


# ---------------------------------------------------------------------------------------------- parse
def parse_time(value: str) -> float:
    """SRT ``HH:MM:SS,mmm`` or WebVTT ``[HH:]MM:SS.mmm`` in seconds; ValueError when it is neither."""
    match = re.fullmatch(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})", value.strip())
    if not match:
        raise ValueError(f"unreadable time {value!r} (expected HH:MM:SS,mmm or MM:SS.mmm)")
    hours, minutes, seconds, millis = match.groups()
    if int(minutes) >= 60 or int(seconds) >= 60:
        raise ValueError(f"unreadable time {value!r} (minutes and seconds must be under 60)")
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def parse_subtitles(content: str, name: str) -> list[Segment]:
    """Every cue of an SRT or WebVTT text, in file order (times unread where unparsable: see Segment)."""
    lines = content.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[tuple[str, list[str]]] = []  # (timing line, text lines)
    in_block = False  # inside a WebVTT NOTE/STYLE/REGION block
    for n, line in enumerate(lines):
        nxt = lines[n + 1] if n + 1 < len(lines) else ""
        if _TIMING.match(line):
            cues.append((line, []))
            in_block = False
        elif not line.strip():
            in_block = False
            if cues and cues[-1][1]:
                cues[-1][1].append("")  # a blank line ends the cue's text
        elif re.match(r"^(WEBVTT|NOTE|STYLE|REGION)\b", line) and not (cues and cues[-1][1] and cues[-1][1][-1]):
            in_block = True  # the header and its blocks hold no speech
        elif in_block or _TIMING.match(nxt):
            continue  # a cue's number or identifier (a missing blank line before it is fine)
        elif cues and (not cues[-1][1] or cues[-1][1][-1] != ""):
            cues[-1][1].append(line)
    return [_segment(timing, text, f"{name} cue {i + 1}") for i, (timing, text) in enumerate(cues)]


def _segment(timing: str, text_lines: list[str], where: str) -> Segment:
    text = " ".join(_TAG.sub("", " ".join(text_lines)).split())
    start_s, end_s = _TIMING.match(timing).groups()
    try:
        start, end = parse_time(start_s), parse_time(end_s)
    except ValueError as exc:
        return Segment(None, None, text, where, "bad_timestamp", str(exc))
    return Segment(start, end, text, where)


def segments_from_rows(rows: list, name: str) -> list[Segment]:
    """A manifest's ``segments: [{start, end, text}]`` (seconds as numbers or subtitle-style strings)."""
    out = []
    for i, row in enumerate(rows):
        where = f"{name} segment {i + 1}"
        if not isinstance(row, dict):
            out.append(Segment(None, None, "", where, "bad_timestamp", f"expected an object, got {type(row).__name__}"))
            continue
        text = row.get("text")
        text = " ".join(text.split()) if isinstance(text, str) else ""
        try:
            start, end = (_seconds(row.get(k)) for k in ("start", "end"))
        except ValueError as exc:
            out.append(Segment(None, None, text, where, "bad_timestamp", str(exc)))
            continue
        out.append(Segment(start, end, text, where))
    return out


def _seconds(value) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"unreadable time {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    return parse_time(str(value)) if ":" in str(value) else float(value)


# ---------------------------------------------------------------------------------------------- check
def check_segments(segments: list[Segment], window: float, duration: float | None = None) -> list[Segment]:
    """Mark every segment that cannot be trained on (in place; returns the list). ``duration``: the audio's
    length, once decoded (a segment past it is bad)."""
    last_good: Segment | None = None
    for seg in segments:
        if seg.problem:
            continue
        if seg.start < 0 or seg.end <= seg.start:
            seg.problem, seg.detail = "bad_timestamp", f"ends at {seg.end:.3f} s, not after its start {seg.start:.3f} s"
        elif not seg.text:
            seg.problem, seg.detail = "empty_segment", "the segment has no text"
        elif seg.end - seg.start > window:
            seg.problem = "segment_too_long"
            seg.detail = f"{seg.end - seg.start:.2f} s is over the {window:g}-s window: split it into shorter segments"
        elif duration is not None and seg.end > duration + 0.05:
            seg.problem, seg.detail = "segment_past_end", f"ends at {seg.end:.3f} s, past the audio's {duration:.3f} s"
        elif last_good is not None and seg.start < last_good.start:
            seg.problem = "segment_out_of_order"
            seg.detail = f"starts at {seg.start:.3f} s, before the previous segment ({last_good.start:.3f} s)"
        elif last_good is not None and seg.start < last_good.end - 1e-6:
            seg.problem = "segment_overlap"
            seg.detail = f"starts at {seg.start:.3f} s, inside the previous segment (ends {last_good.end:.3f} s)"
        if not seg.problem:
            last_good = seg
    return segments


# --------------------------------------------------------------------------------------------- window
def plan_windows(segments: list[Segment], window: float, duration: float) -> list[Window]:
    """Consecutive good segments packed greedily into windows of at most ``window`` seconds (see the module
    docstring); ``segments`` must have been checked (check_segments) against ``duration``."""
    windows: list[Window] = []
    floor = 0.0  # no window starts before the previous window's end or a bad segment's end
    i = 0
    while i < len(segments):
        seg = segments[i]
        if seg.problem:  # its audio is in no window
            floor = max(floor, seg.end) if seg.end is not None else floor
            i += 1
            continue
        start = max(floor, seg.start - min(PAD_SECONDS, window - (seg.end - seg.start)))
        group = [seg]
        i += 1
        while i < len(segments) and not segments[i].problem and segments[i].end - start <= window:
            group.append(segments[i])
            i += 1
        nxt = _next_start(segments, i, duration)
        end = max(min(start + window, nxt, group[-1].end + PAD_SECONDS, duration), group[-1].end)
        prev = windows[-1].text if windows else ""
        windows.append(Window(start, end, group, prev))
        floor = end
    return windows


def _next_start(segments: list[Segment], i: int, duration: float) -> float:
    """Where the next window may begin at the earliest: the next segment's start (a bad one's, if known)."""
    for seg in segments[i:]:
        if seg.start is not None:
            return min(seg.start, duration)
    return duration


def window_fields(win: Window, n: int, recording: str, rate: int) -> tuple[dict, int, int]:
    """The json fields every window sample has (shards and pseudo-labels), and its first and last sample in the
    recording; ``win.start`` is moved to its first sample, so segment times are relative to the audio kept."""
    first, last = round(win.start * rate), round(win.end * rate)
    win.start = first / rate
    fields = {
        "key": f"{recording}-w{n:04d}",
        "duration": round((last - first) / rate, 4),
        "num_samples": last - first,
        "sample_rate": rate,
        "recording": recording,
        "offset": round(first / rate, 4),
        "prev_text": win.prev_text,
    }
    return fields, first, last
