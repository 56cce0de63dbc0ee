#!/usr/bin/env python3
"""aggregate_category.py - job //examples/reviews:aggregate.

Produces agg/category=C/date=YYYY-MM-DD from raw/reviews/date=YYYY-MM-DD (one
input, MATERIALIZE): the category's review count, average rating, rating
histogram and per-product figures, as JSON in
$DATA_DIR/agg/category=C/date=YYYY-MM-DD/summary.json.

  aggregate_category.py config agg/category=books/date=2025-01-01 ...
  aggregate_category.py exec --category books --date 2025-01-01
"""
import datetime
import json

import dbjob
import reviews


def configure(ref):
    category, day = reviews.parse_agg(ref)
    return dbjob.config(ref, [reviews.raw_ref(day)],
                        ["--category", category, "--date", day.isoformat()])


def execute(args):
    a = dbjob.parse_args(args, ["category", "date"])
    category, day = a["category"], datetime.date.fromisoformat(a["date"])
    ref = reviews.agg_ref(category, day)
    src = reviews.raw_ref(day)
    dbjob.log("reading %s" % src)
    n = total = 0
    hist = {str(r): 0 for r in range(1, 6)}
    products = {}
    with dbjob.read_input(src, "reviews.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["category"] != category:
                continue
            n += 1
            total += r["rating"]
            hist[str(r["rating"])] += 1
            p = products.setdefault(r["product"], {"reviews": 0, "rating_sum": 0})
            p["reviews"] += 1
            p["rating_sum"] += r["rating"]
    summary = {
        "category": category,
        "date": day.isoformat(),
        "reviews": n,
        "rating_sum": total,
        "avg_rating": round(total / n, 3) if n else None,
        "histogram": hist,
        "products": {k: {"reviews": v["reviews"], "avg_rating": round(v["rating_sum"] / v["reviews"], 3)}
                     for k, v in sorted(products.items())},
    }
    path = dbjob.partition_path(ref, "summary.json")
    dbjob.write_atomic(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    dbjob.log("%s on %s: %d reviews, average %s" % (category, day, n, summary["avg_rating"]))
    dbjob.metric("reviews", n, unit="records", category=category)
    return 0


if __name__ == "__main__":
    dbjob.run(configure, execute)
