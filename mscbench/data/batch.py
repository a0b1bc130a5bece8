"""The batch every model reads: a small dataclass of tensors."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    sparse: torch.Tensor  # [B, F] int64, ids per sparse field (manifest order)
    dense: torch.Tensor  # [B, D] float32, standardised
    seq: torch.Tensor  # [B, S, L] int64, left-padded with 0, most recent last
    seq_gap: torch.Tensor  # [B, L] int64, bucketised time gap to the impression (recency rank if no times)
    scenario: torch.Tensor  # [B] int64
    label: torch.Tensor  # [B] float32

    def __len__(self) -> int:
        return self.label.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """The batch on `device`; from pinned memory the copies are asynchronous (they overlap the step
        running on the device)."""
        return Batch(**{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory, which the GPU reads without the CPU's help (CUDA only)."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def select(self, rows: torch.Tensor) -> Batch:
        """The sub-batch of `rows` (a boolean mask or index tensor)."""
        return Batch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @property
    def seq_mask(self) -> torch.Tensor:
        """[B, L] bool, True where a behaviour is present (not padding)."""
        return self.seq[:, 0, :] != 0
