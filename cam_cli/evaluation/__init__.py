"""Localization figures: ground truth readers, matching, metrics, resumable runs, the report."""
