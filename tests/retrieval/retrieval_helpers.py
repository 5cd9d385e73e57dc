"""Synthetic text for the retrieval tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import random
import re

# -- synthetic text ---------------------------------------------------------------------------

NAMES = ["Adela", "Borin", "Cassius", "Dagny", "Emeric", "Fenna", "Gideon", "Halvard", "Isolde",
         "Jorund", "Katrin", "Leopold", "Marit", "Nikolai", "Orla", "Piet", "Quilla", "Rasmus",
         "Sigrid", "Tobias", "Ulla", "Viggo", "Wilma", "Yannick"]
ADJECTIVES = ["quiet", "narrow", "weathered", "bright", "crooked", "heavy", "silver", "dusty",
              "ancient", "tidy", "rusted", "painted", "hollow", "gentle", "broad", "faded",
              "sturdy", "tangled", "shallow", "crimson", "wooden", "muddy"]
NOUNS = ["lantern", "barrel", "ledger", "bridge", "wagon", "fence", "chimney", "anchor",
         "basket", "carpet", "kettle", "ladder", "saddle", "window", "compass", "bucket",
         "cellar", "hammer", "quilt", "rope", "mill", "orchard", "loom", "canal", "pier",
         "tower", "stable", "furnace", "cart", "well"]
VERBS = ["repaired", "painted", "carried", "counted", "measured", "cleaned", "sold", "borrowed",
         "inspected", "moved", "sketched", "described", "mended", "stacked", "weighed",
         "guarded", "rented", "traded"]
PLACES = ["the northern market", "the old mill", "the river ford", "the customs house",
          "the eastern quay", "the village square", "the chapel yard", "the salt flats",
          "the timber yard", "the ferry landing", "the hillside farm", "the coach inn"]
TIMES = ["at dawn", "before noon", "after supper", "on a rainy Tuesday",
         "during the harvest fair", "in early spring", "late in autumn", "on the longest day"]
TOWNS = ["Arnholt", "Belvik", "Corran", "Dunmere", "Elstow", "Farrowby", "Gellis", "Hartwell",
         "Ivesham", "Jorvik"]

TEMPLATES = [
    "{name} {verb} the {adj} {noun} near {place} {time}.",
    "In {year}, the {noun}s of {town} were {adj} and {adj2}.",
    "The {adj} {noun} at {place} held {n} {noun2}s, according to {name}.",
    "{name} and {name2} {verb} {n} {noun}s in {town} {time}.",
    "Nobody in {town} remembered why the {noun} by {place} was so {adj}.",
    "A {adj} {noun} cost {n} coins at {place}, said {name}.",
    "{name} wrote that the {noun} of {town} was {verb} {time}.",
    "From {place}, one could see the {adj} {noun} of {town} {time}.",
]


def filler_sentences(rng: random.Random, n: int, seen: set[str]) -> list[str]:
    """`n` varied sentences, none in `seen` (which they are added to)."""
    out: list[str] = []
    while len(out) < n:
        s = rng.choice(TEMPLATES).format(
            name=rng.choice(NAMES), name2=rng.choice(NAMES), verb=rng.choice(VERBS),
            adj=rng.choice(ADJECTIVES), adj2=rng.choice(ADJECTIVES), noun=rng.choice(NOUNS),
            noun2=rng.choice(NOUNS), place=rng.choice(PLACES), time=rng.choice(TIMES),
            town=rng.choice(TOWNS), year=rng.randint(1700, 1999), n=rng.randint(2, 999))
        s = s[0].upper() + s[1:]
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def paragraphs(sentences: list[str], per: int = 6) -> str:
    return "\n\n".join(" ".join(sentences[i:i + per]) for i in range(0, len(sentences), per))


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_HEADER = re.compile(r"^\[\d+\] .*$", re.MULTILINE)


def sentences_of(context: str) -> list[str]:
    """The sentences of a packed context, headers removed."""
    body = _HEADER.sub("", context)
    return [s.strip() for s in _SENTENCE.split(body) if s.strip() and not s.startswith("#")]


# Needles: (depth, sentence, question, answer words), none of their words in the filler.
NEEDLES = [
    (0.0, "The secret ingredient in Grandmother Ottoline's plum cake is a spoonful of "
          "cardamom honey.",
     "What is the secret ingredient in Grandmother Ottoline's plum cake?", "cardamom honey"),
    (0.25, "The observatory on Mount Keverel uses a telescope mirror ground from volcanic "
           "obsidian.",
     "What is the telescope mirror of the Mount Keverel observatory made of?", "obsidian"),
    (0.5, "Captain Wrenfield's submarine, the Azure Lantern, dove to a depth of 4,212 metres.",
     "How deep did Captain Wrenfield's submarine dive?", "4,212 metres"),
    (0.75, "The password for the Brightwater archive vault is tangerine-falcon-nine.",
     "What is the password for the Brightwater archive vault?", "tangerine-falcon-nine"),
    (1.0, "Professor Ilsabet Moorcroft found that the glacier beetle hibernates for eleven "
          "years.",
     "How long does the glacier beetle hibernate in Professor Moorcroft's findings?",
     "eleven years"),
]


# Library: five topic documents; each sentence joins a subject, an action and a detail.
TOPICS: dict[str, dict[str, list[str]]] = {
    "lighthouse": {
        "subjects": ["The lighthouse keeper", "The relief keeper", "The harbor authority",
                     "The lamp technician", "The night watch"],
        "actions": ["cleans the lantern glass", "tests the reserve batteries",
                    "checks the rotating lamp", "logs the flash period", "greases the lens drive",
                    "inspects the fog horn", "winds the clockwork", "records the visibility"],
        "details": ["every Friday", "after each storm", "before the beacon is lit",
                    "with a stopwatch", "when the mains power fails", "at the top of the tower",
                    "during the spring tide", "before the supply boat arrives"],
    },
    "bread": {
        "subjects": ["The baker", "The apprentice", "The sourdough starter", "The head baker",
                     "The proofing team"],
        "actions": ["feeds the starter with rye flour", "shapes the loaves",
                    "scores the dough with a razor", "bakes the rolls in the stone oven",
                    "weighs the salt and water", "folds the dough", "checks the crumb",
                    "cools the bread on racks"],
        "details": ["at four in the morning", "before the shop opens", "twice a day",
                    "at a hydration of seventy percent", "in the warm proofing cabinet",
                    "after a long cold retard", "with a steam injection", "for the market stall"],
    },
    "bicycles": {
        "subjects": ["The bike mechanic", "The rental desk", "The city cyclist",
                     "The repair volunteer", "The fleet manager"],
        "actions": ["adjusts the derailleur", "patches the inner tube", "oils the chain",
                    "replaces the brake pads", "trues the wheel", "pumps the tyres",
                    "tightens the headset", "checks the dynamo light"],
        "details": ["before each rental", "at the docking station", "with a torque wrench",
                    "after rain", "every two hundred kilometres", "in the workshop",
                    "for the commuter fleet", "when the bell rattles"],
    },
    "bees": {
        "subjects": ["The beekeeper", "The queen breeder", "The apiary inspector",
                     "The honey extractor team", "The swarm collector"],
        "actions": ["opens the hive", "checks the brood frames", "treats the colony for mites",
                    "adds a honey super", "marks the queen", "smokes the entrance",
                    "feeds sugar syrup", "splits the strong colony"],
        "details": ["in calm weather", "during the clover flow", "with a veil and gloves",
                    "every nine days", "before the heather bloom", "at the orchard apiary",
                    "in the late afternoon", "after the swarm season"],
    },
    "river": {
        "subjects": ["The barge pilot", "The lock keeper", "The river warden", "The ferry crew",
                     "The towpath ranger"],
        "actions": ["opens the sluice gates", "reads the water gauge", "clears weed from the weir",
                    "guides the barge through the lock", "measures the current",
                    "moors the ferry", "dredges the channel", "signals the tug"],
        "details": ["at high water", "after heavy rain", "below the stone bridge",
                    "before the evening convoy", "with a long pole", "near the gravel bar",
                    "during the autumn flood", "at the upper lock"],
    },
}

# name -> (relative path, topic, wrapper); the wrapper turns paragraphs into file content.
LIBRARY_FILES = [
    ("lighthouse.md", "lighthouse"),
    ("bread.txt", "bread"),
    ("bicycles.html", "bicycles"),
    ("notes/bees.md", "bees"),
    ("notes/river.txt", "river"),
]


def topic_sentences(rng: random.Random, topic: str, n: int) -> list[str]:
    t = TOPICS[topic]
    combos = [f"{s} {a} {d}." for s in t["subjects"] for a in t["actions"] for d in t["details"]]
    rng.shuffle(combos)
    return combos[:n]


def _groups(items: list[str], per: int) -> list[list[str]]:
    return [items[i:i + per] for i in range(0, len(items), per)]


def library_text(name: str, topic: str, rng: random.Random, seen: set[str], n: int = 40) -> str:
    """A topic document: paragraphs of `topic` sentences between paragraphs of filler, so
    a topic question finds several separate passages in it."""
    topical = [" ".join(s) for s in _groups(topic_sentences(rng, topic, n), 5)]
    filler = [" ".join(s) for s in _groups(filler_sentences(rng, n, seen), 5)]
    body = "\n\n".join(p for pair in zip(topical, filler, strict=True) for p in pair)
    title = f"{topic.capitalize()} handbook"
    if name.endswith(".md"):
        return f"# {title}\n\n{body}\n"
    if name.endswith(".html"):
        paras = "".join(f"<p>{p}</p>\n" for p in body.split("\n\n"))
        return (f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>\n"
                f"{paras}</main></body></html>\n")
    return f"{title}\n\n{body}\n"
