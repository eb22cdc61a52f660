"""ASR probe outputs made for tests: ``wer_<split>.txt`` files written by SpeechBrain's own error statistics."""

import random

from tasks.asr_probe import error_rate_stats

WORDS = ["THE", "CAT", "SAT", "ON", "A", "MAT", "DOG", "RAN"]


def fake_references(n_utterances, seed=0):
    """``{ID: words}`` of random sentences."""
    rng = random.Random(seed)
    return {f"utt{k:03d}": rng.choices(WORDS, k=rng.randint(3, 9)) for k in range(n_utterances)}


def noisy(words, rng, rate):
    """Each word kept, dropped or garbled with the given error rate."""
    out = []
    for word in words:
        roll = rng.random()
        if roll < rate / 2:
            continue
        out.append(word[::-1] + "X" if roll < rate else word)
    return out


def write_run(folder, references, rate, seed, split="test"):
    """``folder/wer_<split>.txt`` of hypotheses with about ``rate`` errors; returns SpeechBrain's WER and CER."""
    rng = random.Random(seed)
    ids = sorted(references)
    hypotheses = [noisy(references[i], rng, rate) for i in ids]
    stats = error_rate_stats()
    for kind_stats in stats.values():
        kind_stats.append(ids, hypotheses, [references[i] for i in ids])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"wer_{split}.txt", "w") as handle:
        stats["WER"].write_stats(handle)
    return {kind: s.summarize("error_rate") for kind, s in stats.items()}
