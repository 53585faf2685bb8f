"""Write ``leaderboards/published/<paper>.csv`` from the checked transcription of the seed papers' tables.

    python scripts/normalise_published.py PATH/TO/published.csv

Units are normalised by the explicit rules in ``echobench.published``; each row keeps the printed metric, value,
dataset, task, protocol and source (paper file and table), and states its metric ``definition`` (which class a
printed F1, precision or recall scores, or a macro average; ``echobench.published.PAPER_DEFINITIONS``), its
``metric`` being the echobench metric of that definition. Run it from the repository root after changing those
rules; ``read_rows`` refuses files written before or under other rules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from echobench.published import normalise_file, write_rows

OUT = Path(__file__).resolve().parent.parent / "leaderboards" / "published"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the transcription CSV (method,dataset,protocol,task,metric,...)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for paper, rows in normalise_file(args.source).items():
        write_rows(OUT / f"{paper}.csv", rows)
        print(f"{OUT / paper}.csv: {len(rows)} rows")


if __name__ == "__main__":
    main()
