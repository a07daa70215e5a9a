"""The demo generator's ``events`` kind (the demo_hard dataset): long videos in which the objects stay on
screen and the queries name what happens to one of them.

Built from the structure of real grounding data (QVHighlights: 150-s videos of 75 2-s clips, moments from
one clip to half the video, some queries with several windows) and from what the demo's seeded tiny
backbone can see (colour and size, not motion direction; tests/test_demo.py probes every event type):

- 3-6 objects in fixed slots of a 3 x 2 grid (drifting a little, rotating), on screen for the whole video
  except at most one *context* object that enters late or leaves early;
- objects share colours and shapes (``colours``/``shapes`` per video), so a colour or a shape alone never
  names the target;
- events are clip-aligned intervals on one object: a colour change, growing, shrinking, flashing (white or
  off every other half period at ``flash_hz``) or vanishing for a while; each ramps in and out over ``ramp`` seconds, and the
  simulated annotators' saliency (1-4) follows that strength;
- queries: ``simple`` ("the red square grows": every occurrence, so 1-3 windows), ``while`` (co-occurrence
  with another object's event or the context object's presence: the intersection), ``after``/``before``
  (order relative to another object's single event or the context object's entry/exit).

The plan (JSON-able) holds the objects, their events and the queries with their windows; rendering
(:mod:`extract.demo_events_render`) reads only the objects and events, so tests can check the queries against
the rendered frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from extract.demo_shapes import CLIP, SHAPES

PALETTE = {  # name -> RGB; no white: white is what a white flash blends towards
    "red": (230, 30, 30), "green": (30, 200, 50), "blue": (40, 70, 235), "yellow": (240, 225, 30),
    "purple": (150, 40, 200), "orange": (250, 140, 20), "cyan": (30, 220, 230),
}
FLASHES = ("white", "off")  # what a flash shows every other half period: white, or nothing (a blink)
EVENTS = {  # type -> (what the object does, what it is meanwhile); {p}: the new colour
    "colour": (("turns {p}", "changes colour to {p}", "becomes {p}"), ("is {p}",)),
    "grow": (("grows", "gets bigger", "swells up"), ("is big", "is enlarged")),
    "shrink": (("shrinks", "gets smaller", "shrinks down"), ("is small", "is shrunken")),
    "flash": (("flashes", "blinks", "flickers"), ("is flashing", "is blinking")),
    "vanish": (("disappears for a while", "vanishes", "goes out of sight"), ("is gone", "is hidden")),
}
ENTER, LEAVE = ("appears", "enters the screen", "comes into view"), ("leaves the screen", "goes away", "exits")
ON_SCREEN = ("is on screen", "is visible", "is in view")
TEMPLATES = {
    "simple": ("the {o} {e}", "a {o} {e}", "when the {o} {e}", "the moment the {o} {e}"),
    "while": ("the {o} {e} while the {r} {s}", "while the {r} {s}, the {o} {e}"),
    "after": ("the {o} {e} after the {r} {s}", "after the {r} {s}, the {o} {e}"),
    "before": ("the {o} {e} before the {r} {s}", "before the {r} {s}, the {o} {e}"),
}
RELATES = {"while": ("event", "present"), "after": ("event", "enter", "leave"), "before": ("event", "enter", "leave")}


@dataclass(frozen=True)
class EventSpec:
    """``generate.events`` of a dataset whose ``generate.kind`` is ``events``."""
    colours: int = 3  # distinct base colours per video, shared among the objects
    shapes: int = 3  # distinct shapes per video, shared among the objects
    types: tuple = tuple(EVENTS)  # event types used
    min_events: int = 1  # per object (a context object: at most this many)
    max_events: int = 3
    repeat: float = 0.8  # probability that an object's next event repeats its previous one (multi-window queries)
    context: float = 0.6  # probability that one object enters late or leaves early
    order: float = 0.6  # probability that one object's event repeats before and after another's (after/before queries)
    queries: int = 4  # per video, at most
    mix: dict = field(default_factory=lambda: {"simple": 1.0, "while": 1.0, "after": 1.0, "before": 1.0})
    grid: tuple = (3, 2)  # object slots: columns x rows (objects at most columns x rows)
    size: tuple = (0.11, 0.14)  # base radius, fraction of the frame height
    grow: float = 1.45  # radius factor at full strength
    shrink: float = 0.5
    ramp: float = 2.0  # seconds over which an event fades in and out (at most a quarter of its window)
    drift: float = 1.0  # amplitude of the background's slow change of brightness and tint (1: the demo's)
    flash: str = "white"  # one of FLASHES
    flash_hz: float = 1.0  # bright/normal cycles per second (1 Hz alternates between the 4 frames of a 2-s clip)

    def __post_init__(self):
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "size", tuple(self.size))
        object.__setattr__(self, "grid", tuple(self.grid))
        bad = sorted(set(self.types) - set(EVENTS)) + sorted(set(self.mix) - set(TEMPLATES))
        if bad or not self.types:
            raise ValueError(f"events: unknown event types or query kinds {bad} (types: {sorted(EVENTS)}, "
                             f"kinds: {sorted(TEMPLATES)})")
        if not (1 <= self.colours <= len(PALETTE) and 1 <= self.shapes <= len(SHAPES)):
            raise ValueError(f"events: colours must be 1-{len(PALETTE)} and shapes 1-{len(SHAPES)}")
        if not 1 <= self.min_events <= self.max_events or sum(self.mix.values()) <= 0 or self.queries < 1:
            raise ValueError("events: need 1 <= min_events <= max_events, queries >= 1 and a positive mix")
        if self.flash not in FLASHES:
            raise ValueError(f"events: flash {self.flash!r}: expected one of {FLASHES}")
        if not (len(self.grid) == 2 and min(self.grid) >= 1 and len(self.size) == 2 and 0 < self.size[0] <= self.size[1]
                and self.grow >= 1 and 0 < self.shrink <= 1 and self.ramp > 0 and self.flash_hz > 0
                and all(0 <= p <= 1 for p in (self.repeat, self.context, self.order, self.drift))):
            raise ValueError("events: grid is [columns, rows], size [low, high] > 0, grow >= 1, 0 < shrink <= 1, "
                             "ramp and flash_hz > 0, repeat/context/order/drift in [0, 1]")

    @classmethod
    def from_config(cls, cfg: dict | None) -> "EventSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg or {}) - known)
        if unknown:
            raise ValueError(f"events: unknown keys {unknown}")
        return cls(**(cfg or {}))


# ------------------------------------------------------------------------------------------------ plan
def _windows(rng, lo: int, hi: int, k: int, max_len: int, min_len: int = 1) -> list[list[int]]:
    """k clip windows [s, e) in [lo, hi), at least one clip apart, log-uniform lengths in [min_len, max_len] and at
    most max_len clips together (an object spends most of the video as it is named)."""
    span = hi - lo
    k = min(k, (span + 1) // 2)
    if k <= 0:
        return []
    min_len = min(min_len, max_len)
    lengths = np.floor(np.exp(rng.uniform(np.log(min_len), np.log(max_len + 1), size=k))).astype(int)
    lengths = lengths.clip(min_len, max_len)
    while lengths.sum() + k - 1 > span or (lengths.sum() > max_len and lengths.max() > 1):
        lengths = np.maximum(lengths - 1, 1)
    gaps = rng.multinomial(span - lengths.sum() - (k - 1), np.ones(k + 1) / (k + 1))
    gaps[1:k] += 1
    out, cursor = [], lo
    for i in range(k):
        cursor += int(gaps[i])
        out.append([cursor, cursor + int(lengths[i])])
        cursor += int(lengths[i])
    return out


def _events(rng, colour: str, windows: list, es: EventSpec, first: tuple | None = None,
            types: tuple | None = None) -> list[dict]:
    """Events on these windows, each repeating the previous one with probability ``es.repeat`` (all of them
    repeating ``first``, a (type, param), when given), of ``types`` (default: es.types)."""
    events = []
    for w in windows:
        if first is not None or (events and rng.random() < es.repeat):
            etype, param = first if first is not None else (events[-1]["type"], events[-1]["param"])
        else:
            etype = str(rng.choice(types or es.types))
            param = str(rng.choice([c for c in PALETTE if c != colour])) if etype == "colour" else None
        events.append({"type": etype, "param": param, "clips": w, "mag": float(rng.uniform(0.7, 1.0))})
    return events


def _order_scenario(rng, objects: list, n: int, max_len: int, min_len: int, es: EventSpec) -> None:
    """One object's event, repeated, on both sides of another object's single event or of the context object's
    entry/exit, so that `after`/`before` queries exist (random schedules rarely make them)."""
    refs = [(j, ev["clips"]) for j, o in enumerate(objects) for ev in o["events"]
            if sum(e["type"] == ev["type"] and e["param"] == ev["param"] for e in o["events"]) == 1]
    refs += [(j, [c, c]) for j, o in enumerate(objects) for c in o["present"] if 0 < c < n]
    targets = [i for i, o in enumerate(objects) if o["present"] == [0, n]]
    if not refs or len(targets) < 2:
        return
    j, (a, b) = refs[int(rng.integers(len(refs)))]
    targets = [i for i in targets if i != j]
    i = targets[int(rng.integers(len(targets)))]
    if a - 1 < 1 or n - (b + 1) < 1:
        return
    k1, k2 = (int(v) for v in rng.integers(1, 3, size=2))
    half = max(1, max_len // 2)
    windows = _windows(rng, 0, a - 1, k1, half, min_len) + _windows(rng, b + 1, n, k2, half, min_len)
    etype = str(rng.choice(es.types))
    colour = objects[i]["colour"]
    param = str(rng.choice([c for c in PALETTE if c != colour])) if etype == "colour" else None
    objects[i]["events"] = _events(rng, colour, windows, es, first=(etype, param))


def plan_video(rng: np.random.Generator, spec, es: EventSpec) -> dict:
    """``spec``: the DemoSpec (durations, frame size, object counts, window bounds)."""
    n = int(rng.integers(spec.min_duration // CLIP, spec.max_duration // CLIP + 1))
    max_len = max(1, min(n // 2, int(spec.max_window // CLIP)))
    min_len = max(1, int(spec.min_window // CLIP))
    n_obj = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    colours = rng.choice(list(PALETTE), size=es.colours, replace=False)
    shapes = rng.choice(SHAPES, size=es.shapes, replace=False)
    pairs = [(str(c), str(s)) for c in colours for s in shapes]
    for _ in range(100):  # every object shares its colour or its shape with another one: distractors
        chosen = rng.choice(len(pairs), size=min(n_obj, len(pairs)), replace=False)
        if all(any(k != j and (pairs[k][0] == pairs[j][0] or pairs[k][1] == pairs[j][1]) for j in chosen)
               for k in chosen):
            break
    slots = rng.choice(es.grid[0] * es.grid[1], size=len(chosen), replace=False)
    context = int(rng.integers(len(chosen))) if rng.random() < es.context else -1
    objects = []
    for k, (pair, slot) in enumerate(zip(chosen, slots)):
        colour, shape = pairs[pair]
        present = [0, n]
        if k == context:  # enters in the first half or leaves in the second
            present = [int(rng.integers(n // 5, n // 2 + 1)), n] if rng.random() < 0.5 else \
                [0, int(rng.integers(n - n // 2, n - n // 5 + 1))]
        lo, hi = present[0] + (present[0] > 0), present[1] - (present[1] < n)  # a clip away from entry/exit
        n_ev = int(rng.integers(0, es.min_events + 1) if k == context else
                   rng.integers(es.min_events, es.max_events + 1))
        # the context object never vanishes: "while it is on screen" means its whole presence
        types = tuple(t for t in es.types if t != "vanish") if k == context else es.types
        col, row = divmod(int(slot), es.grid[1])
        objects.append({
            "colour": colour, "shape": shape, "present": present,
            "events": _events(rng, colour, _windows(rng, lo, hi, n_ev if types else 0, max_len, min_len), es,
                              types=types),
            "centre": [(col + 0.5 + rng.uniform(-0.06, 0.06)) / es.grid[0],
                       (row + 0.5 + rng.uniform(-0.06, 0.06)) / es.grid[1]],
            "size": float(rng.uniform(*es.size)), "bob": [float(v) for v in rng.uniform(0.004, 0.012, size=2)],
            "phase": float(rng.uniform(0, 2 * np.pi)), "spin": float(rng.uniform(-0.3, 0.3)),
        })
    if rng.random() < es.order:
        _order_scenario(rng, objects, n, max_len, min_len, es)
    grey = rng.uniform(45, 100, size=(2, 1))
    plan = {"kind": "events", "duration": n * CLIP, "objects": objects,
            "background": (grey + rng.uniform(-12, 12, size=(2, 3))).tolist(),
            "drift": float(rng.uniform(0.02, 0.08)), "noise_seed": int(rng.integers(2**31))}
    plan["queries"] = choose_queries(rng, plan, es)
    return plan


def groups(plan: dict) -> dict:
    """(object, type, param) -> its events' clip windows, in time order."""
    out: dict = {}
    for i, obj in enumerate(plan["objects"]):
        for ev in obj["events"]:
            out.setdefault((i, ev["type"], ev["param"]), []).append(list(ev["clips"]))
    return out


