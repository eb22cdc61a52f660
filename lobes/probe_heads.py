"""Downstream probe heads on top of :class:`lobes.weighted_sum.WeightedLayerSum` (padding-aware)."""

import torch
from torch import nn

from lobes.weighted_sum import statistics_pooling


class BiLSTMHead(nn.Module):
    """Bidirectional LSTM over the real frames, then a per-frame linear layer (a CTC head).

    Padded frames are packed away, so they never reach the recurrence.

    Parameters
    ----------
    input_size : int
        Feature width (``WeightedLayerSum.hidden_size``).
    n_outputs : int
        Outputs per frame (CTC: characters plus the blank).
    hidden_size : int
        LSTM units per direction.
    num_layers : int
        Stacked bidirectional layers.
    dropout : float
        Dropout on the input and between layers.

    Example
    -------
    >>> head = BiLSTMHead(8, 5, hidden_size=4)
    >>> head(torch.randn(2, 7, 8), torch.tensor([7, 3])).shape
    torch.Size([2, 7, 5])
    """

    def __init__(self, input_size, n_outputs, hidden_size=256, num_layers=2, dropout=0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bidirectional=True,
                            batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(2 * hidden_size, n_outputs)

    def forward(self, frames, frame_lengths):
        """``[B, T, D] -> [B, T, n_outputs]`` (rows past ``frame_lengths`` come from zeros)."""
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(frames), frame_lengths.cpu().clamp(min=1),
                                                   batch_first=True, enforce_sorted=False)
        hidden, _ = self.lstm(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(hidden, batch_first=True, total_length=frames.shape[1])
        return self.out(self.dropout(hidden))


class StatsPoolingClassifier(nn.Module):
    """Statistics pooling, a linear embedding layer and a linear classifier (a one-layer x-vector).

    Parameters
    ----------
    input_size : int
        Feature width ``D``; the pooled statistics have ``2D``.
    n_classes : int
        Number of speakers.
    embedding_size : int
        Width of the embedding scored by cosine for verification.

    Example
    -------
    >>> head = StatsPoolingClassifier(8, 3, embedding_size=4)
    >>> logits, embeddings = head(torch.randn(2, 7, 8), torch.tensor([7, 3]))
    >>> logits.shape, embeddings.shape
    (torch.Size([2, 3]), torch.Size([2, 4]))
    """

    def __init__(self, input_size, n_classes, embedding_size=256):
        super().__init__()
        self.embedding = nn.Linear(2 * input_size, embedding_size)
        self.norm = nn.BatchNorm1d(embedding_size)
        self.classifier = nn.Linear(embedding_size, n_classes)

    def forward(self, frames, frame_lengths):
        """``([B, n_classes] logits, [B, embedding_size] embeddings)``."""
        embeddings = self.embedding(statistics_pooling(frames, frame_lengths))
        return self.classifier(torch.relu(self.norm(embeddings))), embeddings
