"""The pipeline page's picture: requests in columns by how far down they
are, each a box coloured by its state and linked to its request, with a
line to each request it waits for. Laid out here; the template only draws."""

from __future__ import annotations

from dataclasses import dataclass

from taskyard.graph import depths
from taskyard.scheduler.domain import Needs
from taskyard.scheduler.service.pipelines import Pipeline
from taskyard.scheduler.web.render import state_label

#: Boxes drawn at most; a larger pipeline is drawn in part, and says so.
MAX_DRAWN = 400
WIDTH, HEIGHT = 200, 40
#: Room between columns (for the lines) and between rows.
GAP_X, GAP_Y = 60, 16
MARGIN = 10


@dataclass(frozen=True)
class Box:
    """One request, drawn."""

    id: str
    x: int
    y: int
    task: str
    #: Its class: the result once completed, else the state.
    kind: str
    label: str


@dataclass(frozen=True)
class Line:
    """From a request (its right side) to one that waits for it (its left)."""

    x1: int
    y1: int
    x2: int
    y2: int
    #: `done` when only its end was awaited.
    needs: str


@dataclass(frozen=True)
class Picture:
    """What the template draws."""

    boxes: list[Box]
    lines: list[Line]
    width: int
    height: int
    #: Requests left out of the picture; and whether there are more still.
    left_out: int
    more: bool


def picture(pipeline: Pipeline) -> Picture:
    """Lay `pipeline` out: left to right by depth, top to bottom by age."""
    parents = {w.id: [d.on for d in pipeline.waits.get(w.id, [])] for w in pipeline.nodes}
    depth = depths(parents)
    drawn = sorted(pipeline.nodes, key=lambda w: (depth[w.id], w.id))[:MAX_DRAWN]
    rows: dict[int, int] = {}
    at: dict[str, tuple[int, int]] = {}
    boxes = []
    for work_request in drawn:
        column = depth[work_request.id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        x, y = MARGIN + column * (WIDTH + GAP_X), MARGIN + row * (HEIGHT + GAP_Y)
        at[work_request.id] = (x, y)
        kind = work_request.result.value or work_request.state.value
        boxes.append(Box(work_request.id, x, y, work_request.task_name, kind,
                         state_label(work_request)))  # fmt: skip
    lines = [
        Line(
            at[d.on][0] + WIDTH,
            at[d.on][1] + HEIGHT // 2,
            x,
            y + HEIGHT // 2,
            "done" if d.needs is Needs.DONE else "success",
        )
        for child, (x, y) in at.items()
        for d in pipeline.waits.get(child, [])
        if d.on in at
    ]
    width = MARGIN * 2 + (max(rows, default=0) + 1) * (WIDTH + GAP_X)
    height = MARGIN * 2 + max(rows.values(), default=1) * (HEIGHT + GAP_Y)
    left_out = len(pipeline.nodes) - len(drawn)
    return Picture(boxes, lines, width, height, left_out, pipeline.truncated)