def _clips(windows) -> set:
    return {c for s, e in windows for c in range(s, e)}


def _runs(clips: set) -> list[list[int]]:
    """Sorted clip ids -> maximal [s, e) runs."""
    out: list[list[int]] = []
    for c in sorted(clips):
        if out and out[-1][1] == c:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return out


def _refs(plan: dict) -> list[dict]:
    """What a composed query can refer to: single events, and the context object's presence/entry/exit."""
    refs = []
    for (i, t, p), ws in groups(plan).items():
        if len(ws) == 1:
            refs.append({"object": i, "what": "event", "type": t, "param": p, "clips": ws[0]})
    n = round(plan["duration"] / CLIP)
    for i, obj in enumerate(plan["objects"]):
        a, b = obj["present"]
        if a > 0:
            refs.append({"object": i, "what": "enter", "clips": [a, a]})
        if b < n:
            refs.append({"object": i, "what": "leave", "clips": [b, b]})
        if a > 0 or b < n:
            refs.append({"object": i, "what": "present", "clips": [a, b]})
    return refs


def relation_windows(kind: str, target: list, ref: list) -> list[list[int]] | None:
    """The windows a composed query asks for, or None when the relation does not make a good query: ``target``
    the target's windows, ``ref`` the reference's [a, b) (a == b: an instant). while: the intersection, which
    must leave some target clip out; after/before: the target windows wholly after b / before a, with some on
    the other side too and none overlapping the reference."""
    a, b = ref
    if kind == "while":
        inside = _clips(target) & set(range(a, b))
        return _runs(inside) if inside and inside != _clips(target) else None
    if any(s < b and e > a for s, e in target):  # overlaps the reference (or straddles an instant)
        return None
    after, before = [w for w in target if w[0] >= b], [w for w in target if w[1] <= a]
    if not after or not before:
        return None
    return after if kind == "after" else before


