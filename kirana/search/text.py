"""Words as the index and the shopper see them: normalized tokens, prefixes, one-typo neighbours.

    >>> words("Haldiram's ALOO Bhujiā 200 g")
    ['haldirams', 'aloo', 'bhujia', '200', 'g']
"""

from __future__ import annotations

import re
import unicodedata

# Words shorter than this get no typo tolerance: "dal"/"daal" are told apart by
# the synonym table, not by edit distance, or every short word matches half the shelf.
TYPO_MIN_LEN = 5
# Index words of this length or more by their one-letter deletions, so a query
# word of TYPO_MIN_LEN with one letter too many still finds them.
DELETES_MIN_LEN = TYPO_MIN_LEN - 1
PREFIX_MAX_LEN = 24

_APOSTROPHES = re.compile(r"['’`]")
_SEPARATORS = re.compile(r"[^\w]+|_")


def normalize(text: str) -> str:
    """Case- and diacritic-free text with single spaces: 'Nescafé  Gold' -> 'nescafe gold'."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    # "Haldiram's" is one word to a shopper who types "haldirams".
    bare = _APOSTROPHES.sub("", bare)
    return " ".join(_SEPARATORS.sub(" ", bare).split())


def words(text: str) -> list[str]:
    return normalize(text).split()


def stem(word: str) -> str | None:
    """The singular of a plural English word, when it has an obvious one: 'dals' -> 'dal', 'cookies' -> 'cookie'.

    Indexed beside the word itself, so "dal" also meets "Dals & Pulses" and "biscuit" meets "Biscuits".
    """
    if len(word) <= 3 or not word.endswith("s") or word.endswith("ss") or not word.isalpha():
        return None
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y" if word[-4] not in "aeiou" and word not in _IES_KEEP else word[:-1]
    if word.endswith(("oes", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


# -ies plurals of words that end in -ie.
_IES_KEEP = frozenset({"cookies", "brownies", "pies", "ties"})


def with_stems(words_: list[str]) -> list[str]:
    """`words_` followed by the stems they have that are not already among them."""
    extra = [s for s in (stem(w) for w in words_) if s and s not in words_]
    return words_ + list(dict.fromkeys(extra))


def prefixes(word: str, *, start: int = 1) -> list[str]:
    return [word[:n] for n in range(start, min(len(word), PREFIX_MAX_LEN) + 1)]


def deletes(word: str) -> set[str]:
    """Every string one deletion away from `word` (SymSpell's neighbourhood of distance 1)."""
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def transposes(word: str) -> set[str]:
    return {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)} - {word}


def within_one_typo(a: str, b: str) -> bool:
    """True when `a` and `b` differ by at most one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if la < lb else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))
