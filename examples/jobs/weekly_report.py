#!/usr/bin/env python3
"""weekly_report.py - job //examples/reviews:weekly_report.

Produces report/week=YYYY-Www (ISO week) from agg/category=C/date=D for the 7
days of the week and every category (a fan-in of 7 x 4 inputs): a markdown
report and a CSV table (category, day, reviews, average rating) in
$DATA_DIR/report/week=YYYY-Www/{report.md,report.csv}.

  weekly_report.py config report/week=2025-W01 ...
  weekly_report.py exec --week 2025-W01
"""
import json

import dbjob
import reviews


def inputs(days):
    return [reviews.agg_ref(c, d) for d in days for c in reviews.CATEGORIES]


def configure(ref):
    year, week, days = reviews.parse_week(ref)
    return dbjob.config(ref, inputs(days), ["--week", "%04d-W%02d" % (year, week)])


def execute(args):
    a = dbjob.parse_args(args, ["week"])
    ref = "report/week=" + a["week"]
    year, week, days = reviews.parse_week(ref)
    rows = []
    for d in days:
        for c in reviews.CATEGORIES:
            with dbjob.read_input(reviews.agg_ref(c, d), "summary.json") as f:
                rows.append(json.load(f))
    dbjob.log("read %d daily aggregates for %s" % (len(rows), a["week"]))

    csv = ["category,date,reviews,avg_rating"]
    csv += ["%s,%s,%d,%s" % (r["category"], r["date"], r["reviews"],
                             "" if r["avg_rating"] is None else "%.3f" % r["avg_rating"]) for r in rows]

    md = ["# Reviews, week %s (%s to %s)" % (a["week"], days[0], days[-1]), "",
          "| category | reviews | avg rating | best day | top product |",
          "|---|---:|---:|---|---|"]
    total = 0
    for c in reviews.CATEGORIES:
        mine = [r for r in rows if r["category"] == c]
        n = sum(r["reviews"] for r in mine)
        s = sum(r["rating_sum"] for r in mine)
        total += n
        best = max(mine, key=lambda r: (r["avg_rating"] or 0, r["date"]))
        prod = {}
        for r in mine:
            for name, p in r["products"].items():
                prod[name] = prod.get(name, 0) + p["reviews"]
        top = max(sorted(prod), key=lambda k: prod[k]) if prod else "-"
        md.append("| %s | %d | %s | %s | %s |" % (c, n, "%.2f" % (s / n) if n else "-", best["date"], top))
    md += ["", "%d reviews in total." % total, ""]

    dbjob.write_atomic(dbjob.partition_path(ref, "report.csv"), "\n".join(csv) + "\n")
    dbjob.write_atomic(dbjob.partition_path(ref, "report.md"), "\n".join(md))
    dbjob.log("wrote %s" % dbjob.partition_path(ref, "report.md"))
    dbjob.metric("reviews", total, unit="records", week=a["week"])
    return 0


if __name__ == "__main__":
    dbjob.run(configure, execute)
