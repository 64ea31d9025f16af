"""Data: protocol datasets (layouts, pairing, splits, groups), image reading rules and synthetic degradation."""
