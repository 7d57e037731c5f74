"""Explanations: what convolutions see (filters, feature maps, receptive fields)."""
