#!/usr/bin/env python3
"""`make test-cost`: the table in docs/cost.md is exactly what `make cost` prints, and
the model's arithmetic holds for hand-checked figures."""

import io
import json
import math
import re
import unittest
from contextlib import redirect_stdout
from pathlib import Path

import cost

ROOT = Path(__file__).resolve().parent.parent


class CostTest(unittest.TestCase):
    def test_docs_show_what_make_cost_prints(self):
        printed = io.StringIO()
        with redirect_stdout(printed):
            cost.main()
        page = (ROOT / "docs" / "cost.md").read_text()
        blocks = re.findall(r"<!-- make cost -->\n```text\n(.*?)```", page, re.S)
        self.assertEqual(len(blocks), 1, "docs/cost.md must hold exactly one `<!-- make cost -->` block")
        self.assertEqual(blocks[0], printed.getvalue(), "docs/cost.md differs from `make cost`")

    def test_no_other_document_keeps_a_copy(self):
        # A second copy of the table elsewhere would go stale unchecked.
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            if path.name != "cost.md":
                self.assertNotIn("<!-- make cost -->", path.read_text(), f"{path.name} keeps a copy of the cost table")

    def test_hand_checked_figures(self):
        inputs = json.loads((ROOT / "scripts" / "cost_inputs.json").read_text())
        c = cost.components(inputs, 1, 0.25)
        # 1M requests x the median rounded up to a whole ms x 0.25 GB x the GB-s price.
        billed_s = math.ceil(inputs["handler_duration_ms_median"]) / 1000
        expected = 1e6 * billed_s * 0.25 * inputs["lambda_price_per_gb_second_arm64"]
        self.assertAlmostEqual(c["Lambda duration"], expected, places=9)
        self.assertAlmostEqual(c["Lambda requests"], 0.20, places=9)
        # 1 req/s: a million evaluations take 1e6 s = 277.8 stream hours at $0.04.
        self.assertAlmostEqual(c["Kinesis stream hours"], 1e6 / 3600 * 0.04, places=6)
        # At 1 req/s every flush carries one event: summary costs what full does.
        self.assertAlmostEqual(c["Kinesis, summary events"], c["Kinesis, full events"], places=9)
        busy = cost.components(inputs, 10_000, 0.25)
        self.assertLess(busy["Kinesis, summary events"], busy["Kinesis, full events"] / 10)
        # Environments = rate × billed Duration: 10,000/s × 1 ms billed (0.82 ms) = 10.
        self.assertEqual(busy["envs"], 10_000 * math.ceil(inputs["handler_duration_ms_median"]) // 1000)

    def test_a_streaming_client_costs_a_month_of_duration(self):
        inputs = json.loads((ROOT / "scripts" / "cost_inputs.json").read_text())
        rows = cost.client_month(inputs, 256)
        # 128 MB for 2,629,800 s at the arm64 GB-s price: about $4.38 a month.
        self.assertAlmostEqual(rows["stream: Lambda duration"], 2_629_800 * 0.125 * 0.0000133334, places=6)
        # One manifest read a second, eventually consistent: 0.5 RRU each.
        self.assertAlmostEqual(rows["stream: manifest reads"], 2_629_800 * 0.5 / 1e6 * 0.125, places=6)
        # Polling every 30 s is ~87,660 requests: far cheaper than the stream.
        self.assertLess(rows["polling every 30 s"] * 50, rows["stream: total"])
        # At the break-even interval, polling costs what the stream does.
        polls = inputs["seconds_per_month"] / rows["_break_even_s"]
        per_poll = rows["polling every 30 s"] / (inputs["seconds_per_month"] / 30)
        self.assertAlmostEqual(polls * per_poll, rows["stream: total"], places=6)

    def test_memory_comes_from_the_template(self):
        self.assertEqual(cost.memory_mb(ROOT / "template.yaml"), 256)


if __name__ == "__main__":
    unittest.main()
