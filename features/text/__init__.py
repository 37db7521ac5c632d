"""Text sources -> the lake's ``news`` table -> point-in-time daily text features.

``records``: the news table (schema, validation with quarantine, dedupe, atomic lake writes);
``linking``: tickers from provider hints, cashtags, symbols and company names
(``data/companies.csv``); ``adapters`` (NewsAPI, GDELT DOC 2.0, RSS/Atom, a local file) and
``edgar`` (SEC submissions + filing documents): each provider's wire format into raw records,
over the shared ``features.providers.http`` client; ``fetch``: ``stockray news fetch``;
``scoring``: the scorer protocol and ``stockray news score``; ``daily``: per (ticker, session)
features with the after-the-close rule, and the ``sentiment_shock`` event rule; ``views``: the
Feast view and opt-in service; ``build``: ``stockray news features``; ``fill``: the one rule
for days without text, shared by training and serving; ``sample``: the generator of the
shipped SYNTHETIC sample news.

May import: ``features``. No Ray, no training, no serving (a scorer comes in as an object).
"""
