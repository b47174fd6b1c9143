"""Rebuild the small debtags samples the fine-tuning tests use (run from the repository root):

    python tests/transformers/data/sample_debtags.py /work/shared/data/debtags

Real Debian package descriptions (summary line + the start of the long description) from the
frozen debtags split, with their ``role::`` tags: the first packages in file order whose roles
fit each task, a fixed number per class, so the output is the same on every run.
"""

import gzip
import json
import sys
from pathlib import Path

SINGLE = ["role::program", "role::shared-lib", "role::documentation"]
MULTI = ["role::program", "role::devel-lib", "role::plugin"]


def first_by_roles(path: Path, wanted: dict[tuple[str, ...], int]) -> list[dict]:
    taken = dict.fromkeys(wanted, 0)
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            roles = tuple(sorted(label for label in row["labels"] if label.startswith("role::")))
            if roles in taken and taken[roles] < wanted[roles]:
                taken[roles] += 1
                text = row["text"][:280].rsplit(" ", 1)[0]
                rows.append({"id": row["id"], "text": text, "roles": list(roles)})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main(source: Path) -> None:
    here = Path(__file__).parent
    for split, per_class in (("train", 14), ("dev", 6)):
        single = first_by_roles(source / f"{split}.jsonl.gz", {(r,): per_class for r in SINGLE})
        write(
            here / f"debtags_roles_{split}.jsonl",
            [{"id": r["id"], "text": r["text"], "label": r["roles"][0]} for r in single],
        )
        combos = {(r,): per_class for r in MULTI}
        combos[("role::devel-lib", "role::program")] = per_class
        combos[("role::plugin", "role::program")] = per_class
        multi = first_by_roles(source / f"{split}.jsonl.gz", combos)
        write(
            here / f"debtags_multirole_{split}.jsonl",
            [{"id": r["id"], "text": r["text"], "labels": r["roles"]} for r in multi],
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
