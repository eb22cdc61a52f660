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


class ConvHead(nn.Module):
    """1-D convolutions over time (parallel, unlike a recurrence: cheap on a CPU), then a linear layer.

    A CTC head for quick comparisons of many encoders: ``num_layers`` blocks of
    Conv1d (``kernel_size``, same length) → GELU → dropout, each with a
    residual connection after the first. Padded frames are zeroed before every
    convolution, so they never leak into real frames.

    Parameters
    ----------
    input_size : int
        Feature width (``WeightedLayerSum.hidden_size``).
    n_outputs : int
        Outputs per frame (CTC: characters plus the blank).
    channels : int
        Width of every convolution.
    num_layers : int
        Convolution blocks.
    kernel_size : int
        Frames per convolution (odd); the receptive field is
        ``num_layers * (kernel_size - 1) + 1`` frames.
    dropout : float
        Dropout after every block.

    Example
    -------
    >>> head = ConvHead(8, 5, channels=6, num_layers=2, kernel_size=3)
    >>> head(torch.randn(2, 7, 8), torch.tensor([7, 3])).shape
    torch.Size([2, 7, 5])
    """

    def __init__(self, input_size, n_outputs, channels=256, num_layers=3, kernel_size=5, dropout=0.1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
        self.convs = nn.ModuleList(
            nn.Conv1d(input_size if i == 0 else channels, channels, kernel_size, padding=kernel_size // 2)
            for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels, n_outputs)

    def forward(self, frames, frame_lengths):
        """``[B, T, D] -> [B, T, n_outputs]``."""
        real = (torch.arange(frames.shape[1], device=frames.device)[None, :]
                < frame_lengths.to(frames.device)[:, None]).unsqueeze(1)
        hidden = frames.transpose(1, 2)
        for i, conv in enumerate(self.convs):
            block = self.dropout(nn.functional.gelu(conv(hidden * real)))
            hidden = block if i == 0 else hidden + block
        return self.out(hidden.transpose(1, 2))


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
