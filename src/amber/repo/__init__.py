"""Repository engine: format, chunks, crypto, packs, index, snapshots."""
