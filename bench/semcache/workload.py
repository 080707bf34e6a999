"""`semcache-local-v1`: a seeded semantic-cache workload with known ground truth.

Classes are (intent, arguments); each has five paraphrases and hard-negative siblings that differ
by one argument: another entity, the opposite polarity, swapped arguments ("X to Y" / "Y to X")
or a number off by one. The stream: 20,000 requests, 25 % one-off prompts (never repeated), the
rest drawn from the classes by a Zipf popularity, each with a uniformly drawn paraphrase. A cached
answer is right when its class id is the request's.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

NAME = "semcache-local-v1"

COUNTRIES = [
    ("France", "Germany"), ("Spain", "Portugal"), ("Italy", "Austria"), ("Norway", "Sweden"),
    ("Finland", "Estonia"), ("Poland", "Czechia"), ("Greece", "Turkey"), ("Peru", "Chile"),
    ("Brazil", "Argentina"), ("Canada", "Mexico"), ("Japan", "South Korea"), ("India", "Nepal"),
    ("Egypt", "Sudan"), ("Kenya", "Uganda"), ("Ireland", "Iceland"), ("Hungary", "Romania"),
    ("Vietnam", "Laos"), ("Colombia", "Ecuador"), ("Morocco", "Algeria"),
    ("Belgium", "Netherlands"),
]  # fmt: skip
UNITS = [
    ("kilometres", "miles"), ("kilograms", "pounds"), ("litres", "gallons"),
    ("metres", "feet"), ("celsius", "fahrenheit"), ("centimetres", "inches"),
    ("hours", "minutes"), ("megabytes", "gigabytes"),
]  # fmt: skip
TECH = [
    "solar power", "nuclear energy", "remote work", "electric cars", "open source software",
    "microservices", "static typing", "vegetarian diets", "public transport", "cloud computing",
    "wind turbines", "online schooling", "cryptocurrency", "social media", "self-driving cars",
    "four-day work weeks", "tiny houses", "standing desks", "e-books", "smart homes",
]  # fmt: skip
LANGS = [("English", "French"), ("German", "Spanish"), ("Italian", "Portuguese")]
WORDS = [
    "house", "river", "friend", "bread", "window", "mountain", "book", "summer", "light",
    "garden", "street", "winter", "apple", "dream", "heart", "water", "night", "forest",
    "money", "school",
]  # fmt: skip
ANIMALS = ["dogs", "cats", "horses", "parrots", "rabbits"]
FOODS = [
    "chocolate", "grapes", "onions", "carrots", "apples", "garlic", "rice", "cheese", "avocado",
    "bananas",
]  # fmt: skip

TEMPLATES = {
    "capital": [
        "What is the capital of {a}?",
        "Which city is the capital of {a}?",
        "Tell me the capital city of {a}.",
        "Name the capital of {a}.",
        "{a}'s capital is which city?",
    ],
    "convert": [
        "Convert {n} {a} to {b}.",
        "How many {b} are in {n} {a}?",
        "What is {n} {a} in {b}?",
        "Please convert {n} {a} into {b}.",
        "{n} {a} to {b}, how much is that?",
    ],
    "arith": [
        "What is {n} {op} {m}?",
        "Compute {n} {op} {m}.",
        "How much is {n} {op} {m}?",
        "Calculate {n} {op} {m} for me.",
        "Tell me the result of {n} {op} {m}.",
    ],
    "pros": [
        "What are the {pol} of {a}?",
        "List the {pol} of {a}.",
        "Give me the main {pol} of {a}.",
        "Tell me about the {pol} of {a}.",
        "Summarise the {pol} of {a}.",
    ],
    "translate": [
        "Translate the word '{w}' from {a} to {b}.",
        "How do you say '{w}' in {b} if it is {a}?",
        "What is the {b} for the {a} word '{w}'?",
        "Give the {b} translation of the {a} word '{w}'.",
        "'{w}' from {a} into {b}, please.",
    ],
    "safe": [
        "Is it safe to feed {f} to {x}?",
        "Can {x} eat {f} safely?",
        "Should I give {f} to my {x}?",
        "Are {f} safe for {x}?",
        "Is {f} okay for {x} to eat?",
    ],
}
POLARITY = {"pros": ("advantages", "disadvantages")}


@dataclass(frozen=True)
class Request:
    text: str
    cls: int  # ground truth: the class whose answer is right
    family: str  # intent, or "oneoff"


def classes() -> list[tuple[str, dict]]:
    """Every class: (intent, arguments). Siblings (one argument changed) are classes too."""
    out: list[tuple[str, dict]] = []
    for a, b in COUNTRIES:
        out += [("capital", {"a": a}), ("capital", {"a": b})]
    for (a, b), n in itertools.product(UNITS, range(1, 21)):
        out += [("convert", {"a": a, "b": b, "n": n}), ("convert", {"a": b, "b": a, "n": n})]
    for n, m in itertools.product(range(2, 22), range(2, 22)):
        out.append(("arith", {"n": n, "m": m, "op": "minus"}))  # "5 minus 3" != "3 minus 5"
        if n <= m:  # "3 plus 5" == "5 plus 3": one class, written one way
            out.append(("arith", {"n": n, "m": m, "op": "plus"}))
    for a, pol in itertools.product(TECH, POLARITY["pros"]):
        out.append(("pros", {"a": a, "pol": pol}))
    for (a, b), w in itertools.product(LANGS, WORDS):
        out += [("translate", {"a": a, "b": b, "w": w}), ("translate", {"a": b, "b": a, "w": w})]
    for x, f in itertools.product(ANIMALS, FOODS):
        out.append(("safe", {"x": x, "f": f}))
    return out


def oneoff(rng: random.Random, i: int) -> str:
    a, b = rng.sample(WORDS + FOODS + [t for t, _ in COUNTRIES], 2)
    form = rng.choice(
        [
            "Write a short poem about {a} and {b} (draft {i}).",
            "Invent a story where {a} meets {b}, version {i}.",
            "Describe a painting of {a} beside {b}, number {i}.",
        ]
    )
    return form.format(a=a, b=b, i=i)


def generate(seed: int, requests: int = 20_000, oneoff_share: float = 0.25, zipf_s: float = 1.0):
    """(requests, number of classes). One-off prompts get class ids past the real classes."""
    rng = random.Random(seed)
    table = classes()
    order = list(range(len(table)))
    rng.shuffle(order)  # which classes are popular depends on the seed
    cum = list(itertools.accumulate(1.0 / (rank + 1) ** zipf_s for rank in range(len(order))))
    out: list[Request] = []
    for i in range(requests):
        if rng.random() < oneoff_share:
            out.append(Request(oneoff(rng, i), len(table) + i, "oneoff"))
            continue
        cls = rng.choices(order, cum_weights=cum)[0]
        family, args = table[cls]
        out.append(Request(rng.choice(TEMPLATES[family]).format(**args), cls, family))
    return out, len(table)