def choose_queries(rng, plan: dict, es: EventSpec) -> list[dict]:
    cands: dict[str, list] = {k: [] for k in TEMPLATES}
    refs = _refs(plan)
    for (i, t, p), ws in groups(plan).items():
        if len(ws) > 3:
            continue
        cands["simple"].append({"target": [i, t, p], "ref": None, "windows": ws})
        for ref in refs:
            if ref["object"] == i:
                continue
            for kind in ("while", "after", "before"):
                if ref["what"] not in RELATES[kind]:
                    continue
                win = relation_windows(kind, ws, ref["clips"])
                if win and len(win) <= 3:
                    cands[kind].append({"target": [i, t, p], "ref": ref, "windows": win})
    queries = []
    kinds = [k for k in TEMPLATES if es.mix.get(k, 0) > 0]
    while len(queries) < es.queries:
        live = [k for k in kinds if cands[k]]
        if not live:
            break
        w = np.array([es.mix[k] for k in live])
        kind = live[int(rng.choice(len(live), p=w / w.sum()))]
        q = cands[kind].pop(int(rng.integers(len(cands[kind]))))
        q["kind"] = kind
        q["text"] = query_text(rng, plan, kind, q)
        queries.append(q)
        for k in cands:  # one query per target event: no two queries of a video describe the same thing
            cands[k] = [c for c in cands[k] if c["target"] != q["target"]]
    return queries


