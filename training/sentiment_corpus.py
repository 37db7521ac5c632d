"""Build the project-written financial sentiment corpus (no labelled corpus is reachable here).

``python -m training.sentiment_corpus`` rewrites ``training/data/sentiment/corpus.csv`` and
``second_pass.csv`` from :mod:`training.sentiment_templates`; a test checks the shipped files
equal a fresh build, so the corpus is reproducible from the repo alone.

Splits are by family: every paraphrase of a family is in one split (SPLIT_OF), so a test
sentence never has a near-duplicate in train. The second pass is an independent reader (a plain
polarity word count that knows nothing of the families); every sentence where it disagrees is
written to ``second_pass.csv`` with the adjudication (LABELING.md).
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import sys
from pathlib import Path

import pandas as pd

from training.sentiment_templates import EXPECT_FAMILIES, FAMILIES, NEG, NEU, POS, SLOTS

DATA_DIR = Path(__file__).resolve().parent / "data" / "sentiment"
CORPUS = DATA_DIR / "corpus.csv"
SECOND_PASS = DATA_DIR / "second_pass.csv"
LABELS = (NEG, NEU, POS)
PER_FAMILY = 34  # sentences drawn per family (fewer when its slots allow fewer distinct ones)
PER_EXPECT_FAMILY = 60

# Held-out families: each split has all three labels and hard cases of every kind (negation,
# less-bad, good-not-enough, mixed clauses, expectation numbers) whose siblings train the model.
SPLIT_OF: dict[str, str] = {
    "co_acquisition_pos": "test", "co_negated_good": "test", "earn_less_bad": "test",
    "earn_inline": "test", "guid_cut": "test", "an_pt_cut_still_buy": "test",
    "mac_weak": "test", "mac_neutral": "test", "risk_no_material_change": "test",
    "mdna_offset_pos": "test", "guid_raise_below_consensus": "test", "exp_eps": "test",
    "co_mixed_but_neg": "test",
    "co_lawsuit_neg": "valid", "earn_not_miss": "valid", "an_upgrade": "valid",
    "mdna_neutral": "valid", "mac_good_bad_for_market": "valid", "exp_macro": "valid",
    "co_mixed_but_pos": "valid",
}

# The second reader's word lists (deliberately naive: it shows where a label needs context).
_POS_WORDS = frozenset(re.findall(r"\w+", """beat beats topping ahead record raised raise lifted lifts boosted increased
increase improved improve rose rise rallied rally strong robust won awarded upgraded upgrade
outperform cheered rebounded higher gains growth grew premium jumped cleared easing reduced"""))
_NEG_WORDS = frozenset(re.findall(r"\w+", """miss missed short below fell fall declined decline decreased cut cuts lowered
loss losses weak weaker slumped slid warning warned recalled halting defect fraud lawsuit
damages default doubt impairment downgraded downgrade underperform sell contracted worst fears
feared breach failed lower slowing collapses layoffs laid suspended terminated writedown
disappointed resigned worries"""))


def _fill(template: str, rng: random.Random) -> str:
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    values = {n: rng.choice(SLOTS[n]) for n in names}
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _draw(templates: list[str], n: int, rng: random.Random, make) -> list[tuple[str, str | None]]:
    out: dict[str, str | None] = {}
    for _ in range(n * 40):  # bounded: small families run out of distinct fills
        if len(out) >= n:
            break
        text, label = make(rng.choice(templates), rng)
        out.setdefault(text, label)
    return list(out.items())


def _expect_pair(unit: str, rng: random.Random) -> tuple[str, str, str]:
    """(actual, expected, label): a beat/miss by 3-20% or an exact match (neutral)."""
    kind = rng.choice((NEG, NEU, POS))
    delta = {NEG: -1, NEU: 0, POS: 1}[kind] * rng.uniform(0.03, 0.2)
    if unit == "eps":
        e = rng.randint(40, 400) / 100
        a = round(e * (1 + delta), 2)
        return f"${a:.2f}", f"${e:.2f}", kind
    if unit == "bn":
        e = rng.randint(15, 900) / 10
        a = round(e * (1 + delta), 1)
        return f"${a:.1f} billion", f"${e:.1f} billion", kind
    e = rng.randint(60, 400) * 1000
    a = int(round(e * (1 + delta), -3))
    return f"{a:,}", f"{e:,}", kind


def second_reader(text: str) -> str:
    """Independent label: count polarity words (no negation, no expectations)."""
    words = re.findall(r"[a-z]+", text.lower())
    score = sum(w in _POS_WORDS for w in words) - sum(w in _NEG_WORDS for w in words)
    return POS if score > 0 else NEG if score < 0 else NEU


def build(seed: int = 0) -> pd.DataFrame:
    """The corpus: one row per distinct sentence with its family, topic, hard flag and split."""
    rows = []
    for fam, topic, label, hard, templates in FAMILIES:
        rng = random.Random(f"{seed}:{fam}")
        for text, _ in _draw(templates, PER_FAMILY, rng, lambda t, r: (_fill(t, r), None)):
            rows.append((text, label, fam, topic, hard))
    for fam, topic, unit, templates in EXPECT_FAMILIES:
        rng = random.Random(f"{seed}:{fam}")

        def make(t: str, r: random.Random, unit: str = unit) -> tuple[str, str]:
            a, e, kind = _expect_pair(unit, r)
            return _fill(t.replace("{a}", a).replace("{e}", e), r), kind

        for text, label in _draw(templates, PER_EXPECT_FAMILY, rng, make):
            rows.append((text, label, fam, topic, True))
    df = pd.DataFrame(rows, columns=["text", "label", "family", "topic", "hard"])
    df = df.drop_duplicates("text", keep=False).reset_index(drop=True)  # a text, one label
    df["split"] = df["family"].map(SPLIT_OF).fillna("train")
    df.insert(0, "id", [hashlib.sha1(t.encode()).hexdigest()[:12] for t in df["text"]])
    return df


def second_pass(corpus: pd.DataFrame) -> pd.DataFrame:
    """Rows where the independent reader disagrees, with the adjudication."""
    second = corpus["text"].map(second_reader)
    hard = {f for f, *_ in FAMILIES if _[2]} | {f for f, *_ in EXPECT_FAMILIES}
    out = corpus.loc[second != corpus["label"], ["id", "text", "label", "family"]].copy()
    out.insert(3, "second_label", second[out.index])
    out["resolution"] = [
        "kept: hard-case family, the label follows the expectation/negation rule (LABELING.md)"
        if f in hard else
        "kept: the word lists miss this cue; the family label follows LABELING.md"
        for f in out["family"]
    ]
    return out


def main() -> None:
    """Write corpus.csv and second_pass.csv; print the counts."""
    corpus = build()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    corpus.to_csv(CORPUS, index=False)
    sp = second_pass(corpus)
    sp.to_csv(SECOND_PASS, index=False)
    print(f"{len(corpus)} sentences, {corpus['family'].nunique()} families", file=sys.stderr)
    print(corpus.groupby(["split", "label"]).size().unstack(), file=sys.stderr)
    print(f"second pass disagreements: {len(sp)}", file=sys.stderr)


if __name__ == "__main__":
    main()
