"""Building blocks shared by several models, by what they are: `embedding` (id tables, the fused lookup,
the first-order term), `mlp`, `sequence` (behaviour sequences: attention, transformer block, pooling) and
`routing` (scenario-owned computation: per-scenario branches, partitioned norm, the STAR linear layer).

A block used by one model only lives in that model's file; CEL, an embedding algorithm with a schedule,
has its own module (`mscbench.models.cel`).
"""
