"""Convert both pretrained models, check them against their original runtimes, write figures.json."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from tools.pretrained import blazeface, efficientnet_lite0

FIGURES = Path(__file__).resolve().parent / "figures.json"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    only = set(argv) or {"efficientnet-lite0", "blazeface-short"}
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    if "efficientnet-lite0" in only:
        figures["efficientnet-lite0"] = efficientnet_lite0.build()
    if "blazeface-short" in only:
        figures["blazeface-short"] = blazeface.build()
    FIGURES.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