def query_text(rng, plan: dict, kind: str, q: dict) -> str:
    def name(i):
        obj = plan["objects"][i]
        return f"{obj['colour']} {obj['shape']}"

    def pick(options, p=None):
        return str(options[int(rng.integers(len(options)))]).replace("{p}", str(p))

    i, t, p = q["target"]
    words = {"o": name(i), "e": pick(EVENTS[t][0], p)}
    ref = q["ref"]
    if ref is not None:
        words["r"] = name(ref["object"])
        if ref["what"] == "event":
            words["s"] = pick(EVENTS[ref["type"]][1 if kind == "while" else 0], ref["param"])
        else:
            words["s"] = pick({"enter": ENTER, "leave": LEAVE, "present": ON_SCREEN}[ref["what"]])
    return str(TEMPLATES[kind][int(rng.integers(len(TEMPLATES[kind])))]).format(**words)


# ------------------------------------------------------------------- event strength (rendered and annotated)
def strength(ev: dict, t: float, ramp: float) -> float:
    """An event's strength at time t: its magnitude, ramped in and out over ``ramp`` s (at most a quarter of it)."""
    s, e = ev["clips"][0] * CLIP, ev["clips"][1] * CLIP
    if not s <= t < e:
        return 0.0
    r = min(ramp, (e - s) / 4)
    return ev["mag"] * float(np.clip(min(t - s, e - t) / r, 0.0, 1.0))


