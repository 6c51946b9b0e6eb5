"""Metrics computed from feature statistics (FID) or features (KID)."""
