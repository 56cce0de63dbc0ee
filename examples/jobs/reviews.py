"""reviews.py - partition refs of the example pipeline (shared by its jobs).

  raw/reviews/date=YYYY-MM-DD              ingest_reviews.py: a day of reviews (JSONL)
  agg/category=C/date=YYYY-MM-DD           aggregate_category.py: one category's day
  report/week=YYYY-Www                     weekly_report.py: 7 days x every category
"""
import datetime
import re

from dbjob import ConfigError

CATEGORIES = ("books", "electronics", "garden", "toys")

DATE_RE = r"(\d{4}-\d{2}-\d{2})"
RAW_RE = re.compile(r"raw/reviews/date=" + DATE_RE)
AGG_RE = re.compile(r"agg/category=([a-z_]+)/date=" + DATE_RE)
REPORT_RE = re.compile(r"report/week=(\d{4})-W(\d{2})")


def parse_date(text, ref):
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ConfigError("%s: %s is not a calendar date" % (ref, text))


def raw_ref(day):
    return "raw/reviews/date=%s" % day.isoformat()


def agg_ref(category, day):
    return "agg/category=%s/date=%s" % (category, day.isoformat())


def report_ref(year, week):
    return "report/week=%04d-W%02d" % (year, week)


def parse_raw(ref):
    m = RAW_RE.fullmatch(ref)
    if not m:
        raise ConfigError("%s is not a raw/reviews/date=YYYY-MM-DD ref" % ref)
    return parse_date(m.group(1), ref)


def parse_agg(ref):
    m = AGG_RE.fullmatch(ref)
    if not m:
        raise ConfigError("%s is not an agg/category=C/date=YYYY-MM-DD ref" % ref)
    if m.group(1) not in CATEGORIES:
        raise ConfigError("%s: unknown category %r (known: %s)" % (ref, m.group(1), ", ".join(CATEGORIES)))
    return m.group(1), parse_date(m.group(2), ref)


def parse_week(ref):
    """report/week=YYYY-Www -> (year, week, [7 dates, Monday first])."""
    m = REPORT_RE.fullmatch(ref)
    if not m:
        raise ConfigError("%s is not a report/week=YYYY-Www ref" % ref)
    year, week = int(m.group(1)), int(m.group(2))
    try:
        monday = datetime.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ConfigError("%s: %d has no ISO week %d" % (ref, year, week))
    return year, week, [monday + datetime.timedelta(days=i) for i in range(7)]
