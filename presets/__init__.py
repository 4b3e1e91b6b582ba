"""Built-in presets, shipped as package data (`llmlab_presets`); see core.config.presets_dir."""
