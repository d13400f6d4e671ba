"""Example MapReduce jobs, each with the plain sequential version it must equal."""
from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[A-Za-z]+")


def words(text: str) -> list[str]:
    """The words of ``text``: runs of letters, lower-cased (as the MIT 6.5840 lab splits)."""
    return [word.lower() for word in _WORD.findall(text)]


def word_count_map(name: str, text: str):
    return ((word, 1) for word in words(text))


def word_count_reduce(word: str, counts: list) -> int:
    return sum(counts)


def word_count(texts: dict[str, str]) -> dict[str, int]:
    """The sequential word count of ``texts`` (name -> text)."""
    return dict(Counter(word for text in texts.values() for word in words(text)))


def inverted_index_map(name: str, text: str):
    return ((word, name) for word in set(words(text)))


def inverted_index_reduce(word: str, names: list) -> list[str]:
    return sorted(set(names))


def inverted_index(texts: dict[str, str]) -> dict[str, list[str]]:
    """The sequential inverted index of ``texts``: word -> sorted names of the texts holding it."""
    index: dict[str, set] = {}
    for name, text in texts.items():
        for word in set(words(text)):
            index.setdefault(word, set()).add(name)
    return {word: sorted(names) for word, names in index.items()}
