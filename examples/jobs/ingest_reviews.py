#!/usr/bin/env python3
"""ingest_reviews.py - job //examples/reviews:ingest.

Produces raw/reviews/date=YYYY-MM-DD: that day's product reviews, one JSON
object per line in $DATA_DIR/raw/reviews/date=YYYY-MM-DD/reviews.jsonl. The
"source" is a deterministic pseudo-random generator seeded by the date, so a
day always has the same reviews. No inputs: this is where data enters the graph.

  ingest_reviews.py config raw/reviews/date=2025-01-01 ...
  ingest_reviews.py exec --date 2025-01-01

Environment: DATA_DIR; INGEST_DELAY_S (seconds to "download", default 0);
INGEST_FLAKY_DATES (comma-separated dates whose first attempt exits 75, "source
temporarily unavailable", to show the retry configured in databuild.yaml).
"""
import datetime
import json
import os
import random
import sys
import time

import dbjob
import reviews

PRODUCTS = {
    "books": ["The Long Build", "Partition Tales", "Event Sourcing at Dawn", "Cooking with DAGs"],
    "electronics": ["USB-C Hub", "Noise Cancelling Headphones", "E-Reader", "Mechanical Keyboard"],
    "garden": ["Pruning Shears", "Raised Bed Kit", "Hose Reel", "Compost Bin"],
    "toys": ["Wooden Train Set", "Puzzle Cube", "Kite", "Building Blocks"],
}
WORDS = ["great", "solid", "broke", "love", "meh", "fast", "slow", "value", "gift", "again", "cheap", "sturdy"]


def configure(ref):
    day = reviews.parse_raw(ref)
    return dbjob.config(ref, [], ["--date", day.isoformat()])


def generate(day):
    rng = random.Random("reviews/" + day.isoformat())
    n = rng.randint(300, 600)
    out = []
    for i in range(n):
        cat = rng.choices(reviews.CATEGORIES, weights=(4, 3, 2, 2))[0]
        product = rng.choice(PRODUCTS[cat])
        rating = rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 2, 4, 5))[0]
        ts = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(seconds=rng.randrange(86400))
        out.append({
            "review_id": "%s-%04d" % (day.strftime("%Y%m%d"), i),
            "ts": ts.isoformat() + "Z",
            "category": cat,
            "product": product,
            "rating": rating,
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))),
        })
    return out


def execute(args):
    a = dbjob.parse_args(args, ["date"])
    day = reviews.parse_raw(reviews.raw_ref(datetime.date.fromisoformat(a["date"])))
    ref = reviews.raw_ref(day)
    flaky = [d.strip() for d in os.environ.get("INGEST_FLAKY_DATES", "").split(",") if d.strip()]
    if day.isoformat() in flaky:
        marker = dbjob.partition_path(ref, ".flaky-attempted")
        if not os.path.exists(marker):
            dbjob.write_atomic(marker, "1\n")
            print("source temporarily unavailable for %s (try again)" % day, file=sys.stderr)
            return dbjob.EX_TEMPFAIL
    dbjob.log("fetching reviews for %s" % day)
    delay = float(os.environ.get("INGEST_DELAY_S") or 0)
    if delay > 0:
        time.sleep(delay)
    rows = generate(day)
    path = dbjob.partition_path(ref, "reviews.jsonl")
    dbjob.write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    dbjob.log("wrote %d reviews to %s" % (len(rows), path))
    dbjob.metric("reviews_ingested", len(rows), unit="records", date=day.isoformat())
    return 0


if __name__ == "__main__":
    dbjob.run(configure, execute)
