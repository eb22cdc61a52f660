"""Fixed segments of utterances and a seeded schedule of them: distillation at equal compute.

Random crops make a student's training audio depend on its subset's utterance
lengths (one crop per utterance per epoch), and teacher targets cached on whole
utterances, sliced to a crop, carry context the student never sees. Cutting
every utterance once into fixed segments, running the teacher on each segment
alone, and drawing a fixed number of segments per epoch from a seeded stream
makes every student see the same number of examples of the same length, each
with the targets the teacher computed from exactly that audio.
"""

import math

import numpy as np
import torch


def fixed_segments(n_samples, segment_samples, hop):
    """``(start, length)`` of the segments that cover an utterance, in samples.

    An utterance no longer than a segment is one segment, itself. A longer
    one is cut into ``ceil(n_samples / segment_samples)`` segments of
    ``segment_samples`` (rounded down to whole frames of ``hop`` samples),
    spread evenly from its start to its end (neighbours overlap by less than
    a segment), each starting on a frame boundary; fewer when the
    utterance's surplus over one segment is under a frame per extra segment.

    Parameters
    ----------
    n_samples : int
        The utterance's length.
    segment_samples : int
        The segments' length.
    hop : int
        Samples per teacher frame.

    Returns
    -------
    list of (int, int)

    Example
    -------
    >>> fixed_segments(50000, 32000, 320)
    [(0, 32000), (17920, 32000)]
    >>> fixed_segments(20000, 32000, 320)
    [(0, 20000)]
    """
    segment_samples = int(segment_samples) // hop * hop
    if segment_samples <= 0:
        raise ValueError(f"a segment must hold at least one frame of {hop} samples")
    n_samples = int(n_samples)
    if n_samples <= segment_samples:
        return [(0, n_samples)]
    last = (n_samples - segment_samples) // hop  # the last start, in frames
    count = min(math.ceil(n_samples / segment_samples), last + 1)  # distinct starts
    return [(round(i * last / max(count - 1, 1)) * hop, segment_samples) for i in range(count)]


def segment_rows(rows, segment_seconds, hop, sample_rate):
    """The fixed segments of every utterance of a manifest, as manifest rows of their own.

    Parameters
    ----------
    rows : dict
        ``{utt_id: row}`` with ``wav`` and ``duration`` (seconds) in each row.
    segment_seconds : float
        Segment length.
    hop : int
        Samples per teacher frame.
    sample_rate : int
        Samples per second.

    Returns
    -------
    dict
        ``{"<utt_id>@<start>": row}``: the utterance's row with ``utterance``,
        ``start`` and ``stop`` (samples) and the segment's ``duration``.

    Example
    -------
    >>> rows = segment_rows({"a": {"wav": "a.flac", "duration": 3.0}}, 2.0, 320, 16000)
    >>> [(key, row["start"], row["duration"]) for key, row in rows.items()]
    [('a@0', 0, 2.0), ('a@16000', 16000, 2.0)]
    """
    segments = {}
    for utt_id, row in rows.items():
        n_samples = round(float(row["duration"]) * sample_rate)
        for start, length in fixed_segments(n_samples, segment_seconds * sample_rate, hop):
            segments[f"{utt_id}@{start}"] = {**row, "utterance": utt_id, "start": start, "stop": start + length,
                                             "duration": length / sample_rate}
    return segments


class SegmentSchedule(torch.utils.data.Sampler):
    """``examples_per_epoch`` item indices per epoch from a seeded stream of permutations of the items.

    The stream is permutation after permutation of ``range(n_items)``, each
    drawn from ``(seed, its number)``; epoch ``e`` (from 1, as SpeechBrain's
    epoch counter) takes the stream's positions ``[(e - 1) E, e E)``. So an
    epoch may end inside a permutation and the next one go on from there:
    every item is seen equally often up to one, whatever the set's size,
    and a resumed run draws what the interrupted one would have.

    Parameters
    ----------
    n_items : int
        Items of the dataset.
    examples_per_epoch : int
        Items drawn per epoch.
    seed : int
        Seed of the stream.

    Example
    -------
    >>> schedule = SegmentSchedule(3, 4, seed=0)
    >>> schedule.set_epoch(1)
    >>> first = list(schedule)
    >>> len(first), sorted(first[:3])
    (4, [0, 1, 2])
    """

    def __init__(self, n_items, examples_per_epoch, seed):
        if n_items <= 0 or examples_per_epoch <= 0:
            raise ValueError(f"a schedule needs items ({n_items}) and examples per epoch ({examples_per_epoch})")
        self.n_items, self.examples_per_epoch, self.seed = int(n_items), int(examples_per_epoch), int(seed)
        self.epoch = 1

    def set_epoch(self, epoch):
        """Which epoch's indices ``__iter__`` gives (called by ``sb.Brain`` before each epoch)."""
        self.epoch = int(epoch)

    def indices(self, epoch):
        """The item indices of ``epoch``, ``[examples_per_epoch]``."""
        first = (epoch - 1) * self.examples_per_epoch
        last = first + self.examples_per_epoch
        chunks = []
        for number in range(first // self.n_items, (last - 1) // self.n_items + 1):
            permutation = np.random.default_rng([self.seed, number]).permutation(self.n_items)
            offset = number * self.n_items
            chunks.append(permutation[max(first - offset, 0): last - offset])
        return np.concatenate(chunks)

    def __iter__(self):
        return iter(self.indices(self.epoch).tolist())

    def __len__(self):
        return self.examples_per_epoch
