"""The SynthDomains corpus design: which voice says which sentence through which channel.

The plan is a pure function of ``(scale, seed)`` and the text sets, so a
re-run rebuilds the same list of utterances and only synthesises the missing
files. Hours below are for ``scale=1``; ``scale`` multiplies them (each
split x domain keeps at least :data:`MIN_UTTERANCES` utterances).

Domains of the unlabelled ``pool``:

==============  =====================================================  ===========
domain          voices and channel                                      hours
==============  =====================================================  ===========
``formant``     espeak-ng, 8 English accents x 14 variants              1.2
``concat``      flite kal16, festival ked (diphone)                     1.1
``parametric``  flite awb, rms, slt (clustergen, CMU ARCTIC speakers)   1.1
``reverb``      formant/concat/parametric voices in simulated rooms     1.1
``noisytel``    the same voices, coloured noise 5-20 dB, half by phone  1.1
``nonenglish``  espeak-ng de/es/it, festival Italian lp/pc              1.0
``neural``      piper joe (90 %), Kokoro-82M voices: thin in the pool   0.35
==============  =====================================================  ===========

``target`` is the ``neural`` domain (unlabelled, 0.25 h): present but thin in
the pool. ``teacher`` is a separate English-heavy mixture of every domain
(3 h). The ASR splits (transcribed) mix the non-neural English domains;
``asr_test_target`` is the neural domain, unseen in ``asr_train``. The
speaker splits hold 32 speakers, among them near neighbours: pitch-shifted
copies of voices (+-1 to 2 semitones) and a blend of two Kokoro voices.
Every sentence is used at most once in the whole corpus.
"""

import hashlib

import numpy as np

from common.hashing import settings_hash

MIN_UTTERANCES = 3
SECONDS_PER_WORD = 0.34  # mean measured over the engines at scale 1; summary.json has the real hours

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-gb-x-rp", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "croak")
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

# (engine, settings) families; each voice drawn gets its own prosody settings.
CONCAT = (("flite", "kal16"), ("festival", "ked_diphone"))
PARAMETRIC = (("flite", "awb"), ("flite", "rms"), ("flite", "slt"))

# split -> {domain: hours at scale 1}
SPLITS = {
    "pool": {"formant": 1.2, "concat": 1.1, "parametric": 1.1, "reverb": 1.1,
             "noisytel": 1.1, "nonenglish": 1.0, "neural": 0.35},
    "target": {"neural": 0.25},
    "teacher": {"formant": 0.5, "concat": 0.45, "parametric": 0.45, "reverb": 0.4,
                "noisytel": 0.4, "nonenglish": 0.3, "neural": 0.25},
    "asr_train": {"formant": 0.3, "concat": 0.45, "parametric": 0.45, "reverb": 0.3, "noisytel": 0.5},
    "asr_dev": {"formant": 0.03, "concat": 0.045, "parametric": 0.045, "reverb": 0.03, "noisytel": 0.05},
    "asr_test_in": {"formant": 0.03, "concat": 0.045, "parametric": 0.045, "reverb": 0.03, "noisytel": 0.05},
    "asr_test_target": {"neural": 0.2},
}
TRANSCRIBED = {"asr_train", "asr_dev", "asr_test_in", "asr_test_target", "spk_train", "spk_test"}
DOMAIN_TEXTS = {
    "formant": ("en_fortune",), "concat": ("en_web",), "parametric": ("en_web",),
    "reverb": ("en_kjv",), "noisytel": ("en_fortune",), "neural": ("en_fortune", "en_web"),
    "nonenglish": ("de", "es", "it"),
}
# Speaker identification: utterances per speaker (train, test) at scale 1.
SPK_UTTERANCES = (16, 8)
SPK_MIN_UTTERANCES = (2, 1)
SPK_MAX_WORDS = 12
N_RIRS = 40


