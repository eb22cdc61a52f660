"""What the downstream probes' Brains share: a learnt mix of a frozen encoder's layers, read by a head.

Each probe recipe (``recipes/<Dataset>/ASR``, ``recipes/<Dataset>/speaker``)
subclasses :class:`LayerMixProbeBrain` with its own objective and metrics.
"""

import speechbrain as sb

from lobes.feature_cache import probe_inputs


class LayerMixProbeBrain(sb.Brain):
    """A probe: ``modules.weighted_sum`` mixes every hidden state of a frozen encoder, ``modules.head`` reads the mix.

    Hidden states come from the batch (cached ``feats``) or from ``encoder``,
    run live when it is set (outside the modules, so never trained nor
    switched to train mode). The layer weights and the head have optimisers
    of their own (``hparams.weights_opt_class``, ``hparams.head_opt_class``),
    as in SpeechBrain's SSL benchmarks; both are checkpointed.
    """

    encoder = None

    def mixed_features(self, batch):
        """The mixed hidden states ``[B, T, D]`` of a batch and their frame lengths ``[B]``."""
        batch = batch.to(self.device)
        hidden, frame_lengths = probe_inputs(batch, self.encoder)
        mixed, _ = self.modules.weighted_sum(hidden, frame_lengths)
        return mixed, frame_lengths

    def layer_weights(self):
        """The learnt layer weights (a list), also when the mix is wrapped for DDP."""
        mix = self.modules.weighted_sum
        return getattr(mix, "module", mix).layer_weights().tolist()

    def init_optimizers(self):
        self.weights_optimizer = self.hparams.weights_opt_class(self.modules.weighted_sum.parameters())
        self.head_optimizer = self.hparams.head_opt_class(self.modules.head.parameters())
        self.optimizers_dict = {"weights": self.weights_optimizer, "head": self.head_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("weights_optimizer", self.weights_optimizer)
            self.checkpointer.add_recoverable("head_optimizer", self.head_optimizer)

    def log_epoch(self, epoch, valid_stats):
        """Write an epoch's train and valid stats with the head's learning rate and the layer weights."""
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr_head": self.head_optimizer.param_groups[0]["lr"],
                        "layer_weights": " ".join(f"{w:.3f}" for w in self.layer_weights())},
            train_stats=self.train_stats, valid_stats=valid_stats)

    def describe(self, encoder, fingerprint):
        """The results fields on the encoder and the probe."""
        return {"encoder_fingerprint": fingerprint[:16], "encoder_layers": encoder.num_layers + 1,
                "encoder_width": encoder.hidden_size,
                "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
                "probe_parameters": sum(p.numel() for p in self.modules.parameters()),
                "layer_weights": [round(w, 4) for w in self.layer_weights()]}
