"""``echobench reproduce``: a seed paper's headline tables re-run as one command.

A spec (:mod:`echobench.reproduce.spec`, ``leaderboards/reproduce/<name>.yaml``) maps published rows to echobench
runs; :mod:`~echobench.reproduce.planning` decides which rows can run and with which settings;
:mod:`~echobench.reproduce.running` plans or runs them; :mod:`~echobench.reproduce.report` writes the side-by-side
table (published | echobench | 95 % CI | published inside the CI?).
"""