def _speaker_voices():
    """The 32 speakers of the speaker-ID splits: (spk_id, voice, pitch cents)."""
    speakers = [(f"espeak-{a}+{v}", {"engine": "espeak", "name": f"{a}+{v}"}, 0) for a, v in
                [("en-us", "m3"), ("en-gb", "f2"), ("en-gb-scotland", "m1"), ("en-029", "f4"),
                 ("en-us-nyc", "m5"), ("en-gb-x-rp", "f1"), ("en-gb-x-gbclan", "m4"), ("en-us", "f5")]]
    base = {
        "flite-awb": {"engine": "flite", "name": "awb"},
        "flite-rms": {"engine": "flite", "name": "rms"},
        "flite-slt": {"engine": "flite", "name": "slt"},
        "flite-kal16": {"engine": "flite", "name": "kal16"},
        "festival-ked": {"engine": "festival", "name": "ked_diphone"},
        "piper-joe": {"engine": "piper"},
    }
    speakers += [(name, voice, 0) for name, voice in base.items()]
    # Kokoro is the slowest engine (about 1x real time per core): three speakers, one of them a blend.
    speakers += [(f"kokoro-{v}", {"engine": "kokoro", "mix": {v: 1.0}}, 0) for v in ("jf_alpha", "jm_kumo")]
    speakers += [("kokoro-alpha+tebukuro", {"engine": "kokoro", "mix": {"jf_alpha": 0.5, "jf_tebukuro": 0.5}}, 0)]
    shifts = [("flite-awb", 200), ("flite-awb", -200), ("flite-rms", 200), ("flite-rms", -150),
              ("flite-slt", 200), ("flite-slt", -200), ("flite-kal16", 150), ("festival-ked", 200),
              ("piper-joe", 200), ("piper-joe", -150), ("flite-slt", 100), ("festival-ked", -150),
              ("flite-awb", 100)]
    speakers += [(f"{name}{cents:+d}c", base[name], cents) for name, cents in shifts]
    speakers += [("espeak-en-us+m3-200c", {"engine": "espeak", "name": "en-us+m3"}, -200),
                 ("espeak-en-gb+f2+150c", {"engine": "espeak", "name": "en-gb+f2"}, 150)]
    return speakers


SPEAKERS = _speaker_voices()


class SentenceSource:
    """Hands out each sentence of each text set at most once, in a seeded order."""

    def __init__(self, texts, seed):
        self._order = {}
        self._cursor = {}
        for name in sorted(texts):
            rng = np.random.default_rng([seed, _stable_int(name)])
            self._order[name] = [texts[name][i] for i in rng.permutation(len(texts[name]))]
            self._cursor[name] = 0
        self.texts = texts

    def take(self, name, max_words=None):
        order = self._order[name]
        while self._cursor[name] < len(order):
            sentence = order[self._cursor[name]]
            self._cursor[name] += 1
            if max_words is None or len(sentence.split()) <= max_words:
                return sentence
        raise RuntimeError(f"text set '{name}' has run out of sentences: lower the scale")


def _stable_int(text):
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16)


def _prosody(rng, voice):
    voice = dict(voice)
    engine = voice["engine"]
    if engine == "espeak":
        voice.update(speed=int(rng.integers(140, 201)), pitch=int(rng.integers(30, 71)))
    elif engine == "flite":
        voice.update(stretch=round(float(rng.uniform(0.85, 1.2)), 3))
    elif engine == "piper":
        voice.update(length_scale=round(float(rng.uniform(0.85, 1.25)), 3),
                     noise_scale=round(float(rng.uniform(0.5, 0.8)), 3),
                     noise_w=round(float(rng.uniform(0.6, 1.0)), 3), seed=int(rng.integers(2**31)))
    elif engine == "kokoro":
        voice.update(speed=round(float(rng.uniform(0.9, 1.1)), 3))
    return voice


