"""Batched, resumable sampling (`generate`) and the prompt rendering it shares with scoring."""

from preftune.generate.prompts import prompt_text, render_prompt
from preftune.generate.sampling import generate, load_for_generation, resolve_model_path

__all__ = ["generate", "load_for_generation", "prompt_text", "render_prompt", "resolve_model_path"]
