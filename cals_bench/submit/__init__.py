"""Submissions: a researcher's model (code, checkpoint or plugin) or its outputs, scored isolated from the ground truth."""