def _domain_voice(rng, domain):
    """Draw (spk_id, voice, language) for one utterance of a domain."""
    if domain == "formant":
        accent, variant = rng.choice(ESPEAK_ACCENTS), rng.choice(ESPEAK_VARIANTS)
        return f"espeak-{accent}+{variant}", {"engine": "espeak", "name": f"{accent}+{variant}"}, "en"
    if domain in ("concat", "parametric"):
        family = CONCAT if domain == "concat" else PARAMETRIC
        engine, name = family[int(rng.integers(len(family)))]
        return f"{engine}-{name.split('_')[0]}", {"engine": engine, "name": name}, "en"
    if domain in ("reverb", "noisytel"):
        family = rng.choice(["formant", "concat", "parametric"], p=[0.2, 0.4, 0.4])
        return _domain_voice(rng, str(family))
    if domain == "neural":
        if rng.random() < 0.9:
            return "piper-joe", {"engine": "piper"}, "en"
        voice = str(rng.choice(KOKORO_VOICES))
        return f"kokoro-{voice}", {"engine": "kokoro", "mix": {voice: 1.0}}, "en"
    if domain == "nonenglish":
        lang = str(rng.choice(["de", "es", "it"]))
        if lang == "it" and rng.random() < 0.5:
            name = str(rng.choice(["lp_diphone", "pc_diphone"]))
            return f"festival-{name.split('_')[0]}", {"engine": "festival", "name": name}, lang
        variant = rng.choice(ESPEAK_VARIANTS[:12])
        return f"espeak-{lang}+{variant}", {"engine": "espeak", "name": f"{lang}+{variant}"}, lang
    raise ValueError(f"unknown domain '{domain}'")


def _channel(rng, domain):
    aug = {"peak": round(float(rng.uniform(0.3, 0.9)), 3)}
    if domain == "reverb":
        aug["rir"] = int(rng.integers(N_RIRS))
    elif domain == "noisytel":
        aug.update(noise=str(rng.choice(["white", "pink", "brown"])), snr=round(float(rng.uniform(5, 20)), 1))
        if rng.random() < 0.5:
            aug["telephone"] = True
    return aug


def _entry(split, domain, index, spk_id, voice, lang, text, aug):
    return {"ID": f"{split}-{domain}-{index:05d}", "split": split, "domain": domain, "spk_id": spk_id,
            "voice": voice, "lang": lang, "text": text, "aug": aug}


def build_plan(texts, scale, seed):
    """List every utterance of the corpus.

    Parameters
    ----------
    texts : dict
        Text set name -> list of sentences (see :func:`texts.load_text_set`).
    scale : float
        Multiplies the hours of every split.
    seed : int
        Seed of every random choice.

    Returns
    -------
    list of dict
        One entry per utterance: ``ID, split, domain, spk_id, voice, lang, text, aug``.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    rng = np.random.default_rng(seed)
    sentences = SentenceSource(texts, seed)
    plan = []
    for split, domains in SPLITS.items():
        for domain, hours in domains.items():
            budget, planned, index = hours * scale * 3600, 0.0, 0
            while planned < budget or index < MIN_UTTERANCES:
                spk_id, voice, lang = _domain_voice(rng, domain)
                text_set = lang if lang != "en" else str(rng.choice(DOMAIN_TEXTS[domain]))
                text = sentences.take(text_set)
                plan.append(_entry(split, domain, index, spk_id, _prosody(rng, voice), lang, text,
                                   _channel(rng, domain)))
                planned += len(text.split()) * SECONDS_PER_WORD
                index += 1
    per_split = [max(m, round(n * scale)) for n, m in zip(SPK_UTTERANCES, SPK_MIN_UTTERANCES)]
    for split, n_per_speaker in zip(("spk_train", "spk_test"), per_split):
        index = 0
        for spk_id, voice, cents in SPEAKERS:
            for _ in range(n_per_speaker):
                text = sentences.take(str(rng.choice(["en_fortune", "en_web"])), SPK_MAX_WORDS)
                aug = {"peak": round(float(rng.uniform(0.3, 0.9)), 3), "pitch": cents}
                plan.append(_entry(split, "speaker", index, spk_id, _prosody(rng, voice), "en", text, aug))
                index += 1
    return plan


def plan_hash(plan):
    """A short hash identifying a plan (stored in ``summary.json``)."""
    return settings_hash(plan, 16)
