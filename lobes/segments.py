"""Fixed segments of utterances and a seeded schedule of them: distillation at equal compute.

Random crops make a student's training audio depend on its subset's utterance
lengths (one crop per utterance per epoch), and teacher targets cached on whole
utterances, sliced to a crop, carry context the student never sees. Cutting
every utterance once into fixed segments, running the teacher on each segment
alone, and drawing a fixed number of segments per epoch from a seeded stream
makes every student see examples of the same length, each with the targets the
teacher computed from exactly that audio.

The segments of an utterance do not overlap, so no audio is drawn twice as two
near-copies, and the schedule draws each segment in proportion to its seconds,
so every second of a subset's audio is equally likely to be drawn, whatever
its utterances' lengths. The audio an example holds is then the segment length
but for the short pieces (utterances shorter than a segment and their kept
tails): ``sum(d ** 2) / sum(d)`` seconds in expectation over segments of
``d`` seconds.
"""

import numpy as np
import torch

MIN_TAIL = 0.5  # the end of an utterance shorter than this fraction of a segment is left out


def fixed_segments(n_samples, segment_samples, hop, min_tail=MIN_TAIL):
    """``(start, length)`` of the segments that cut an utterance, in samples.

    An utterance no longer than a segment is one segment, itself. A longer one
    is cut from its start into back-to-back segments of ``segment_samples``
    (rounded down to whole frames of ``hop`` samples, so every segment starts on
    a frame boundary); the rest at its end is one shorter segment when it holds
    ``min_tail`` of a segment or more, and is left out otherwise. Segments never
    overlap.

    Parameters
    ----------
    n_samples : int
        The utterance's length.
    segment_samples : int
        The segments' length.
    hop : int
        Samples per teacher frame.
    min_tail : float
        The shortest end piece kept, as a fraction of a segment (in ``[0, 1]``).

    Returns
    -------
    list of (int, int)

    Example
    -------
    >>> fixed_segments(50000, 32000, 320)
    [(0, 32000), (32000, 18000)]
    >>> fixed_segments(40000, 32000, 320)
    [(0, 32000)]
    >>> fixed_segments(20000, 32000, 320)
    [(0, 20000)]
    """
    segment_samples = int(segment_samples) // hop * hop
    if segment_samples <= 0:
        raise ValueError(f"a segment must hold at least one frame of {hop} samples")
    if not 0 <= min_tail <= 1:
        raise ValueError(f"min_tail is a fraction of a segment, in [0, 1]; got {min_tail}")
    n_samples = int(n_samples)
    if n_samples <= segment_samples:
        return [(0, n_samples)]
    whole, tail = divmod(n_samples, segment_samples)
    segments = [(i * segment_samples, segment_samples) for i in range(whole)]
    if tail and tail >= min_tail * segment_samples:
        segments.append((whole * segment_samples, tail))
    return segments


