"""Laying out the wiring picture: three columns (triggers, tasks, webhooks), drawn as SVG by the
graph template. No JavaScript and nothing from a CDN."""

from __future__ import annotations

from dataclasses import dataclass

NODE_W, NODE_H, GAP, COLUMN_GAP, PAD = 220, 28, 10, 120, 10
COLUMN_OF = {"schedule": 0, "event": 0, "task": 1, "webhook": 2}


@dataclass(frozen=True)
class Box:
    kind: str
    name: str
    x: int
    y: int

    @property
    def label(self) -> str:
        text = f"{self.kind}: {self.name}"
        return text if len(text) <= 30 else text[:29] + "…"

    @property
    def href(self) -> str:
        return {"task": f"/ui/tasks/{self.name}", "schedule": "/ui/schedules",
                "event": "/ui/events", "webhook": f"/ui/webhooks?webhook={self.name}"}[self.kind]


@dataclass(frozen=True)
class Picture:
    boxes: list[Box]
    lines: list[tuple[int, int, int, int]]  # x1, y1, x2, y2: right edge of one box to the left of another
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def layout(nodes: list[tuple[str, str]], edges: list) -> Picture:
    rows = [0, 0, 0]
    where: dict[tuple[str, str], Box] = {}
    for kind, name in nodes:
        column = COLUMN_OF[kind]
        box = Box(kind, name, PAD + column * (NODE_W + COLUMN_GAP), PAD + rows[column] * (NODE_H + GAP))
        rows[column] += 1
        where[(kind, name)] = box
    lines = []
    for a, b in edges:
        if a in where and b in where:
            left, right = where[a], where[b]
            lines.append((left.x + NODE_W, left.y + NODE_H // 2, right.x, right.y + NODE_H // 2))
    height = PAD * 2 + max(rows + [1]) * (NODE_H + GAP)
    width = PAD * 2 + 3 * NODE_W + 2 * COLUMN_GAP
    return Picture(list(where.values()), lines, width, height)
