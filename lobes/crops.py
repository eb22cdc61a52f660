"""Training crops aligned to an SSL encoder's frames, so that frame targets stay in step."""

import torch


def frame_count(n_samples, kernels, strides):
    """Frames a CNN front-end (no padding) yields for ``n_samples`` samples.

    Example
    -------
    >>> frame_count(16000, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    49
    """
    for kernel, stride in zip(kernels, strides):
        n_samples = (n_samples - kernel) // stride + 1
    return max(int(n_samples), 0)


def random_aligned_crop(n_total, crop_samples, hop):
    """A random ``(start, length)`` of at most ``crop_samples``, starting on a frame boundary.

    Uses torch's generator, which DataLoader workers re-seed every epoch.

    Example
    -------
    >>> start, length = random_aligned_crop(50000, 32000, 320)
    >>> start % 320, length, start + length <= 50000
    (0, 32000, True)
    """
    length = min(int(crop_samples), int(n_total))
    n_starts = (int(n_total) - length) // hop + 1
    return int(torch.randint(0, n_starts, ())) * hop, length
