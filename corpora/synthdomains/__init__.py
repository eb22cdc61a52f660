"""SynthDomains: a multi-domain corpus synthesised offline from real text (see :mod:`corpora.synthdomains.prepare`)."""
