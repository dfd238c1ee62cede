"""Result rows: one row is one number measured on both VMMs (or skipped on
either with a reason), with its unit, which direction is better, and the
target vmmd is meant to meet (issue #6)."""

import os
from statistics import median

from common import summarize

SIDES = ("vmmd", "qemu")


class Target:
    """A goal for a row: kind is "ratio_max" (vmmd/QEMU median at most value),
    "ratio_min" (at least value) or "vmmd_max" (vmmd median at most value)."""

    def __init__(self, kind, value, text):
        self.kind = kind
        self.value = value
        self.text = text

    def met(self, vmmd, ratio):
        if self.kind == "vmmd_max":
            return None if vmmd is None else vmmd <= self.value
        if ratio is None:
            return None
        if self.kind == "ratio_max":
            return ratio <= self.value
        return ratio >= self.value


class Row:
    def __init__(self, figure, key, title, unit, better="lower", target=None, note=None):
        self.figure = figure
        self.key = key
        self.title = title
        self.unit = unit
        self.better = better
        self.target = target
        self.notes = [note] if note else []
        self.samples = {s: [] for s in SIDES}
        self.rounds = {s: [] for s in SIDES}  # the round of each sample
        self.loads = []  # 1-minute load average when each sample was taken
        self.skipped = {s: None for s in SIDES}
        self.results = None  # set by Results.row(): the harness's current round

    def add(self, side, value, rnd=None, load=None):
        """One sample. rnd is the round it belongs to (default: the round the
        harness is running); load the 1-minute load average at the time
        (default: now)."""
        if rnd is None:
            rnd = self.results.cur_round if self.results else 0
        self.samples[side].append(float(value))
        self.rounds[side].append(int(rnd))
        self.loads.append(float(load) if load is not None else os.getloadavg()[0])

    def skip(self, side, reason):
        if not self.samples[side] and not self.skipped[side]:
            self.skipped[side] = " ".join(str(reason).split()) or "no reason given"

    def side_json(self, side):
        if self.samples[side]:
            return summarize(self.samples[side])
        return {"skipped": self.skipped[side] or "not measured (no reason recorded)"}

    def medians(self):
        return tuple(summarize(self.samples[s])["median"] if self.samples[s] else None
                     for s in SIDES)

    def ratio(self):
        v, q = self.medians()
        if v is None or q is None or q == 0:
            return None
        return v / q

    def round_ratios(self):
        """vmmd/QEMU per round (medians of that round's samples), for every
        round measured on both sides: VMMs alternate within a round, so a
        noisy round moves both sides and cancels here."""
        out = []
        for rnd in sorted(set(self.rounds["vmmd"]) & set(self.rounds["qemu"])):
            v, q = (median([x for x, r in zip(self.samples[s], self.rounds[s]) if r == rnd])
                    for s in SIDES)
            if q:
                out.append(v / q)
        return out

    def advantage(self):
        """How many times better vmmd is (>1) or worse (<1) than QEMU."""
        r = self.ratio()
        if r is None or r == 0:
            return None
        return 1.0 / r if self.better == "lower" else r

    def status(self):
        have = [bool(self.samples[s]) for s in SIDES]
        return "measured" if all(have) else "partial" if any(have) else "skipped"

    def to_json(self):
        v, _ = self.medians()
        r = self.ratio()
        j = {"figure": self.figure, "key": self.key, "title": self.title, "unit": self.unit,
             "better": self.better, "status": self.status(),
             "vmmd": self.side_json("vmmd"), "qemu": self.side_json("qemu"),
             "ratio": None if r is None else round(r, 4)}
        rr = self.round_ratios()
        j["round_ratios"] = [round(x, 4) for x in rr]
        j["round_ratio_median"] = round(median(rr), 4) if rr else None
        if self.loads:
            j["load"] = {"median": round(median(self.loads), 2), "min": round(min(self.loads), 2),
                         "max": round(max(self.loads), 2)}
        a = self.advantage()
        j["advantage"] = None if a is None else round(a, 4)
        if self.target:
            j["target"] = self.target.text
            j["target_met"] = self.target.met(v, r)
        if self.notes:
            j["notes"] = self.notes
        return j


class Results:
    def __init__(self):
        self.rows = []
        self.by_key = {}
        self.cur_round = 0

    def row(self, figure, key, *args, **kwargs):
        if key not in self.by_key:
            r = Row(figure, key, *args, **kwargs)
            r.results = self
            self.rows.append(r)
            self.by_key[key] = r
        return self.by_key[key]

    def get(self, key):
        return self.by_key.get(key)

    def sorted_rows(self):
        return sorted(self.rows, key=lambda r: (r.figure, self.rows.index(r)))
