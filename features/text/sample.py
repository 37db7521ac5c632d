"""The shipped sample news file: SYNTHETIC headlines, generated here, reproducibly.

``data/sample_news.csv`` is not real news. Headlines come from the hand-written templates
below (positive, neutral and negative phrasings of company news), filled with the company
names of ``data/companies.csv`` for AAPL, MSFT, IBM and GOOG, and stamped with seeded random
publication times between 2012-09-04 and 2013-02-28 (inside the packaged bokeh price history),
about a fifth of them after the 16:00 New York close or on a weekend, so the cut-off rule is
exercised. Every URL is under ``example.invalid`` and every source reads "SYNTHETIC sample".
Regenerate with ``python -m features.text.sample``; ``tests/unit/test_text_sources.py``
checks the shipped file equals the generator's output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.text.fetch import SAMPLE_NEWS

_COMPANIES = {"AAPL": "Apple", "MSFT": "Microsoft", "IBM": "IBM", "GOOG": "Google"}
_TEMPLATES = {
    "positive": [
        "{c} beats quarterly earnings estimates and raises full-year guidance",
        "{c} shares rally after strong demand lifts revenue to a record",
        "Analysts upgrade {c} to buy on improving margins",
        "{c} wins a large multi-year contract, boosting its outlook",
        "{c} announces a bigger buyback and a higher dividend",
    ],
    "neutral": [
        "{c} to hold its annual shareholder meeting next month",
        "{c} names a new head of investor relations",
        "{c} schedules its quarterly earnings call",
        "{c} opens a new office as planned",
        "{c} files routine paperwork with regulators",
    ],
    "negative": [
        "{c} misses revenue estimates and cuts its outlook",
        "{c} shares slide as a key product launch is delayed",
        "Analysts downgrade {c} on weakening demand",
        "{c} faces a regulatory probe over its business practices",
        "{c} warns of lower margins amid rising costs",
    ],
}


def generate(n: int = 240, seed: int = 12) -> pd.DataFrame:
    """The sample as a frame (columns ``ts, ticker, headline, body, url, source``)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2012-09-04", "2013-02-28")
    tickers = list(_COMPANIES)
    classes = list(_TEMPLATES)
    rows = []
    for i in range(n):
        t = tickers[i % len(tickers)]
        # A ticker's tone drifts in regimes so the trailing baseline has something to track.
        regime = (i // 40) % 3
        weights = [[0.5, 0.3, 0.2], [0.25, 0.5, 0.25], [0.2, 0.3, 0.5]][regime]
        cls = classes[int(rng.choice(3, p=weights))]
        tpl = _TEMPLATES[cls][int(rng.integers(len(_TEMPLATES[cls])))]
        day = days[int(rng.integers(len(days)))]
        if rng.random() < 0.1:
            day = day + pd.Timedelta(days=5 - day.dayofweek)  # a Saturday
        minute = int(rng.integers(6 * 60, 21 * 60))  # 06:00..21:00 New York
        ts = (day + pd.Timedelta(minutes=minute)).tz_localize("America/New_York")
        rows.append({"ts": ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"), "ticker": t,
                     "headline": tpl.format(c=_COMPANIES[t]),
                     "body": f"SYNTHETIC sample record {i} ({cls} template); not real news.",
                     "url": f"https://example.invalid/stockray-sample/{i}",
                     "source": "SYNTHETIC sample (stockray)"})
    return pd.DataFrame(rows).sort_values(["ts", "url"]).reset_index(drop=True)


if __name__ == "__main__":
    SAMPLE_NEWS.parent.mkdir(parents=True, exist_ok=True)
    generate().to_csv(SAMPLE_NEWS, index=False)
    print(f"wrote {SAMPLE_NEWS}")
