"""The comparative study: config, runner, and the report rebuilt from disk."""
