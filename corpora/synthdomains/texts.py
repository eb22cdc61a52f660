"""Real text for the SynthDomains corpus, read from Debian packages.

Three English registers (modern biblical, archaic biblical, conversational)
and three other languages, one sentence per line after filtering:

=============  ==========================  ==========================
text set       Debian package              source
=============  ==========================  ==========================
``en_web``     ``sword-text-web``          World English Bible (diatheke)
``en_kjv``     ``bible-kjv``               King James Bible (``bible``)
``en_fortune`` ``fortunes``, ``fortunes-min``  fortune cookies
``de``         ``fortunes-de``             German fortune cookies
``es``         ``fortunes-es``             Spanish fortune cookies
``it``         ``fortunes-it``             Italian fortune cookies
=============  ==========================  ==========================

Sentences are split at ``. ! ? ; :``, kept when they have ``min_words`` to
``max_words`` words and hold only letters, spaces and light punctuation (no
digits, so that transcripts need no number normalisation).
"""

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")
WEB_MODULE = "engWEB2015eb"

# English fortune files that are not prose (pictures, banners, translation requests).
_NOT_PROSE = {"ascii-art", "art", "banner", "translate-me", "zippy"}
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_ENGLISH_OK = re.compile(r"^[A-Za-z ,.'!?;:\-]+$")
_NON_WORD = re.compile(r"[^\w' ]+")


class MissingTool(RuntimeError):
    """A system program or data package that the corpus needs is absent."""


def require_program(program, package):
    """Return the path of ``program`` or raise a :class:`MissingTool` naming ``package``.

    Example
    -------
    >>> require_program("sh", "dash").endswith("sh")
    True
    """
    path = shutil.which(program)
    if path is None:
        raise MissingTool(
            f"'{program}' not found: install the Debian package '{package}' "
            f"(apt-get install {package}; see requirements-apt.txt)"
        )
    return path


def transcript(sentence):
    """Normalise a sentence to a SpeechBrain ``wrd`` transcript.

    Upper case, punctuation removed except apostrophes inside words.

    Example
    -------
    >>> transcript("Don't panic, my friend!")
    "DON'T PANIC MY FRIEND"
    """
    words = _NON_WORD.sub(" ", sentence.replace("-", " ")).split()
    return " ".join(w.strip("'").upper() for w in words if w.strip("'"))


def split_sentences(text, min_words, max_words, english):
    """Split a block of text into clean sentences.

    Example
    -------
    >>> split_sentences("Go home now. It is late, my dear friend; 42 owls.", 3, 8, True)
    ['Go home now.', 'It is late, my dear friend;']
    """
    text = unicodedata.normalize("NFC", " ".join(text.split()))
    kept = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.lstrip(" \"'`()[]-.,;:!?").rstrip(" \"'`()[]-")
        if not sentence[:1].isalpha():
            continue
        n_words = len(sentence.split())
        if not min_words <= n_words <= max_words:
            continue
        if english and not _ENGLISH_OK.match(sentence):
            continue
        if any(ch.isdigit() for ch in sentence) or not any(ch.isalpha() for ch in sentence):
            continue
        if any(ch in sentence for ch in "<>@#$%&*_=|/\\{}[]~^"):
            continue
        if sentence.isupper():
            continue
        kept.append(sentence)
    return kept


def _read_any_encoding(path):
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _fortune_entries(paths):
    for path in paths:
        for entry in _read_any_encoding(path).split("\n%\n"):
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            yield " ".join(lines)


def _fortune_files(folder):
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix not in {".dat", ".u8", ".fortunes-pre"}
    )


def english_fortune_files():
    """The English prose fortune files (``fortunes``, ``fortunes-min``)."""
    if not FORTUNE_DIR.is_dir():
        raise MissingTool(f"{FORTUNE_DIR} not found: install the Debian package 'fortunes'")
    italian = {p.name for p in (FORTUNE_DIR / "it").glob("*")} if (FORTUNE_DIR / "it").is_dir() else set()
    return [p for p in _fortune_files(FORTUNE_DIR) if p.name not in italian | _NOT_PROSE]


def _bible_web():
    require_program("diatheke", "diatheke")
    out = subprocess.run(
        ["diatheke", "-b", WEB_MODULE, "-f", "plain", "-k", "Genesis 1:1-Revelation 22:21"],
        capture_output=True, text=True, check=True,
    ).stdout
    if not out.strip() or "not found" in out[:200].lower():
        raise MissingTool(f"diatheke module {WEB_MODULE} missing: install the Debian package 'sword-text-web'")
    # Drop the "Book c:v: " references at the start of each verse.
    return re.sub(r"^[^:\n]*\d+:\d+:\s*", "", out, flags=re.M)


def _bible_kjv():
    require_program("bible", "bible-kjv")
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    ).stdout
    return re.sub(r"^\s*\S+\s+\d+:\d+\s*", "", out, flags=re.M)


def _fortunes(folder, package):
    if not folder.is_dir():
        raise MissingTool(f"{folder} not found: install the Debian package '{package}'")
    files = [p for p in _fortune_files(folder)]
    return "\n".join(e + " ." for e in _fortune_entries(files))


TEXT_SETS = ("en_web", "en_kjv", "en_fortune", "de", "es", "it")


def load_text_set(name, min_words=6, max_words=22):
    """Return the sorted, de-duplicated sentences of one text set.

    Parameters
    ----------
    name : str
        One of :data:`TEXT_SETS`.
    min_words, max_words : int
        Sentence length limits, in words.

    Returns
    -------
    list of str
    """
    if name == "en_web":
        raw, english = _bible_web(), True
    elif name == "en_kjv":
        raw, english = _bible_kjv(), True
    elif name == "en_fortune":
        raw, english = "\n".join(e + " ." for e in _fortune_entries(english_fortune_files())), True
    elif name in ("de", "es", "it"):
        raw, english = _fortunes(FORTUNE_DIR / name, f"fortunes-{name}"), False
    else:
        raise ValueError(f"unknown text set '{name}'; choose from {TEXT_SETS}")
    return sorted(set(split_sentences(raw, min_words, max_words, english)))
