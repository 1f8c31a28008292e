"""Reads an OpenMetrics exposition on stdin and prints what prometheus_client finds in
it as JSON: {family: {"type", "help", "samples": [[name, labels, value], ...]}}.

The OpenMetrics parser is strict (it refuses a missing `# EOF`, a counter sample
without `_total`, histogram buckets out of order or without `+Inf`, bad escapes); the
Prometheus text parser must read the same text too, as older scrapers would. Either
refusing it exits non-zero with the parser's error. Used by tests/api/metrics.rs.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus_text

text = sys.stdin.read()
families = {}
for family in openmetrics(text):
    families[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [[s.name, s.labels, float(s.value)] for s in family.samples],
    }
names = {family.name for family in prometheus_text(text)}
missing = set(families) - names
if missing:
    sys.exit(f"the Prometheus text parser did not find {sorted(missing)}")
json.dump(families, sys.stdout)
