"""Sanity check of the neutral quality reference (eval/metrics/ngram.py) on the embedded corpus.

Fits the trigram model on 2,000 of the 2,225 BBC articles (random split, seed 0) and compares
the mean per-word log-prob of the other 225 articles' first 100 words with the same words
shuffled. Prints the fit's size and time and both means (eval/README.md quotes them).

    python scripts/check_ngram_quality.py
"""

import random
import time

import numpy as np

from eval.metrics.ngram import TrigramKN
from stage_io.records import RecordSource, load_records


def main() -> None:
    ds = load_records(RecordSource(source="embedded:bbc_news"))
    rows = [ds[i] for i in range(len(ds))]
    rng = random.Random(0)
    rng.shuffle(rows)
    train, test = rows[:2000], rows[2000:]
    start = time.time()
    model = TrigramKN([r["text"] for r in train])
    print(f"fit in {time.time() - start:.1f} s: {model.describe()}")
    held, shuffled = [], []
    for r in test:
        head = r["text"].split()[:100]
        held.append(model.mean_logprob(" ".join(head)))
        rng.shuffle(head)
        shuffled.append(model.mean_logprob(" ".join(head)))
    held_a, shuffled_a = np.array(held), np.array(shuffled)
    print(
        f"held-out article heads: {held_a.mean():.3f} nats/word; shuffled: {shuffled_a.mean():.3f}; "
        f"held-out above shuffled in {int((held_a > shuffled_a).sum())} of {len(held)}"
    )


if __name__ == "__main__":
    main()
