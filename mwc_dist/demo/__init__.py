"""``mwc demo`` and ``mwc demo-data``: the product end to end on real speech, apart from the library (nothing in
``mwc_dist`` outside this folder imports it; the CLI and the tests do).

- ``corpus.py``: the espeak-ng speech corpus in all seven formats (the seeded grammar, voices, splits)
- ``quotes.py``: the natural Spanish text (fortunes-es quotes), split by topic into in- and out-of-domain
- ``recordings.py``: out-of-domain clips joined into long recordings with their true times (the long-form test)
- ``pipeline.py``: the demo's steps, each a call into the library (``Demo``)
- ``paths.py``: where each step writes under the output folder, the one list the pipeline and the report share
- ``report.py``, ``report_longform.py``, ``report_deploy.py``: REPORT.md, every number checked against its
  predictions file
"""
