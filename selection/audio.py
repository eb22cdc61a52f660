"""Stream manifest audio, skipping (and recording) unreadable files (reading: :func:`common.audio.load_audio`).

Every file read is also checked against its manifest duration: a difference
above :data:`common.audio.DURATION_TOLERANCE` (the larger of 0.1 s and 1 %) is recorded in
``AudioStream.wrong_durations``, and the units stage stops on it (budgets and
hours are computed from the manifest, so a wrong duration would make them wrong).
"""

import logging

from tqdm import tqdm

from common.audio import SAMPLE_RATE, AudioError, duration_disagrees, header_problem, load_audio

logger = logging.getLogger(__name__)


class AudioStream:
    """Iterate ``(utt_id, waveform)`` over manifest utterances, one at a time.

    Parameters
    ----------
    manifest : common.manifest.Manifest
        Where IDs and paths come from.
    ids : sequence of str, optional
        Which utterances, in which order (default: all, in manifest order).
    sample_rate : int
        Output sample rate.
    progress : str, optional
        Show a progress bar with this description: audio seconds read of the
        total (by the manifest's durations), rate and time left.

    Attributes
    ----------
    skipped : list of (str, str)
        ``(utt_id, reason)`` of every utterance whose audio could not be used,
        filled while iterating (reset when a new iteration starts). Each skip
        is also logged as a warning.
    wrong_durations : list of (str, float, float)
        ``(utt_id, manifest seconds, audio seconds)`` of the utterances whose
        manifest duration disagrees with their audio (see module notes).
    """

    def __init__(self, manifest, ids=None, sample_rate=SAMPLE_RATE, progress=None):
        self.manifest = manifest
        self.ids = list(manifest.ids if ids is None else ids)
        self.sample_rate = sample_rate
        self.progress = progress
        self.skipped = []
        self.wrong_durations = []

    def __len__(self):
        return len(self.ids)

    def __iter__(self):
        self.skipped, self.wrong_durations = [], []
        self.wrong_durations = []
        durations = self.manifest.durations_of(self.ids)
        bar = None
        if self.progress is not None:
            total = float(durations.sum())
            bar = tqdm(total=round(total), unit="audio-s", desc=f"{self.progress} ({total / 3600:.2f} h)",
                       smoothing=0.05, mininterval=1.0)
        seconds_read = 0.0
        try:
            for utt_id, duration in zip(self.ids, durations):
                if bar is not None:  # whole audio seconds read so far
                    seconds_read += float(duration)
                    bar.update(round(seconds_read) - bar.n)
                try:
                    wav = load_audio(self.manifest.wav_path(utt_id), self.sample_rate)
                except AudioError as err:
                    logger.warning("skipping %s: %s", utt_id, err)
                    self.skipped.append((utt_id, str(err)))
                    continue
                if duration_disagrees(float(duration), len(wav) / self.sample_rate):
                    self.wrong_durations.append((utt_id, float(duration), len(wav) / self.sample_rate))
                yield utt_id, wav
        finally:
            if bar is not None:
                bar.close()


def screen_headers(manifest):
    """The utterances whose audio files open and hold samples (headers only), and the others with their reasons.

    The rule of :class:`AudioStream` without decoding: a missing, unreadable or
    empty file is skipped, logged as a warning and returned with its reason and
    manifest line, for a selection that reads no audio (the whole pool).

    Returns
    -------
    (list of str, list of (str, int, str))
        Usable IDs in manifest order; ``(utt_id, line, reason)`` of the others.
    """
    usable, skipped = [], []
    for line, utt_id in enumerate(manifest.ids, start=2):  # the header is line 1
        reason = header_problem(manifest.wav_path(utt_id))
        if reason is None:
            usable.append(utt_id)
        else:
            logger.warning("skipping %s (%s, line %d): %s", utt_id, manifest.path, line, reason)
            skipped.append((utt_id, line, reason))
    return usable, skipped
