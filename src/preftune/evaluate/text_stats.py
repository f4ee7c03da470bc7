"""Cheap statistics of a set of responses that show reward hacking a gold score hides:
length, truncation, repetition and diversity."""

from __future__ import annotations


def _words(text: str) -> list[str]:
    return text.lower().split()


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def has_repeated_ngram(text: str, n: int = 3) -> bool:
    grams = _ngrams(_words(text), n)
    return len(set(grams)) < len(grams)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams across `texts` (Li et al. 2016); 0 when none."""
    grams = [g for text in texts for g in _ngrams(_words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def length_unit(*row_sets: list[dict]) -> str:
    """ "tokens" when the sampler recorded token counts for every row, else "words"."""
    return "tokens" if all("num_tokens" in r for rows in row_sets for r in rows) else "words"


def response_length(row: dict, unit: str) -> float:
    return float(row["num_tokens"]) if unit == "tokens" else float(len(_words(row["response"])))


def text_stats(rows: list[dict]) -> dict:
    """Mean length, share ending with EOS, share with a repeated word trigram, distinct-1/2."""
    if not rows:
        return {}
    texts = [row["response"] for row in rows]
    unit = length_unit(rows)
    stats = {
        "n": len(rows),
        "mean_length": sum(response_length(r, unit) for r in rows) / len(rows),
        "length_unit": unit,
        "repeated_trigram_share": sum(map(has_repeated_ngram, texts)) / len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
    }
    if all("finish_reason" in r for r in rows):
        stats["eos_share"] = sum(r["finish_reason"] == "eos" for r in rows) / len(rows)
    return stats
