"""Which tickers an article is about: provider hints, cashtags, symbols, company names.

A company table (``data/companies.csv``: ``ticker, cik, name, aliases`` with aliases separated
by ``|``; any user table of the same shape by path) drives every rule:

- **provider hint**: the ticker the query was made for (NewsAPI/GDELT per-ticker queries) or
  the filer's CIK (EDGAR) — trusted, the provider already matched it;
- **cashtag**: ``$AAPL`` for a ticker in the table (``$5`` or an unknown tag links nothing);
- **symbol**: the bare symbol as an upper-case word (``IBM``, ``MSFT``), only for symbols of
  two letters or more (``A`` or ``T`` alone would match ordinary text);
- **name**: the legal name (with or without its Inc./Corporation suffix) or an alias as a
  whole word, case-sensitive (``Apple`` the company,
  not ``apple`` the fruit).

Only tickers in the table are ever linked: a linker is a closed universe, so a headline about
a stock we do not follow does not create a lake partition for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

COMPANIES_CSV = Path(__file__).parent / "data" / "companies.csv"
# "Apple Inc." is written "Apple" in most headlines: the name without its legal suffix matches.
_WORD = re.compile(r"\w+")
_SUFFIX = re.compile(r",?\s+(inc\.?|incorporated|corp\.?|corporation|co\.?|company|ltd\.?|"
                     r"limited|plc|n\.v\.|s\.a\.|ag|se|holdings?)$", re.IGNORECASE)


@dataclass
class TickerLinker:
    """Links text to the tickers of a company table (see the module docstring)."""

    companies: pd.DataFrame
    _patterns: list[tuple[str, re.Pattern]] = field(init=False, repr=False)
    _trigger: dict[str, list[int]] = field(init=False, repr=False)
    _by_cik: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        need = {"ticker", "name"}
        if not need <= set(self.companies.columns):
            raise ValueError(f"company table needs columns {sorted(need)}, "
                             f"has {list(self.companies.columns)}")
        self._patterns = []
        self._by_cik = {}
        # Word -> companies whose symbol or a name starts with it: a text is matched against
        # the full patterns of only the companies one of its words can trigger (one pass over
        # the words instead of one regex search per company).
        self._trigger = {}
        for r in self.companies.itertuples(index=False):
            t = str(r.ticker).strip().upper()
            names = [str(r.name), _SUFFIX.sub("", str(r.name))] + [
                a for a in str(getattr(r, "aliases", "") or "").split("|")
                if a.strip() and a.lower() != "nan"]
            alts = [rf"\${re.escape(t)}\b"]
            if len(t) >= 2:
                alts.append(rf"(?<![\w$]){re.escape(t)}\b")
            alts += [rf"\b{re.escape(n.strip())}(?!\w)" for n in names]
            for word in {_WORD.findall(x)[0] for x in [t, *names] if _WORD.findall(x)}:
                self._trigger.setdefault(word, []).append(len(self._patterns))
            self._patterns.append((t, re.compile("|".join(alts))))
            cik = getattr(r, "cik", None)
            if cik is not None and not pd.isna(cik):
                self._by_cik[int(cik)] = t

    @classmethod
    def from_csv(cls, path: Path | str | None = None) -> TickerLinker:
        """The shipped table (default) or a user's CSV of the same columns."""
        return cls(pd.read_csv(path or COMPANIES_CSV, dtype={"cik": "Int64"}))

    @property
    def tickers(self) -> list[str]:
        return [t for t, _ in self._patterns]

    def ticker_for_cik(self, cik: int | str) -> str | None:
        """The table's ticker for an SEC CIK (leading zeros allowed), None if unknown."""
        try:
            return self._by_cik.get(int(cik))
        except (TypeError, ValueError):
            return None

    def cik_for(self, ticker: str) -> int | None:
        return next((c for c, t in self._by_cik.items() if t == ticker.upper()), None)

    def link(self, text: str, hints: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Sorted tickers mentioned in ``text`` plus the ``hints`` that are in the table."""
        found = {h.upper() for h in hints if h and h.upper() in self.tickers}
        text = text or ""
        cands = {i for w in set(_WORD.findall(text)) for i in self._trigger.get(w, ())}
        for i in cands:
            t, pat = self._patterns[i]
            if t not in found and pat.search(text):
                found.add(t)
        return sorted(found)
