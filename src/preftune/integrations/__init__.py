"""Integrations with services around training: experiment trackers (the study's final table
and plots; per-step logging lives in `preftune.train.tracking`), the Hugging Face Hub (push)
and model cards. Used by commands only."""
