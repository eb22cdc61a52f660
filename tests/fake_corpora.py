"""Tiny fake LibriSpeech and VoxCeleb1 trees with the real folder layouts and file formats.

The audio is 16 kHz, made of a few harmonics of a vibrato tone modulated by a
random syllable-rate envelope, plus a little noise; each speaker has its own
pitch (spread evenly on a log scale over the tree's speakers), so a speaker
probe has something to learn. Everything is seeded.

Example
-------
>>> from fake_corpora import make_fake_librispeech
>>> make_fake_librispeech(tmp_path, ["dev-clean"], seconds=(0.3, 0.5))  # doctest: +SKIP
PosixPath('.../LibriSpeech')
"""

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
PITCH_RANGE_HZ = (90.0, 280.0)
VOCABULARY = ("THE", "OF", "AND", "A", "RIVER", "HOUSE", "LIGHT", "WATER", "NIGHT", "GREEN", "LITTLE", "OLD",
              "MAN'S", "TIME", "SPOKE", "AGAIN", "UPON", "HILL", "WINTER", "DOOR")
YOUTUBE_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SPEAKERS_HEADER = ";ID  |SEX| SUBSET           |MINUTES| NAME\n"


def make_fake_librispeech(root, splits, speakers=2, chapters=1, utterances=3, seconds=(1.0, 2.0), seed=0):
    """Write ``root/LibriSpeech/<split>/<speaker>/<chapter>/`` FLAC files and ``.trans.txt`` transcripts.

    Parameters
    ----------
    root : str or Path
        Folder that receives ``LibriSpeech/`` (which must not exist yet).
    splits : list of str
        Split folders, e.g. ``["dev-clean", "dev-other"]``.
    speakers : int
        Speakers per split (speaker IDs are distinct across splits, as in LibriSpeech).
    chapters : int
        Chapters per speaker.
    utterances : int
        Utterances per chapter.
    seconds : tuple of float
        Range of the utterance durations.
    seed : int
        Seed of the IDs, audio and transcripts.

    Returns
    -------
    Path
        The ``LibriSpeech`` folder.
    """
    folder = Path(root) / "LibriSpeech"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_speakers = len(splits) * speakers
    speaker_ids = rng.choice(np.arange(10, 10000), size=n_speakers, replace=False)
    pitches = _pitches(n_speakers)
    speaker_lines = []
    for index in range(n_speakers):
        split, speaker = splits[index // speakers], str(speaker_ids[index])
        for chapter in rng.choice(np.arange(100, 100000), size=chapters, replace=False):
            _write_chapter(folder / split / speaker / str(chapter), utterances, pitches[index], seconds, rng)
        speaker_lines.append(f"{speaker:<5}| {'FM'[index % 2]} | {split:<17}| {1.0:5.2f} | Reader\n")
    (folder / "SPEAKERS.TXT").write_text(SPEAKERS_HEADER + "".join(speaker_lines))
    return folder


def make_fake_voxceleb1(root, speakers=6, videos=2, utterances=3, seconds=(1.0, 2.5), seed=0, trial_speakers=2):
    """Write ``root/wav/<idNNNNN>/<youtube id>/<nnnnn>.wav``, ``iden_split.txt`` and ``veri_test.txt``.

    Every speaker has utterances in identification sets 1 (train) and 3 (test), and in set 2
    (validation) when it has three or more. The trials pair each utterance of the last
    ``trial_speakers`` speakers with another utterance of the same speaker (label 1) and with one of
    another trial speaker (label 0).

    Parameters
    ----------
    root : str or Path
        The fake VoxCeleb1 root.
    speakers : int
        Speakers, named ``id10001``, ``id10002``, ...
    videos : int
        Videos per speaker.
    utterances : int
        Utterances per video.
    seconds : tuple of float
        Range of the utterance durations.
    seed : int
        Seed of the video IDs, audio and trials.
    trial_speakers : int
        Speakers of the verification trials (at least 2).

    Returns
    -------
    Path
        ``root``.
    """
    if not 2 <= trial_speakers <= speakers or videos * utterances < 2:
        raise ValueError("need 2 <= trial_speakers <= speakers and two utterances or more per speaker")
    root = Path(root)
    rng = np.random.default_rng(seed)
    pitches = _pitches(speakers)
    files = {}
    for index in range(speakers):
        speaker = f"id{10001 + index}"
        files[speaker] = [path for _ in range(videos)
                          for path in _write_video(root / "wav", speaker, utterances, pitches[index], seconds, rng)]
    iden_lines = [f"{set_id} {path}\n" for paths in files.values()
                  for set_id, path in zip(_iden_sets(len(paths)), paths)]
    (root / "iden_split.txt").write_text("".join(iden_lines))
    trial_files = {speaker: files[speaker] for speaker in list(files)[-trial_speakers:]}
    (root / "veri_test.txt").write_text("".join(f"{label} {a} {b}\n" for label, a, b in _trials(trial_files, rng)))
    return root


def _pitches(n_speakers):
    """Evenly spaced pitches on a log scale, one per speaker."""
    return np.geomspace(*PITCH_RANGE_HZ, num=max(n_speakers, 2))[:n_speakers]


def _write_chapter(folder, utterances, pitch, seconds, rng):
    """FLAC files and the ``<speaker>-<chapter>.trans.txt`` of one chapter folder."""
    folder.mkdir(parents=True)
    prefix = f"{folder.parent.name}-{folder.name}"
    lines = []
    for number in range(utterances):
        utt_id = f"{prefix}-{number:04d}"
        audio = _voice(pitch, seconds, rng)
        sf.write(folder / f"{utt_id}.flac", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        lines.append(f"{utt_id} {' '.join(rng.choice(VOCABULARY, size=rng.integers(3, 9)))}\n")
    (folder / f"{prefix}.trans.txt").write_text("".join(lines))


def _write_video(wav_folder, speaker, utterances, pitch, seconds, rng):
    """WAV files of one video folder; returns their paths relative to ``wav/``."""
    video = "".join(rng.choice(list(YOUTUBE_ID_CHARS), size=11))
    (wav_folder / speaker / video).mkdir(parents=True)
    paths = [f"{speaker}/{video}/{number:05d}.wav" for number in range(1, utterances + 1)]
    for path in paths:
        sf.write(wav_folder / path, _voice(pitch, seconds, rng), SAMPLE_RATE, subtype="PCM_16")
    return paths


def _voice(pitch, seconds, rng):
    """A voiced-like tone at ``pitch`` Hz with vibrato, a syllable-rate envelope and a little noise."""
    n_samples = int(rng.uniform(*seconds) * SAMPLE_RATE)
    t = np.arange(n_samples) / SAMPLE_RATE
    vibrato = 1 + 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(pitch * vibrato) / SAMPLE_RATE
    tone = sum(np.sin(harmonic * phase) / harmonic for harmonic in range(1, 5))
    knots = rng.uniform(0.1, 1.0, size=int(t[-1] * 8) + 2)  # about 8 syllables per second
    envelope = np.interp(t, np.linspace(0, t[-1], len(knots)), knots)
    audio = tone * envelope + 0.02 * rng.standard_normal(n_samples)
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


def _iden_sets(n_files):
    """Identification sets of a speaker's files: the last in 3, the one before in 2 (from 3 files), the rest in 1."""
    return [1] * (n_files - 2) + [2, 3] if n_files >= 3 else [1, 3]


def _trials(files, rng):
    """``(label, path a, path b)``: each file against a same-speaker file (1) and another speaker's file (0)."""
    trials = []
    for speaker, paths in files.items():
        others = [other for other in files if other != speaker]
        for path in paths:
            same = rng.choice([other for other in paths if other != path])
            different = rng.choice(files[others[rng.integers(len(others))]])
            trials += [("1", path, str(same)), ("0", path, str(different))]
    return trials