def segment_rows(rows, segment_seconds, hop, sample_rate, min_tail=MIN_TAIL):
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
    min_tail : float
        The shortest end piece kept, as a fraction of a segment (:func:`fixed_segments`).

    Returns
    -------
    dict
        ``{"<utt_id>@<start>": row}``: the utterance's row with ``utterance``,
        ``start`` and ``stop`` (samples) and the segment's ``duration``.

    Example
    -------
    >>> rows = segment_rows({"a": {"wav": "a.flac", "duration": 5.0}}, 2.0, 320, 16000)
    >>> [(key, row["start"], row["duration"]) for key, row in rows.items()]
    [('a@0', 0, 2.0), ('a@32000', 32000, 2.0), ('a@64000', 64000, 1.0)]
    """
    segments = {}
    for utt_id, row in rows.items():
        n_samples = round(float(row["duration"]) * sample_rate)
        for start, length in fixed_segments(n_samples, segment_seconds * sample_rate, hop, min_tail):
            segments[f"{utt_id}@{start}"] = {**row, "utterance": utt_id, "start": start, "stop": start + length,
                                             "duration": length / sample_rate}
    return segments


class SegmentSchedule(torch.utils.data.Sampler):
    """``examples_per_epoch`` item indices per epoch from a seeded stream of passes over the items.

    A pass lays the items end to end in a seeded random order, each as long as
    its duration (1 without ``durations``), and takes the items under ``m``
    evenly spaced points from a seeded random offset, ``m = floor(total /
    longest)`` (systematic sampling): an item is in a pass at most once, with
    probability ``duration * m / total``, so draws follow audio seconds, and
    a pass holds exactly ``m`` items, in the pass's order. The stream is pass
    after pass, each drawn from ``(seed, its number)``; epoch ``e`` (from 1,
    as SpeechBrain's epoch counter) takes the stream's positions
    ``[(e - 1) E, e E)``. So an epoch may end inside a pass and the next one
    go on from there, and a resumed run draws what the interrupted one would
    have. With equal durations a pass is a permutation of every item: each is
    seen equally often up to one.

    Parameters
    ----------
    n_items : int
        Items of the dataset.
    examples_per_epoch : int
        Items drawn per epoch.
    seed : int
        Seed of the stream.
    durations : sequence of float, optional
        Each item's duration (seconds, in dataset order); ``None``: all equal.

    Example
    -------
    >>> schedule = SegmentSchedule(3, 4, seed=0)
    >>> schedule.set_epoch(1)
    >>> first = list(schedule)
    >>> len(first), sorted(first[:3])
    (4, [0, 1, 2])
    >>> weighted = SegmentSchedule(3, 4, seed=0, durations=[2.0, 2.0, 1.0])
    >>> weighted.per_pass, len(weighted.indices(1))
    (2, 4)
    """

    def __init__(self, n_items, examples_per_epoch, seed, durations=None):
        if n_items <= 0 or examples_per_epoch <= 0:
            raise ValueError(f"a schedule needs items ({n_items}) and examples per epoch ({examples_per_epoch})")
        self.n_items, self.examples_per_epoch, self.seed = int(n_items), int(examples_per_epoch), int(seed)
        self.durations = np.ones(self.n_items) if durations is None else np.asarray(durations, dtype=float)
        if self.durations.shape != (self.n_items,):
            raise ValueError(f"durations: {self.durations.size} given for {self.n_items} items")
        if not (np.isfinite(self.durations).all() and (self.durations > 0).all()):
            raise ValueError("durations: every item needs a positive, finite duration")
        self.total = float(self.durations.sum())
        # the 1e-9 keeps a total that is a whole number of longest items from rounding one short
        self.per_pass = max(1, int(np.floor(self.total / self.durations.max() * (1 + 1e-9))))
        self.epoch = 1

    def set_epoch(self, epoch):
        """Which epoch's indices ``__iter__`` gives (called by ``sb.Brain`` before each epoch)."""
        self.epoch = int(epoch)

    def draw_pass(self, number):
        """The ``per_pass`` item indices of pass ``number`` (from 0), in their order."""
        rng = np.random.default_rng([self.seed, number])
        order = rng.permutation(self.n_items)
        spacing = self.total / self.per_pass
        points = (rng.random() + np.arange(self.per_pass)) * spacing
        ends = np.cumsum(self.durations[order])
        positions = np.minimum(np.searchsorted(ends, points, side="right"), self.n_items - 1)  # guards round-off
        return order[positions]

    def indices(self, epoch):
        """The item indices of ``epoch``, ``[examples_per_epoch]``."""
        first = (epoch - 1) * self.examples_per_epoch
        last = first + self.examples_per_epoch
        chunks = []
        for number in range(first // self.per_pass, (last - 1) // self.per_pass + 1):
            offset = number * self.per_pass
            chunks.append(self.draw_pass(number)[max(first - offset, 0): last - offset])
        return np.concatenate(chunks)

    def __iter__(self):
        return iter(self.indices(self.epoch).tolist())

    def __len__(self):
        return self.examples_per_epoch