# ---------------------------------------------------------------------------------------- annotations
def clip_strength(plan: dict, q: dict, clip: int, es: EventSpec, samples: int = 4) -> float:
    """Mean strength of the query's target events over a clip (at the decoder's frame times, mid-sub-intervals)."""
    i, t, p = q["target"]
    evs = [ev for ev in plan["objects"][i]["events"] if ev["type"] == t and ev["param"] == p]
    times = (clip + (np.arange(samples) + 0.5) / samples) * CLIP
    return float(np.mean([max(strength(ev, x, es.ramp) for ev in evs) for x in times]))


def annotations(vid: str, plan: dict, rng, first_qid: int, es: EventSpec) -> list[dict]:
    """QVHighlights rows; each of 3 simulated annotators rates a clip 1 + 3 x its strength, give or take."""
    rows = []
    for k, q in enumerate(plan["queries"]):
        clip_ids = sorted(_clips(q["windows"]))
        scores = [[int(np.clip(np.rint(1 + 3 * clip_strength(plan, q, c, es) + rng.normal(0, 0.4)), 1, 4))
                   for _ in range(3)] for c in clip_ids]
        rows.append({"qid": first_qid + k, "query": q["text"], "duration": plan["duration"], "vid": vid,
                     "relevant_windows": [[s * CLIP, e * CLIP] for s, e in q["windows"]],
                     "relevant_clip_ids": clip_ids, "saliency_scores": scores})
    return rows
