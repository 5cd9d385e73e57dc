"""A small corpus for the evaluation tests: eight documents on distinct subjects, each a few
hundred tokens of distinct sentences, written as text files."""

from __future__ import annotations

from pathlib import Path

SUBJECTS = {
    "lighthouse": ("keeper", "lamp", "lens", "gallery", "foghorn", "reef", "tower", "beacon"),
    "orchard": ("grower", "pear", "blossom", "graft", "ladder", "cider", "frost", "hedgerow"),
    "glacier": ("surveyor", "crevasse", "moraine", "ice core", "meltwater", "serac", "firn",
                "snout"),
    "bakery": ("baker", "sourdough", "oven", "rye flour", "crust", "proving basket", "loaf",
               "starter"),
    "observatory": ("astronomer", "telescope", "dome", "nebula", "eyepiece", "comet",
                    "meridian", "plate camera"),
    "shipyard": ("shipwright", "keel", "rivet", "slipway", "hull", "crane", "caulking",
                 "launch"),
    "apiary": ("beekeeper", "hive", "queen", "honeycomb", "smoker", "swarm", "pollen",
               "heather honey"),
    "vineyard": ("vintner", "grape", "cellar", "barrel", "harvest", "trellis", "press",
                 "tannin"),
}
_FRAMES = (
    "Every spring the {0} inspected the {1} before the first visitors arrived.",
    "A record from the old archive describes how the {2} was replaced after a storm.",
    "Local children still tell stories about the {3} and the strange lights near it.",
    "The {0} wrote careful notes about the {4} in a leather notebook each evening.",
    "Nobody remembers exactly when the {5} was first mentioned in the parish accounts.",
    "During the long winter the {6} needed attention almost every single morning.",
    "Visitors are often surprised by how quiet the {7} becomes after sunset.",
    "The museum keeps a faded photograph of the {1} taken by a travelling painter.",
    "Repairs to the {4} were paid for by a collection among the neighbouring farms.",
    "An apprentice once spent a whole summer learning to look after the {2}.",
    "The regional newspaper printed a long article about the {3} in its autumn issue.",
    "Some of the tools used around the {6} are older than the village church.",
)


def subject_text(subject: str) -> str:
    words = SUBJECTS[subject]
    body = " ".join(frame.format(*words) for frame in _FRAMES)
    return f"{subject.title()} notes\n\n{body}\n"


def write_eval_corpus(root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for subject in SUBJECTS:
        path = root / f"{subject}.txt"
        path.write_text(subject_text(subject), encoding="utf-8")
        paths.append(path)
    return paths


_SYLLABLES = ("zor", "vex", "quen", "tal", "brin", "nock", "mar", "dul", "fen", "wick",
              "osk", "pra", "lum", "gav", "tir", "sel", "kob", "ria", "dax", "hul")
_LEDGER = (
    "The crate marked {0} was loaded onto the barge {1} beside the {2} warehouse.",
    "A clerk named {0} counted the sacks from {1} and sent them on to {2}.",
    "The ledger shows that {0} paid for the shipment of {1} with coins from {2}.",
    "Porters carried the {0} barrels past the {1} gate towards the {2} quay.",
)


def nonsense_words(n: int) -> list[str]:
    """`n` distinct made-up words (no embedding model has seen them)."""
    words: list[str] = []
    for a in _SYLLABLES:
        for b in _SYLLABLES:
            for c in _SYLLABLES:
                if len(words) == n:
                    return words
                if len({a, b, c}) == 3:
                    words.append((a + b + c).capitalize())
    return words


def write_keyword_corpus(root: Path, documents: int = 8, sentences: int = 12) -> list[Path]:
    """Ledger pages whose sentences differ only in made-up names: keyword search tells them
    apart, a dense embedding barely does."""
    root.mkdir(parents=True, exist_ok=True)
    words = iter(nonsense_words(documents * sentences * 3))
    paths = []
    for d in range(documents):
        body = " ".join(_LEDGER[s % len(_LEDGER)].format(next(words), next(words), next(words))
                        for s in range(sentences))
        path = root / f"ledger-{d:02d}.txt"
        path.write_text(f"Harbour ledger page {d + 1}\n\n{body}\n", encoding="utf-8")
        paths.append(path)
    return paths
