"""Dataset builders: debtags from Debian index files (an excerpt written here) and BBC News."""

import gzip
import hashlib
import json
import lzma
from collections import Counter

from septet.textclass.datasets.bbc_news import bbc_news_split, load_bbc_news
from septet.textclass.datasets.debtags import build_debtags, parse_tags, split_of
from septet.textclass.taxonomy import Taxonomy

# An excerpt in the format of bookworm's main/binary-amd64/Packages (fields trimmed).
PACKAGES = """\
Package: 0ad
Version: 0.0.26-3
Installed-Size: 28591
Maintainer: Debian Games Team <pkg-games-devel@lists.alioth.debian.org>
Architecture: amd64
Depends: 0ad-data (>= 0.0.26), libc6 (>= 2.34)
Description: Real-time strategy game of ancient warfare
Homepage: https://play0ad.com/
Description-md5: d943033bedada21853d2ae54a2578a7b
Tag: game::strategy, interface::graphical, interface::x11, role::program,
 uitoolkit::sdl, uitoolkit::wxwidgets, use::gameplaying,
 x11::application
Section: games

Package: 0ad-data
Source: 0ad-data (0.0.26-1)
Architecture: all
Description: Real-time strategy game of ancient warfare (data files)
Description-md5: 26581e685027d5ae84824362a4ba59ee
Tag: role::app-data
Section: games

Package: untagged-tool
Architecture: amd64
Description: A tool without debtags
Description-md5: 00000000000000000000000000000000

Package: vim-gtk3
Source: vim
Architecture: amd64
Description: Vi IMproved - enhanced vi editor - with GTK3 GUI
Description-md5: 5c5a4a9c5cbb5bbd8b5d4d1d2e1c2b31
Tag: devel::editor, interface::{graphical,x11}, role::program, use::editing
"""

TRANSLATION = """\
Package: 0ad
Description-md5: d943033bedada21853d2ae54a2578a7b
Description-en: Real-time strategy game of ancient warfare
 0 A.D. (pronounced "zero ey-dee") is a free, open-source, cross-platform
 real-time strategy (RTS) game of ancient warfare.

Package: 0ad-data
Description-md5: 26581e685027d5ae84824362a4ba59ee
Description-en: Real-time strategy game of ancient warfare (data files)
 0 A.D. is a real-time strategy (RTS) game of ancient warfare.
 .
 This package contains the main data files required by 0 A.D.

Package: vim-gtk3
Description-md5: 5c5a4a9c5cbb5bbd8b5d4d1d2e1c2b31
Description-en: Vi IMproved - enhanced vi editor - with GTK3 GUI
 Vim is an almost compatible version of the UNIX editor Vi.
"""


def read_split(path):
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_builds_the_corpus_from_packages_and_translations(tmp_path):
    packages = tmp_path / "Packages.xz"
    packages.write_bytes(lzma.compress(PACKAGES.encode()))
    translation = tmp_path / "Translation-en"
    translation.write_text(TRANSLATION)
    counts = build_debtags([packages], [translation], tmp_path / "out")
    assert sum(counts.values()) == 3  # the untagged package is left out
    records = {
        r["id"]: (split, r)
        for split in ("train", "dev", "test")
        for r in read_split(tmp_path / "out" / f"{split}.jsonl.gz")
    }
    split, zero_ad = records["0ad"]
    assert zero_ad["source"] == "0ad" and split == split_of("0ad")
    assert zero_ad["labels"][0] == "game::strategy" and "x11::application" in zero_ad["labels"]
    assert zero_ad["text"].startswith("Real-time strategy game of ancient warfare\n0 A.D.")
    assert records["0ad-data"][1]["text"].endswith(
        "warfare.\n\nThis package contains the main data files required by 0 A.D."
    )
    assert records["vim-gtk3"][1]["source"] == "vim"  # split by source, not binary
    assert records["vim-gtk3"][1]["labels"] == [
        "devel::editor",
        "interface::graphical",
        "interface::x11",
        "role::program",
        "use::editing",
    ]
    taxonomy = Taxonomy.read_tsv(tmp_path / "out" / "taxonomy.tsv")
    assert taxonomy.ancestors("uitoolkit::sdl") == ["uitoolkit"]
    assert taxonomy.level("game") == 1


def test_split_rule_is_sha256_of_source():
    bucket = int(hashlib.sha256(b"vim").hexdigest(), 16) % 10
    assert split_of("vim") == ("train" if bucket < 8 else "dev" if bucket == 8 else "test")
    assert parse_tags("a::{b,c}, d::e") == ["a::b", "a::c", "d::e"]


def test_bbc_news_has_2225_articles_in_5_classes():
    texts, labels = load_bbc_news()
    assert len(texts) == 2225
    assert Counter(labels) == {
        "business": 510,
        "entertainment": 386,
        "politics": 417,
        "sport": 511,
        "tech": 401,
    }
    (train, _), (test, _) = bbc_news_split()
    assert len(train) + len(test) == 2225 and 350 < len(test) < 550
    assert not set(train) & set(test)  # repeated articles stay on one side
